"""The sweep stage, driver side: what every target shares, k measurements per target, the per-target tasks,
and the real evaluation of front members chosen on a provisional accuracy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.protocol import DeviceSpec
from orchestrator.latency.devices.reliability import reliability_check
from orchestrator.latency.table import LatencyTable
from orchestrator.latency.transfer import SourceSet
from orchestrator.pipeline.context import Context
from orchestrator.search.algorithms import MAX_EXHAUSTIVE
from orchestrator.search.driver import Candidate
from orchestrator.sweep import (
    SweepSettings,
    SweepShared,
    TargetInput,
    TargetReport,
    fan_out,
    finalize,
    pick_k,
    propose,
    run_targets,
)
from orchestrator.sweep.reference import reference_cells
from orchestrator.sweep.target import Encoder, target_search
from search_spaces.costs import CostModel

log = logging.getLogger(__name__)


def _prepared(src: SourceSet, ks: list[int]) -> SourceSet:
    return src.prepare(ks)


class SourceCache:
    """Transfer sources per target: the proxy alone, or every tabulated device but the target. One SourceSet
    per distinct set; their meta-learned penalties are computed once, in parallel Ray tasks (``prepare``),
    not again in every target's task."""

    def __init__(self, ctx: Context, proxy_table: LatencyTable, ks: Sequence[int]) -> None:
        self.ctx, self.proxy_table, self.ks = ctx, proxy_table, list(ks)
        self._sets: dict[tuple[str, ...], SourceSet] = {}

    def _names(self, target: str) -> tuple[tuple[str, ...], LatencyTable]:
        table = self.ctx.plan.table
        if self.ctx.cfg.sweep.sources == "tabulated" and table is not None:
            return tuple(d for d in table.devices if d != target), table
        return (self.ctx.plan.proxy,), self.proxy_table

    def prepare(self, targets: Sequence[str]) -> None:
        """Build and prepare every source set these targets use."""
        import ray

        todo: dict[tuple[str, ...], SourceSet] = {}
        for t in targets:
            names, base = self._names(t)
            if names and names not in self._sets and names not in todo:
                todo[names] = SourceSet.from_table(base.select(list(names)), self.ctx.space, seed=self.ctx.cfg.seed)
        task = ray.remote(num_cpus=1)(_prepared)
        refs = {names: task.remote(src, self.ks) for names, src in todo.items()}
        self._sets.update({names: ray.get(ref) for names, ref in refs.items()})

    def __call__(self, target: str) -> SourceSet | None:
        names, _ = self._names(target)
        if not names:
            return None
        if names not in self._sets:
            self.prepare([target])
        return self._sets[names]


def settings(ctx: Context) -> SweepSettings:
    sw = ctx.cfg.sweep
    return SweepSettings(threshold=sw.srcc_threshold, rule=sw.decision, confidence=sw.confidence,
                         method=sw.transfer, quantiles=tuple(sw.budget_quantiles), seed=ctx.cfg.seed,
                         algorithm=sw.target_search.algorithm, n_trials=sw.target_search.n_trials,
                         population=sw.target_search.population, budget_ms=ctx.cfg.search.latency_budget_ms,
                         objectives=tuple(ctx.cfg.search.objectives), constraints=dict(ctx.cfg.search.constraints),
                         memory_mb=dict(sw.memory_mb))


