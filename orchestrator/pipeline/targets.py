"""The sweep stage, driver side: a target's life. What every target shares, k measurements per target (the rules:
``sweep/rounds.py``), the per-target tasks, the real evaluation of front members chosen on a provisional
accuracy, one judgement per target when the accuracies are final, and the named hooks that run after the
fan-out drains."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ArchitectureRefused, DeviceError
from orchestrator.latency.devices.reliability import reliability_check
from orchestrator.latency.table import LatencyTable
from orchestrator.latency.transfer import SourceSet
from orchestrator.pipeline.context import Context
from orchestrator.pipeline.resolved import Target
from orchestrator.search.algorithms import NONE
from orchestrator.search.driver import Candidate
from orchestrator.sweep import (
    Rounds,
    SweepSettings,
    SweepShared,
    TargetInput,
    TargetReport,
    fan_out,
    finalize,
    first_round,
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
    not again in every target's task; read from the disk cache instead where an earlier run computed them
    (``latency/selection_cache.py``)."""

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
        for names in [n for n, src in todo.items() if src.prepared_from_cache(self.ks)]:  # computed by an earlier run
            self._sets[names] = todo.pop(names)
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
    search_ids = plan.domain.enumeration()  # the table's rows, or the whole space where it can be listed
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
    if shared.settings.algorithm != NONE:
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


def rounds(ctx: Context) -> Rounds:
    """The target's measurement settings, grouped (``sweep/rounds.py`` holds their rules)."""
    sw = ctx.cfg.sweep
    return Rounds(k=sw.k, adaptive=sw.k_adaptive, front_share=sw.k_front, reference_cells=sw.reference_cells,
                  retest=sw.retest)


REFUSED_SHARE = 0.5  # a target whose device refuses more than this share of sweep.k architectures ends


def refusal_limit(ctx: Context) -> int:
    """How many architectures a target's device may refuse (``ArchitectureRefused``) before the target ends:
    half of ``sweep.k``, at least 1. A device that refuses more is broken (or its output check too strict)."""
    return max(1, int(REFUSED_SHARE * ctx.cfg.sweep.k))


def measure_ids(ctx: Context, target: Target, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """``ids`` measured on ``target``: (the ids measured, in order, and their latencies). An architecture the
    device refuses (``ArchitectureRefused``: its artefact failed an output check) is skipped, what the same call
    measured before it kept, and the rest measured; each refusal is recorded (``ctx.refused[target]``, a
    warning naming it). More refusals than ``refusal_limit`` on one target raise a DeviceError: the target ends
    (``target_failed``), as for any device failure."""
    from orchestrator.latency.devices.measured import latencies_skipping_refused

    refused = ctx.refused.setdefault(target.name, {})

    def on_refused(r: ArchitectureRefused) -> None:
        refused[r.arch_id] = str(r)
        log.warning("target %s: its device refused %s, skipped (%d refused so far; summary.json "
                    "refused_architectures lists them): %s", target.name, r.arch_id, len(refused), r)
        limit = refusal_limit(ctx)
        if len(refused) > limit:
            raise DeviceError(f"{target.name}: the device refused {len(refused)} architectures, more than "
                              f"{limit} (half of sweep.k = {ctx.cfg.sweep.k}): a device that refuses this "
                              "many cannot be trusted to measure the rest; fix its check or its options "
                              f"(summary.json refused_architectures lists them). Last refusal: {r}") from None

    return latencies_skipping_refused(target.device, ids, on_refused)


def measure_first_round(ctx: Context, shared: SweepShared, target: Target, k: int) -> tuple[list[str], np.ndarray]:
    """The first round's k measurements on ``target`` (``first_round``). Each architecture its device refuses
    is replaced: the round is chosen again without the refused ones and its next picks not measured yet fill
    it up to k (fewer only where the domain runs out)."""
    front_share = rounds(ctx).front_share
    k_ids, _ = first_round(shared, target.name, target.domain, k, front_share)
    got: list[str] = []
    ys: list[np.ndarray] = []
    todo = k_ids
    while todo:
        ids, y = measure_ids(ctx, target, todo)
        got += ids
        ys.append(y)
        refused = ctx.refused.get(target.name, {})
        if len(got) >= k or len(ids) == len(todo):
            break
        again, _ = first_round(shared, target.name, target.domain, k, front_share, exclude=refused)
        measured = set(got)
        todo = [a for a in again if a not in measured and a not in refused][:k - len(got)]
    return got, np.concatenate(ys) if ys else np.zeros(0)


def target_input(ctx: Context, shared: SweepShared, target: Target, k: int) -> TargetInput:
    """The first round's k measurements on the target (and its truth where it has one)."""
    t0 = time.perf_counter()
    k_ids, y = measure_first_round(ctx, shared, target, k)
    truth = target.truth(shared.truth_ids) if target.has_truth else None
    refs = set(shared.reference_ids)
    metrics = {"reference_cells": float(sum(a in refs for a in k_ids))} if shared.reference_ids else {}
    return TargetInput(target.name, target.kind, k_ids, y, truth, time.perf_counter() - t0, metrics,
                       None if target.domain is None else list(target.domain))


def measure_all(ctx: Context, shared: SweepShared, todo: Sequence[Target], k: int) -> list[TargetInput]:
    """The first round's k measurements per target, one target after another: timing two devices on one
    host at once would measure their contention."""
    bar = None
    if ctx.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="measure k", unit="device", disable=None)
    out = []
    for target in todo:
        try:
            out.append(target_input(ctx, shared, target, k))
        except DeviceError as e:  # this target ends; the others are measured
            target_failed(ctx, target, e)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def target_failed(ctx: Context, target: Target, error: DeviceError, stage: str | None = None) -> None:
    """Record that ``target`` failed (summary.json ``failed_targets``: its reason, prefixed with the hook it
    failed in, ``stage``, where that was after the rounds) and release its device. An error raised in a Ray
    actor or task is recorded as its cause (the device's own message), without Ray's traceback."""
    from orchestrator.ray_connect import ray_cause

    error = ray_cause(error)  # type: ignore[assignment]
    ctx.failed_targets[target.name] = f"{stage}: {error}" if stage else str(error)
    log.error("target %s failed and is left out of the sweep: %s", target.name, error)
    target.device.close()


