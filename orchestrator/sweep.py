"""The one-proxy device sweep: per target, k measurements, an SRCC decision, a front.

For each target device (the seed's method, SIGMETRICS 2022):

1. measure k architectures on it, chosen to span the proxy's latency range;
2. SRCC between the proxy's predictions and those measurements; at or above
   the threshold reuse the proxy's front (its ranking holds on the target),
   else adapt a predictor with a transfer method and re-rank the proxy
   search's candidates with it;
3. where the target has ground truth for the candidates (a tabulated target, a
   simulated one), report what the shortcut cost: hypervolume ratio against
   the true front, IGD, accuracy lost at latency budgets; and the same for
   plain reuse, so the value of adapting is visible.

``decide_target`` is pure NumPy on small arrays: the driver fans it out as Ray
tasks (``run_targets``), one per target. Ray Tune is not used here: a trial
there costs about half a second of overhead, more than this work itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.latency.metrics import srcc
from orchestrator.latency.transfer import SourceSet, adapt, affine_positive
from orchestrator.search.pareto import (
    accuracy_loss_at_budgets,
    hypervolume,
    igd,
    pareto_mask,
)
from search_spaces.base import SearchSpace, encode_ids

log = logging.getLogger(__name__)


@dataclass
class ProxyCandidates:
    """What every target needs from the proxy search: candidates, accuracy, proxy latency."""

    proxy: str
    ids: list[str]
    accuracy: np.ndarray
    proxy_latency: np.ndarray

    def __post_init__(self) -> None:
        self.accuracy = np.asarray(self.accuracy, dtype=float)
        self.proxy_latency = np.asarray(self.proxy_latency, dtype=float)

    def front(self) -> np.ndarray:
        return np.flatnonzero(pareto_mask(self.accuracy, self.proxy_latency))


@dataclass
class TargetInput:
    name: str
    kind: str  # "tabulated", "simulated", "measured"
    k_ids: list[str]
    k_latency: np.ndarray
    truth: np.ndarray | None = None  # true latency of every candidate (NaN: unknown)
    seconds_measuring: float = 0.0


@dataclass
class TargetReport:
    name: str
    kind: str
    k: int
    srcc_k: float
    decision: str  # "reuse" or "adapt"
    method: str
    predicted: np.ndarray  # target latency predicted for every candidate
    front: list[int]  # candidate indices on the target's predicted front, by latency
    metrics: dict[str, float] = field(default_factory=dict)
    budgets_ms: list[float] = field(default_factory=list)
    measured_front: dict[str, float] = field(default_factory=dict)  # arch id -> measured ms
    n_measurements: int = 0
    seconds: float = 0.0
    png: bytes | None = None  # the front plot, rendered in the task (not for measured targets)
    predictor: Any = None  # the adapted latency predictor, kept when a refinement search will use it

    def summary(self) -> dict[str, Any]:
        return {"target": self.name, "kind": self.kind, "k": self.k, "srcc_k": self.srcc_k,
                "decision": self.decision, "method": self.method, "front_size": len(self.front),
                "n_measurements": self.n_measurements, "seconds": self.seconds, **self.metrics}


def pick_k(ids: Sequence[str], proxy_latency: np.ndarray, k: int) -> list[str]:
    """k architectures at evenly spaced ranks of proxy latency (fastest and slowest included)."""
    order = np.argsort(np.asarray(proxy_latency), kind="stable")
    if len(order) <= k:
        return [ids[i] for i in order]
    pos = np.unique(np.round(np.linspace(0, len(order) - 1, k)).astype(int))
    return [ids[order[p]] for p in pos]


def _front_indices(acc: np.ndarray, lat: np.ndarray) -> list[int]:
    idx = np.flatnonzero(pareto_mask(acc, lat))
    return [int(i) for i in idx[np.argsort(lat[idx], kind="stable")]]


def pareto_loss(acc: np.ndarray, truth: np.ndarray, chosen: Sequence[int],
                quantiles: Sequence[float]) -> tuple[dict[str, float], list[float]]:
    """How much worse the chosen set is than the true front, all at true latency (known rows only)."""
    known = ~np.isnan(truth)
    chosen = [i for i in chosen if known[i]]
    a, t = acc[known], truth[known]
    ref = np.flatnonzero(pareto_mask(a, t))
    ref_a, ref_t = a[ref], t[ref]
    ref_point = (float(a.min()) - 1e-6, float(t.max()) * 1.001)
    hv_ref = hypervolume(ref_a, ref_t, *ref_point)
    out: dict[str, float] = {"n_truth": float(known.sum())}
    if not chosen:
        out.update(hv_ratio=0.0, igd=float("nan"))
        return out, []
    ca, ct = acc[chosen], truth[chosen]
    out["hv_ratio"] = hypervolume(ca, ct, *ref_point) / hv_ref if hv_ref > 0 else float("nan")
    out["igd"] = igd(ca, ct, ref_a, ref_t)
    budgets = [float(np.quantile(ref_t, q)) for q in quantiles]
    for q, loss in zip(quantiles, accuracy_loss_at_budgets(ca, ct, ref_a, ref_t, budgets), strict=True):
        out[f"acc_loss_q{int(round(100 * q))}"] = float(loss)
    return out, budgets


def decide_target(space: SearchSpace, cands: ProxyCandidates, target: TargetInput, sources: SourceSet | None,
                  *, threshold: float, method: str, quantiles: Sequence[float], seed: int,
                  keep_predictor: bool = False) -> TargetReport:
    """Steps 2-3 above for one target. ``sources`` None: reuse only (no transfer possible).
    ``keep_predictor``: return the adapted predictor too (for a refinement search on it)."""
    t0 = time.perf_counter()
    index = {a: i for i, a in enumerate(cands.ids)}
    y = np.asarray(target.k_latency, dtype=float)
    X_k = encode_ids(space, target.k_ids)
    in_cands = [index.get(a) for a in target.k_ids]
    if all(i is not None for i in in_cands):
        proxy_k = cands.proxy_latency[[int(i) for i in in_cands if i is not None]]
    else:  # k archs outside the candidates: the sources' view of the proxy
        proxy_k = sources.latency(X_k)[:, sources.names.index(cands.proxy)] if sources is not None and \
            cands.proxy in sources.names else np.full(len(y), np.nan)
    s = srcc(proxy_k, y) if len(y) >= 3 and not np.isnan(proxy_k).any() else float("nan")
    adapted = None
    if (not np.isnan(s) and s >= threshold) or sources is None:
        a, c = affine_positive(np.nan_to_num(proxy_k), y)
        predicted = a * cands.proxy_latency + c
        decision, used = "reuse", "reuse"
    else:
        rng = np.random.default_rng([seed, 7])
        pred = adapt(method, sources, X_k, y, rng)
        predicted = np.asarray(pred.predict(encode_ids(space, cands.ids)), dtype=float)
        decision, used = "adapt", getattr(pred, "chosen_method", method)
        adapted = pred
    front = _front_indices(cands.accuracy, predicted)
    rep = TargetReport(target.name, target.kind, len(y), float(s), decision, used, predicted, front,
                       n_measurements=len(y), predictor=adapted if keep_predictor else None)
    if target.truth is not None and (~np.isnan(target.truth)).sum() >= 3:
        truth = np.asarray(target.truth, dtype=float)
        known = ~np.isnan(truth)
        rep.metrics["transfer_srcc"] = srcc(predicted[known], truth[known])
        rep.metrics["proxy_srcc"] = srcc(cands.proxy_latency[known], truth[known])
        m, rep.budgets_ms = pareto_loss(cands.accuracy, truth, front, quantiles)
        rep.metrics.update(m)
        reuse_m, _ = pareto_loss(cands.accuracy, truth, _front_indices(cands.accuracy, cands.proxy_latency),
                                 quantiles)
        rep.metrics["hv_ratio_reuse"] = reuse_m["hv_ratio"]
    rep.seconds = time.perf_counter() - t0 + target.seconds_measuring
    return rep


def front_plot(rep: TargetReport, cands: ProxyCandidates, truth: np.ndarray | None,
               measured: dict[int, float] | None = None) -> bytes:
    """The target's front plot: at true latency where every candidate's is known, else predicted."""
    from orchestrator.report import render_target_front

    proxy_front = list(np.flatnonzero(pareto_mask(cands.accuracy, cands.proxy_latency)))
    full = truth is not None and not np.isnan(truth).any()
    lat = truth if full else rep.predicted
    true_front = list(np.flatnonzero(pareto_mask(cands.accuracy, truth))) if full else None
    return render_target_front(rep.name, cands.accuracy, lat, rep.front, proxy_front,
                               latency_label=f"{rep.name} latency (ms, {'true' if full else 'predicted'})",
                               decision=rep.decision, measured=measured, true_front=true_front)


def _decide_remote(space: SearchSpace, cands: ProxyCandidates, target: TargetInput, *args: Any,
                   plot: bool = False, **kwargs: Any) -> TargetReport:
    rep = decide_target(space, cands, target, *args, **kwargs)
    if plot and target.kind != "measured":  # measured targets are plotted after their front is measured
        rep.png = front_plot(rep, cands, target.truth)
    return rep


def run_targets(space: SearchSpace, cands: ProxyCandidates, targets: Sequence[TargetInput],
                sources_for: Callable[[str], SourceSet | None], *, threshold: float, method: str,
                quantiles: Sequence[float], seed: int, use_ray: bool = True, plot: bool = False,
                keep_predictor: bool = False,
                progress: Callable[[TargetReport], None] | None = None) -> list[TargetReport]:
    """Decide every target, as Ray tasks (candidates and each distinct source set put once); ``plot``:
    the tasks also render each target's front plot (``TargetReport.png``)."""
    kw = {"threshold": threshold, "method": method, "quantiles": list(quantiles), "seed": seed,
          "keep_predictor": keep_predictor}
    if not use_ray:
        out = []
        for t in targets:
            out.append(_decide_remote(space, cands, t, sources_for(t.name), plot=plot, **kw))
            if progress is not None:
                progress(out[-1])
        return out
    import ray

    remote = ray.remote(num_cpus=1, max_retries=2)(_decide_remote)
    cands_ref = ray.put(cands)
    space_ref = ray.put(space)
    src_refs: dict[int, Any] = {}
    refs = {}
    for t in targets:
        src = sources_for(t.name)
        if src is not None and id(src) not in src_refs:
            src_refs[id(src)] = ray.put(src)
        refs[remote.remote(space_ref, cands_ref, t, None if src is None else src_refs[id(src)], plot=plot,
                           **kw)] = t.name
    done: dict[str, TargetReport] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        rep: TargetReport = ray.get(ready[0])
        done[rep.name] = rep
        if progress is not None:
            progress(rep)
    return [done[t.name] for t in targets]
