"""Fronts chosen on an accuracy estimate, judged at the true accuracy and true latency (issue 20).

A run scores a pool of architectures with an estimate (a zero-cost proxy, a supernet, a predictor) and keeps,
per device, the front of (estimate up, true latency down) over that pool. Judged against the true front over
the whole known domain (``search/quality.py``: its reference point, budgets and figures), its hypervolume
ratio is the product of two numbers reported apart:

- **coverage**: the hv_ratio of the pool's own true front (the best any choice from the pool could do);
- **selection**: the chosen front's hypervolume over the pool's true front's (1.0: the estimate chose as well
  as the truth would have among the same cells).

``chosen_hv_ratio = coverage x selection``; accuracy lost at the budgets is given for both sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.search.pareto import pareto_front
from orchestrator.search.quality import Reference, front_quality, reference_front


def chosen_front(estimate: np.ndarray, latency: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Indices (into the domain) of the pool's front on (``estimate`` up, ``latency`` down); pool members with
    a non-finite estimate or latency are left out."""
    pool = np.asarray(pool, dtype=int)
    ok = pool[np.isfinite(estimate[pool]) & np.isfinite(latency[pool])]
    if len(ok) == 0:
        return ok
    return ok[pareto_front(estimate[ok], latency[ok])[0]]


def judge_estimate_front(estimate: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray,
                         latency: Sequence[float] | np.ndarray, pool: Sequence[int] | np.ndarray,
                         ref: Reference | None = None, quantiles: Sequence[float] = (0.25, 0.5, 0.75)
                         ) -> dict[str, float]:
    """Coverage, selection and the chosen front's figures for one device.

    ``estimate``, ``truth`` (true accuracy, %) and ``latency`` (true latency, ms): arrays of shape (n,) over the
    whole domain (``estimate`` may be NaN outside the pool); ``pool``: indices of the scored architectures.
    ``ref``: the reference over the whole domain (``reference_front(truth, latency)`` when None; pass it to
    judge many pools of one device). Returns ``chosen_hv_ratio``, ``coverage``, ``selection`` (NaN where the
    pool's front has no hypervolume), ``n_pool``, ``n_chosen``, and ``acc_loss_q<NN>`` (chosen front) and
    ``pool_acc_loss_q<NN>`` (pool's true front) in accuracy points at the reference's latency quantiles.
    Raises ParetoError where no architecture of the domain has both a truth and a latency."""
    e, t, lat = (np.asarray(v, dtype=float) for v in (estimate, truth, latency))
    if not len(e) == len(t) == len(lat):
        raise ValueError(f"estimate, truth and latency need one length, got {len(e)}, {len(t)}, {len(lat)}")
    ref = ref if ref is not None else reference_front(t, lat, quantiles)
    pool = np.asarray(pool, dtype=int)
    chosen = chosen_front(e, lat, pool)
    best = chosen_front(t, lat, pool)  # the pool's true front
    qc = front_quality(ref, t[chosen], lat[chosen])
    qp = front_quality(ref, t[best], lat[best])
    out = {"chosen_hv_ratio": qc["hv_ratio"], "coverage": qp["hv_ratio"],
           "selection": qc["hv_ratio"] / qp["hv_ratio"] if qp["hv_ratio"] > 0 else float("nan"),
           "n_pool": float(len(pool)), "n_chosen": float(len(chosen))}
    for q in ref.quantiles:
        k = f"acc_loss_q{round(100 * q)}"
        out[k] = qc[k]
        out[f"pool_{k}"] = qp[k]
    return out