def measure_more(ctx: Context, target: Target, inp: TargetInput, ids: Sequence[str],
                 replace: Callable[[int, Collection[str]], Sequence[str]] | None = None) -> None:
    """The second round: measure ``ids`` too (where the target's own front lives); each architecture the device
    refuses is replaced by ``replace(n, refused)`` (the second round proposed again without the refused ones;
    fewer only where it runs out); then, where the device's measurements are noisy, ``sweep.retest`` of the k
    again in another order (the test-retest SRCC)."""
    t0 = time.perf_counter()
    device = target.device
    todo, want = list(ids), len(ids)
    while todo:
        got, y = measure_ids(ctx, target, todo)
        inp.k_ids = [*inp.k_ids, *got]
        inp.k_latency = np.concatenate([inp.k_latency, y])
        want -= len(got)
        if len(got) == len(todo) or want <= 0 or replace is None:
            break
        refused = ctx.refused.get(target.name, {})
        measured = set(inp.k_ids)
        todo = [a for a in replace(want, list(refused)) if a not in measured and a not in refused][:want]
    n = rounds(ctx).retest_n(len(inp.k_ids), device.deterministic)
    if n:
        rep = reliability_check(device, inp.k_ids[:n], np.random.default_rng([ctx.cfg.seed, 5]),
                                first_ms=inp.k_latency[:n])
        inp.metrics.update({k: float(v) for k, v in rep.as_dict().items()})
    inp.seconds_measuring += time.perf_counter() - t0


def short_of_k(name: str, inp: TargetInput, k: int, refused: int) -> None:
    """Where a target measured fewer than its ``k`` (both rounds), a warning saying why and the metric
    ``k_unmet`` (in its summary row and MLflow run): its first round had fewer architectures it can be measured
    on, or its second round found fewer unmeasured ones in the pool and its predicted front, or its device
    refused some (break test: k = 12 on a 12-architecture domain measured 9, without a word)."""
    short = k - len(inp.k_ids)
    if short <= 0:
        return
    inp.metrics["k_unmet"] = float(short)
    why = f"{refused} refused by its device; " if refused else ""
    log.warning("%s: %d measurements of k = %d (%sthe candidate pool and the target's predicted front held no "
                "more architectures not yet measured that it can be measured on); a larger search "
                "(search.n_trials) gives a larger pool", name, len(inp.k_ids), k, why)


