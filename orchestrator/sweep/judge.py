"""A target's chosen front judged against the truth over the whole known domain, and its plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from orchestrator.search.quality import front_quality, reference_front
from orchestrator.sweep.target import SweepShared, TargetReport, front_of


def reused_front(shared: SweepShared, target: str, pool_acc: np.ndarray) -> list[int]:
    """Plain reuse: the proxy search's own front (in every objective), less what exceeds the target's limits."""
    fits = shared.allowed(shared.pool_ids, target)
    return [i for i in front_of(pool_acc, shared.pool_proxy_ms, shared.extra(shared.pool_ids)) if fits[i]]


def finalize(shared: SweepShared, rep: TargetReport, truth: Callable[[Sequence[str]], np.ndarray] | None,
             plot: bool = False) -> None:
    """The front from the options' current accuracies; where ``truth`` is given, its quality at true latency
    against the true front over the known domain (budget-feasible part where a budget is set); the plot."""
    s = shared.settings
    rep.accuracy = shared.oracle.values(rep.options)
    rep.front = front_of(rep.accuracy, rep.predicted, shared.extra(rep.options))
    if truth is None:
        rep.png = None
        return
    rep.true_ms = truth(rep.options)
    ref_t = truth(shared.ref_ids)
    ref_a = shared.oracle.values(shared.ref_ids)
    ref_t = np.where(shared.allowed(shared.ref_ids, rep.name), ref_t, np.nan)  # the truth within its limits
    if s.budget_ms is not None:
        ref_t = np.where(ref_t <= s.budget_ms, ref_t, np.nan)
    if np.isfinite(ref_t).sum() < 1:
        return
    ref = reference_front(ref_a, ref_t, s.quantiles)
    rep.reference = ref
    rep.budgets_ms = list(ref.budgets)
    f = rep.front
    rep.metrics.update(front_quality(ref, rep.accuracy[f], rep.true_ms[f]))
    rep.metrics["pool_hv_ratio"] = front_quality(ref, rep.accuracy, rep.true_ms)["hv_ratio"]
    pool_acc = shared.oracle.values(shared.pool_ids)
    reuse = reused_front(shared, rep.name, pool_acc)
    plain = front_quality(ref, pool_acc[reuse], truth([shared.pool_ids[i] for i in reuse]))
    rep.metrics["hv_ratio_reuse"] = plain["hv_ratio"]
    rep.metrics["unserved_budgets_reuse"] = plain["unserved_budgets"]
    rep.metrics["n_reference"] = float(ref.n_domain)
    if plot:
        rep.png = render(shared, rep, ref)


def render(shared: SweepShared, rep: TargetReport, ref: Any = None) -> bytes:
    """The target's front plot: at true latency where every option's is known, else predicted."""
    from orchestrator.report import render_target_front

    full = rep.true_ms is not None and np.isfinite(rep.true_ms).all()
    lat = rep.true_ms if full else rep.predicted
    reuse = [shared.pool_ids[i] for i in reused_front(shared, rep.name, shared.oracle.values(shared.pool_ids))]
    index = {a: i for i, a in enumerate(rep.options)}
    proxy_front = [index[a] for a in reuse if a in index]
    true_front = (ref.accuracy, ref.latency) if (full and ref is not None) else None
    title = (f"{rep.name}: {rep.decision.decision} (srcc_k {rep.decision.srcc_k:.2f}"
             + (f", lower bound {rep.decision.srcc_lb:.2f}" if np.isfinite(rep.decision.srcc_lb) else "") + ")")
    measured = {index[a]: v for a, v in rep.measured_front.items() if a in index}
    return render_target_front(title, rep.accuracy, lat, rep.front, proxy_front,
                               latency_label=f"{rep.name} latency (ms, {'true' if full else 'predicted'})",
                               decision=rep.decision.decision, measured=measured or None, true_front=true_front)