def build_shared(ctx: Context, accuracy: Any, pool: Sequence[Candidate]) -> SweepShared:
    """The context every target task gets: the pool, the oracle, the domain, the proxy's whole-domain front,
    the known domain that fronts are judged on."""
    space, plan = ctx.space, ctx.plan
    elog = ctx.eval_log()
    oracle = accuracy.oracle(elog.values)
    pool_ids = list(dict.fromkeys(c.arch_id for c in pool))
    if plan.domain == "table" and plan.table is not None:
        search_ids: list[str] | None = list(plan.table.archs)
    elif hasattr(space, "enumerate") and space.size <= MAX_EXHAUSTIVE:
        search_ids = [space.arch_id(a) for a in space.enumerate()]
    else:
        search_ids = None
    enc = Encoder(space)
    search_X = enc(search_ids) if search_ids is not None else None
    known = [a for a in (search_ids or []) if oracle.final(a)]
    ref_ids = list(dict.fromkeys([*known, *pool_ids, *(a for a in elog.values if oracle.final(a))]))
    proxy_ms = np.asarray(ctx.proxy_predictor.predict(enc(pool_ids)), dtype=float)
    shared = SweepShared(space.spec(), plan.proxy, ctx.proxy_predictor, oracle, pool_ids, proxy_ms, search_ids,
                         search_X, [], ref_ids, [], settings(ctx))
    st = shared.settings
    if st.objectives or st.constraints or st.memory_mb:  # computed once here, shipped to every target's task
        shared.costs = CostModel(space.spec())
        with ctx.timed("costs_s"):
            shared.costs.of(list(dict.fromkeys([*(search_ids or []), *ref_ids, *pool_ids])))
    if shared.settings.algorithm != "none":
        def proxy(ids: Sequence[str]) -> np.ndarray:
            return np.asarray(ctx.proxy_predictor.predict(enc(list(ids))), dtype=float)

        with ctx.timed("proxy_domain_search_s"):
            shared.proxy_front_ids, _ = target_search(space, shared, proxy, ctx.proxy_predictor, plan.proxy)
    shared.truth_ids = list(dict.fromkeys([*ref_ids, *(search_ids or []), *pool_ids, *shared.proxy_front_ids]))
    n_ref = ctx.cfg.sweep.reference_cells
    if n_ref:
        shared.reference_ids = reference_cells(search_ids if search_ids is not None else shared.truth_ids, n_ref,
                                               space.spec(), plan.table, st.constraints, shared.costs)
        (ctx.run_dir / "reference_cells.csv").write_text("arch\n" + "".join(f"{a}\n" for a in shared.reference_ids))
        log.info("sweep: %d reference cells measured first on every target (reference_cells.csv)",
                 len(shared.reference_ids))
    log.info("sweep: %d candidates, proxy's whole-domain front %d, known domain %d architectures",
             len(pool_ids), len(shared.proxy_front_ids), len(ref_ids))
    return shared


def target_input(ctx: Context, shared: SweepShared, spec: DeviceSpec, k: int) -> TargetInput:
    """The first round's k measurements on the target (and its truth where it is known)."""
    device = ctx.plan.device(spec.name, spec.options)
    t0 = time.perf_counter()
    base = shared.search_ids if shared.search_ids is not None else \
        list(dict.fromkeys([*shared.pool_ids, *shared.proxy_front_ids]))
    dom = device.domain()
    if dom is not None:
        allowed = set(dom)
        base = [a for a in base if a in allowed]
    fits = shared.allowed(base, spec.name)  # what exceeds the device's memory or a cost limit cannot be measured
    base = [a for a, f in zip(base, fits, strict=True) if f]
    ok = set(base)
    refs = [a for a in shared.reference_ids if a in ok][:k]  # the fixed reference cells first, counted in k
    if refs:
        base = [a for a in base if a not in set(refs)]
    enc = Encoder(ctx.space, shared.search_ids, shared.search_X)
    proxy_ms = np.asarray(shared.proxy_predictor.predict(enc(base)), dtype=float)
    k_ids = refs + pick_k(base, proxy_ms, k - len(refs), shared.proxy_front_ids, ctx.cfg.sweep.k_front)
    y = np.asarray(device.latency_ms(k_ids), dtype=float)
    truth = device.truth(shared.truth_ids)
    metrics = {"reference_cells": float(len(refs))} if shared.reference_ids else {}
    return TargetInput(spec.name, device.kind, device.spec(), k_ids, y, truth, time.perf_counter() - t0, metrics,
                       None if dom is None else list(dom))


def measure_all(ctx: Context, shared: SweepShared, todo: Sequence[DeviceSpec], k: int) -> list[TargetInput]:
    """The first round's k measurements per target, one target after another: timing two devices on one
    host at once would measure their contention."""
    bar = None
    if ctx.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="measure k", unit="device", disable=None)
    out = []
    for spec in todo:
        try:
            out.append(target_input(ctx, shared, spec, k))
        except DeviceError as e:  # this target ends; the others are measured
            target_failed(ctx, spec.name, e)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def target_failed(ctx: Context, name: str, error: DeviceError) -> None:
    """Record that target ``name`` failed (summary.json ``failed_targets``: its reason) and release its device."""
    ctx.failed_targets[name] = str(error)
    log.error("target %s failed and is left out of the sweep: %s", name, error)
    ctx.plan.device(name).close()