def evaluate_provisional(ctx: Context, accuracy: Any, shared: SweepShared,
                         reports: Sequence[TargetReport]) -> set[str]:
    """Front members chosen on a provisional accuracy (a supernet's subnets predicted, not evaluated) are
    evaluated for real, up to ``max_new_evaluations`` per target; what stays provisional is dropped from each
    target's options (judged afterwards, once, on the real values). Returns the newly evaluated ids."""
    oracle = shared.oracle
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
    ctx.timings["sweep_evaluations"] = float(len(new))
    ctx.timings["sweep_evaluation_s"] = time.perf_counter() - t0
    log.info("sweep: evaluated %d front members chosen on a predicted accuracy in %.1fs", len(new),
             time.perf_counter() - t0)
    return set(new)


def judge(shared: SweepShared, target: Target, rep: TargetReport) -> None:
    """The target's front from its options' final accuracies and, where it has a truth, its quality against
    the true front over the known domain, with its plot (``sweep.judge.finalize``). Once per target."""
    finalize(shared, rep, target.known_truth, plot=True)


@dataclass
class Finished:
    """A target whose front is judged: what its hooks read and add to (``export``: the exported front;
    ``int8``: its members' int8 accuracy, arch id -> ``orchestrator.supernet.int8.Int8Accuracy``)."""

    target: Target
    report: TargetReport
    export: Path | None = None
    int8: dict[str, Any] | None = None


Hook = Callable[[Finished], None]


def sweep_stage(ctx: Context, accuracy: Any, shared: SweepShared, proxy_table: LatencyTable,
                todo: Sequence[Target], hooks: Sequence[tuple[str, Hook]]) -> list[Finished]:
    """A target's life: the first round's k measurements (one target after another), the second round, the
    per-target tasks (decision, whole-domain search; fanned out over Ray), the real evaluation of front
    members chosen on a provisional accuracy, one judgement per target on the final accuracies, and then,
    once the fan-out has drained (no target task loads the host while a front is timed), the named
    ``hooks`` in order, target by target (``extras.target_hooks``: measure the front, refine, baseline,
    export; then the record). A DeviceError in any round or hook ends that target alone (``target_failed``:
    summary.json ``failed_targets``; a target failed in a hook is not recorded); the finished ones are returned.
    An architecture the device refuses (``ArchitectureRefused``) is skipped instead (``measure_ids``; in both
    rounds replaced), unless the target's refusals pass ``refusal_limit``."""
    k1, k2 = rounds(ctx).split()
    inputs = measure_all(ctx, shared, todo, k1)
    todo = [t for t in todo if t.name not in ctx.failed_targets]  # a failed device ends its target alone
    sources = SourceCache(ctx, proxy_table, sorted({k1, k1 + k2}))
    with ctx.timed("sources_s"):
        sources.prepare([t.name for t in inputs])
    with ctx.timed("second_round_s"):
        more = fan_out(propose, shared, inputs, sources, n=k2) if k2 else [[] for _ in inputs]
        for target, inp, ids in zip(todo, inputs, more, strict=True):
            def again(n: int, refused: Collection[str], inp: TargetInput = inp) -> list[str]:
                return propose(shared, inp, sources(inp.name), n, exclude=refused)

            try:
                measure_more(ctx, target, inp, ids, replace=again)
            except DeviceError as e:
                target_failed(ctx, target, e)
                continue
            short_of_k(target.name, inp, k1 + k2, len(ctx.refused.get(target.name, {})))
        inputs = [t for t in inputs if t.name not in ctx.failed_targets]
        todo = [t for t in todo if t.name not in ctx.failed_targets]
    reps = run_targets(shared, inputs, sources, keep_predictor=ctx.cfg.sweep.refine_trials > 0)
    new = None if shared.oracle.predictions_final else evaluate_provisional(ctx, accuracy, shared, reps)
    done = []
    for target, rep in zip(todo, reps, strict=True):
        judge(shared, target, rep)
        if new is not None:
            rep.metrics["new_evaluations"] = float(sum(a in new for a in rep.options))
        done.append(Finished(target, rep))
    for f in done:
        for name, hook in hooks:
            try:
                hook(f)
            except DeviceError as e:  # as in rounds 1 and 2: this target ends (its later hooks skipped), not the run
                target_failed(ctx, f.target, e, stage=name)
                break
    return [f for f in done if f.target.name not in ctx.failed_targets]
