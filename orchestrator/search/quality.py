"""How good a chosen front is, judged against the truth over the whole known domain.

One reference for every figure a sweep reports (hypervolume ratio, IGD, the
accuracy lost at latency budgets, budgets left with nothing that fits):

- the **reference front** is the true front over the *whole known domain*
  (every architecture whose accuracy and true latency the run knows: a whole
  latency table, not the candidates a search happened to visit);
- the **reference point** lies in the front region: the front's worst
  accuracy and ``LATENCY_SLACK`` x its slowest latency. Points beyond it (far
  slower than the most accurate architecture, or no better than the fastest)
  add nothing, so degenerate architectures cannot inflate a ratio. The ratio
  is invariant to the units of either axis;
- **budgets** are quantiles of the reference front's latency.

Coverage and selection are separate numbers: the quality of a whole pool of
candidates (the best any choice from it could do) is computed the same way as
the quality of the front chosen from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.search.pareto import (
    ParetoError,
    accuracy_loss_at_budgets,
    best_accuracy_at_budgets,
    hypervolume,
    igd,
    pareto_front,
)

LATENCY_SLACK = 1.1


@dataclass(frozen=True)
class Reference:
    """The true front over the known domain, its reference point and the latency budgets."""

    accuracy: np.ndarray  # front members, by latency
    latency: np.ndarray
    point: tuple[float, float]  # (accuracy, latency) of the hypervolume reference point
    hv: float
    n_domain: int  # architectures the reference was taken over
    quantiles: tuple[float, ...]
    budgets: tuple[float, ...]


def reference_accuracy(front_accuracy: np.ndarray, domain_accuracy: np.ndarray) -> float:
    """The reference point's accuracy: the true front's worst. Where the front is one accuracy (a target whose
    latency is the same for every architecture has a one-point front: its most accurate cell), that would leave
    no area at all; then the domain's worst accuracy, so the chosen front that holds the most accurate cell
    scores 1.0 and one without it scores its accuracy's share; where every accuracy is equal, one unit below
    (the ratio is then the latency axis' alone, whatever the unit)."""
    worst = float(np.min(front_accuracy))
    if float(np.max(front_accuracy)) > worst:
        return worst
    lowest = float(np.min(domain_accuracy))
    return lowest if lowest < worst else worst - 1.0


def reference_front(accuracy: Sequence[float] | np.ndarray, true_latency: Sequence[float] | np.ndarray,
                    quantiles: Sequence[float] = (0.25, 0.5, 0.75)) -> Reference:
    """The reference over every architecture with a known accuracy and true latency (NaN rows left out)."""
    a = np.asarray(accuracy, dtype=float)
    t = np.asarray(true_latency, dtype=float)
    known = np.isfinite(a) & np.isfinite(t)
    if known.sum() < 1:
        raise ParetoError("no architecture has both a known accuracy and a known true latency")
    _, fa, ft = pareto_front(a[known], t[known])
    point = (reference_accuracy(fa, a[known]), LATENCY_SLACK * float(ft.max()))
    hv = hypervolume(fa, ft, *point)
    budgets = tuple(float(np.quantile(ft, q)) for q in quantiles)
    return Reference(fa, ft, point, hv, int(known.sum()), tuple(float(q) for q in quantiles), budgets)


def front_quality(ref: Reference, accuracy: Sequence[float] | np.ndarray,
                  true_latency: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Figures of a chosen set at its true latency against ``ref`` (points of unknown latency left out).

    ``hv_ratio`` (hypervolume / the reference's), ``igd`` (mean distance from the reference front, each axis
    scaled by its range), ``acc_loss_q<NN>`` (the reference's best accuracy within each budget minus the
    chosen set's; the whole reference accuracy where nothing chosen fits), ``unserved_q<NN>`` (1.0 where
    nothing chosen fits that budget, else 0.0: its loss is then the whole accuracy), ``unserved_budgets``
    (budgets with nothing chosen that fits).
    """
    a = np.asarray(accuracy, dtype=float)
    t = np.asarray(true_latency, dtype=float)
    known = np.isfinite(a) & np.isfinite(t)
    a, t = a[known], t[known]
    out: dict[str, float] = {"n_chosen_known": float(len(a))}
    if len(a) == 0:
        out.update(hv_ratio=0.0, igd=float("nan"), unserved_budgets=float(len(ref.budgets)))
        best = best_accuracy_at_budgets(ref.accuracy, ref.latency, ref.budgets)
        for q, v in zip(ref.quantiles, best, strict=True):
            out[f"acc_loss_q{round(100 * q)}"] = float(v)
            out[f"unserved_q{round(100 * q)}"] = 1.0
        return out
    out["hv_ratio"] = hypervolume(a, t, *ref.point) / ref.hv if ref.hv > 0 else float("nan")
    out["igd"] = igd(a, t, ref.accuracy, ref.latency)
    losses = accuracy_loss_at_budgets(a, t, ref.accuracy, ref.latency, ref.budgets)
    got = best_accuracy_at_budgets(a, t, ref.budgets)
    for q, loss, g in zip(ref.quantiles, losses, got, strict=True):
        out[f"acc_loss_q{round(100 * q)}"] = float(loss)
        out[f"unserved_q{round(100 * q)}"] = float(np.isnan(g))
    out["unserved_budgets"] = float(np.isnan(got).sum())
    return out