def measure_more(ctx: Context, target: TargetInput, ids: Sequence[str]) -> None:
    """The second round: measure ``ids`` too (where the target's own front lives); then, where the device's
    measurements are noisy, ``sweep.retest`` of the k again in another order (the test-retest SRCC)."""
    t0 = time.perf_counter()
    device = ctx.plan.device(target.name)
    if ids:
        y = device.latency_ms(list(ids))
        target.k_ids = [*target.k_ids, *ids]
        target.k_latency = np.concatenate([target.k_latency, np.asarray(y, dtype=float)])
    n = min(ctx.cfg.sweep.retest, len(target.k_ids))
    if not device.deterministic and n >= 3:
        rep = reliability_check(device, target.k_ids[:n], np.random.default_rng([ctx.cfg.seed, 5]),
                                first_ms=target.k_latency[:n])
        target.metrics.update({k: float(v) for k, v in rep.as_dict().items()})
    target.seconds_measuring += time.perf_counter() - t0


def rounds(k: int, adaptive: float) -> tuple[int, int]:
    """(first round, second round) measurements of k; the first round has at least 3."""
    second = min(int(round(adaptive * k)), k - 3)
    return k - second, max(0, second)


def truth_of(ctx: Context, rep: TargetReport) -> Callable[[Sequence[str]], np.ndarray] | None:
    device = ctx.plan.device(rep.name)
    if device.truth([]) is None:
        return None
    return lambda ids: np.asarray(device.truth(list(ids)), dtype=float)


def evaluate_provisional(ctx: Context, accuracy: Any, shared: SweepShared, reports: Sequence[TargetReport]) -> None:
    """Front members chosen on a provisional accuracy (a supernet's subnets predicted, not evaluated) are
    evaluated for real, up to ``max_new_evaluations`` per target; what stays provisional is dropped, and the
    fronts are judged again with the real values."""
    oracle = shared.oracle
    if oracle.predictions_final:
        return
    cap = ctx.cfg.sweep.target_search.max_new_evaluations
    want: dict[str, None] = {}
    for rep in reports:
        prov = [a for a in rep.front_ids() if not oracle.final(a)]
        pos = np.unique(np.round(np.linspace(0, len(prov) - 1, min(cap, len(prov)))).astype(int)) if prov else []
        want.update(dict.fromkeys(prov[p] for p in pos))
    t0 = time.perf_counter()
    new = dict(accuracy.evaluate(list(want))) if want else {}
    elog = ctx.eval_log()
    elog.add(new)
    oracle.add(new)
    if hasattr(accuracy, "release"):
        accuracy.release()
    shared.ref_ids = list(dict.fromkeys([*shared.ref_ids, *new]))
    for rep in reports:
        keep = [i for i, a in enumerate(rep.options) if oracle.final(a)]
        rep.options = [rep.options[i] for i in keep]
        rep.predicted = rep.predicted[keep]
        finalize(shared, rep, truth_of(ctx, rep), plot=rep.kind != "measured")
        rep.metrics["new_evaluations"] = float(sum(a in new for a in rep.options))
    ctx.timings["sweep_evaluations"] = float(len(new))
    ctx.timings["sweep_evaluation_s"] = time.perf_counter() - t0
    log.info("sweep: evaluated %d front members chosen on a predicted accuracy in %.1fs", len(new),
             time.perf_counter() - t0)


def sweep_stage(ctx: Context, accuracy: Any, shared: SweepShared, proxy_table: LatencyTable,
                todo: Sequence[DeviceSpec], finish: Callable[[TargetReport], None]) -> None:
    """Measure, decide and search every target; ``finish`` records each (as it arrives when no accuracy has
    to be evaluated first)."""
    k1, k2 = rounds(ctx.cfg.sweep.k, ctx.cfg.sweep.k_adaptive)
    if ctx.cfg.sweep.reference_cells > k1:  # the first round holds every reference cell
        k1, k2 = ctx.cfg.sweep.reference_cells, ctx.cfg.sweep.k - ctx.cfg.sweep.reference_cells
    inputs = measure_all(ctx, shared, todo, k1)
    sources = SourceCache(ctx, proxy_table, sorted({k1, k1 + k2}))
    with ctx.timed("sources_s"):
        sources.prepare([t.name for t in inputs])
    with ctx.timed("second_round_s"):
        more = fan_out(propose, shared, inputs, sources, n=k2) if k2 else [[] for _ in inputs]
        for target, ids in zip(inputs, more, strict=True):
            try:
                measure_more(ctx, target, ids)
            except DeviceError as e:
                target_failed(ctx, target.name, e)
        inputs = [t for t in inputs if t.name not in ctx.failed_targets]
    streaming = shared.oracle.predictions_final
    reps = run_targets(shared, inputs, sources, plot=True, keep_predictor=ctx.cfg.sweep.refine_trials > 0,
                       progress=finish if streaming else None)
    if not streaming:
        evaluate_provisional(ctx, accuracy, shared, reps)
        for rep in reps:
            finish(rep)
