"""After a target's front is judged: the named hooks of its life (``target_hooks``), run once the sweep's
fan-out has drained: measure the front (devices without a truth), refine it with a short real-accuracy
search, the per-device-search baseline, export the deployed networks, the front's int8 accuracy (where
``sweep.int8_accuracy`` asks for it); the record comes last."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.latency.metrics import srcc
from orchestrator.latency.predictors import make_predictor
from orchestrator.pipeline.context import Context
from orchestrator.pipeline.resolved import Target
from orchestrator.pipeline.search import table_domain
from orchestrator.pipeline.targets import Finished, Hook, measure_ids
from orchestrator.report import safe_name, write_front
from orchestrator.search.algorithms import SearchProblem, SearchSettings, run_search
from orchestrator.search.driver import extra_matrix
from orchestrator.search.quality import front_quality
from orchestrator.sweep import TargetReport, front_of
from search_spaces.base import encode_ids

log = logging.getLogger(__name__)


def target_hooks(ctx: Context, accuracy: Any, record: Callable[[Finished], None]) -> list[tuple[str, Hook]]:
    """The hooks of a target after its front is judged, by name, in the order they run: each decides for itself
    whether it applies (a truth, a setting, an adapted predictor)."""

    def refine(f: Finished) -> None:
        if ctx.cfg.sweep.refine_trials and f.report.predictor is not None:
            refine_target(ctx, accuracy, f.target, f.report)
        f.report.predictor = None  # not kept past its use

    def baseline(f: Finished) -> None:
        if ctx.cfg.sweep.per_device_search:
            per_device_search(ctx, accuracy, f.target, f.report)

    def export(f: Finished) -> None:
        f.export = export_front(ctx, f.target, f.report)

    def measure(f: Finished) -> None:
        measure_front(ctx, f.target, f.report)
        f.target.device.close()  # the target's last measurement: its measuring actor ends

    int8 = Int8Front(ctx)

    def int8_accuracy(f: Finished) -> None:
        if ctx.cfg.sweep.int8_accuracy.enabled:
            f.int8 = int8.of(f.report)

    return [("measure_front", measure), ("refine", refine), ("baseline", baseline), ("export", export),
            ("int8_accuracy", int8_accuracy), ("record", record)]


class Int8Front:
    """The int8 accuracy of front members beside their fp32 accuracy (``orchestrator.supernet.int8``), on the
    run's supernet and evaluation data, on Ray actors (``int8_pool.evaluate_parallel``: several members at
    once, the actors ended after each target's front, so none holds CPUs while the next target is timed);
    each architecture evaluated once for all targets. A member whose evaluation fails is that member alone:
    its row gets ``int8_error``, ``ctx.int8_failures`` (summary.json) the reason."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.done: dict[str, Any] = {}

    def of(self, rep: TargetReport) -> dict[str, Any]:
        """arch id -> ``Int8Accuracy`` for ``rep``'s front; its summary gets ``int8_drop_mean`` and
        ``int8_drop_max`` (percentage points, over the members evaluated), ``int8_members`` (those) and
        ``int8_failed`` (the members whose evaluation failed)."""
        ctx = self.ctx
        ids = rep.front_ids()
        todo = [a for a in dict.fromkeys(ids) if a not in self.done]
        with ctx.timed("int8_s"):
            if todo:
                self.done.update(self._evaluate(todo))
        out = {a: self.done[a] for a in ids}
        ok = [r for r in out.values() if r.ok]
        failed = {a: r.error for a, r in out.items() if not r.ok}
        if ok:
            drops = np.array([r.drop for r in ok])
            rep.metrics.update(int8_drop_mean=float(drops.mean()), int8_drop_max=float(drops.max()))
        if out:
            rep.metrics.update(int8_members=float(len(ok)), int8_failed=float(len(failed)))
        if failed:
            ctx.int8_failures.update(failed)
            log.warning("int8: %d of %d front members of %s failed: %s", len(failed), len(out), rep.name,
                        "; ".join(f"{a}: {e}" for a, e in failed.items()))
        return out

    def _evaluate(self, ids: list[str]) -> dict[str, Any]:
        from orchestrator.errors import ConfigError
        from orchestrator.supernet.int8_pool import evaluate_parallel

        ctx = self.ctx
        if ctx.supernet is None or ctx.supernet_data is None:  # the plan's checks refuse such a config
            raise ConfigError(f"sweep.int8_accuracy: accuracy.source {ctx.cfg.accuracy.source!r} has no network "
                              "with weights to quantize; use accuracy.source supernet or predictor")
        spec, weights = ctx.supernet
        return evaluate_parallel(spec, weights, ctx.supernet_data, ctx.cfg.accuracy.supernet.eval,
                                 ctx.cfg.sweep.int8_accuracy, ids)


def measure_front(ctx: Context, target: Target, rep: TargetReport) -> None:
    """Targets with no known truth: measure up to ``measure_front`` front members; predicted vs measured."""
    n = min(ctx.cfg.sweep.measure_front, len(rep.front))
    if target.has_truth or n == 0:
        return
    pos = np.unique(np.round(np.linspace(0, len(rep.front) - 1, n)).astype(int))
    chosen = [rep.front[p] for p in pos]
    ids = [rep.options[i] for i in chosen]
    t0 = time.perf_counter()
    got, y = measure_ids(ctx, target, ids)  # a refused member is skipped (ctx.refused names it)
    rep.seconds += time.perf_counter() - t0
    rep.measured_front = dict(zip(got, map(float, y), strict=True))
    rep.n_measurements += len(got)
    if not got:
        return
    measured = set(got)
    chosen = [i for i, a in zip(chosen, ids, strict=True) if a in measured]
    pred = rep.predicted[chosen]
    rep.metrics["front_mape_pct"] = float(100 * np.mean(np.abs(pred - y) / y))
    if len(y) >= 3:
        rep.metrics["front_srcc"] = srcc(pred, y)


def export_front(ctx: Context, target: Target, rep: TargetReport) -> Path | None:
    """Targets with no known truth (the devices of this cluster): the ``export_front`` most accurate front
    members as the deployed network (the space as configured: the network whose latency is reported), with
    the supernet's weights where the supernet is that same network, else initialised and labelled so."""
    n = min(ctx.cfg.sweep.export_front, len(rep.front))
    if target.has_truth or n == 0:
        return None
    import ray
    import torch

    from orchestrator.supernet.export import export_network

    space = ctx.space
    supernet = None
    if ctx.supernet is not None and ctx.supernet[0] == space.spec():
        supernet = space.build_supernet()
        supernet.load_state_dict(ray.get(ctx.supernet[1]))
        supernet.eval()
    elif ctx.supernet is not None:
        weights = (f"initialised (untrained): the supernet is a scaled-down proxy ({ctx.supernet[0].key()}); "
                   f"train this network before deploying it")
    else:
        weights = "initialised (untrained): accuracies come from a table or a predictor"
    out = ctx.run_dir / "exports" / safe_name(rep.name)
    best = sorted(rep.front, key=lambda i: -rep.accuracy[i])[:n]
    with torch.no_grad():
        for j, i in enumerate(best):
            arch = space.parse(rep.options[i])
            net = space.extract(supernet, arch) if supernet is not None else space.build(arch)
            export_network(net, space, arch, out, name=f"front{j}", extra={
                "network": "deployed (the configured space)",
                "weights": "supernet (inherited)" if supernet is not None else weights,
                "device": rep.name, "accuracy": float(rep.accuracy[i]), "predicted_ms": float(rep.predicted[i]),
                "measured_ms": rep.measured_front.get(rep.options[i])})
    return out


def refine_target(ctx: Context, accuracy: object, target: Target, rep: TargetReport) -> None:
    """An adapted target: a short search with the run's real accuracy on its adapted predictor, started from
    its front; the refined front goes beside the sweep's (``fronts/<device>_refined.*``) and, where the
    target's latency is known, is judged against the same reference (``refined_hv_ratio``)."""
    cfg, predictor = ctx.cfg, rep.predictor
    if not rep.front:
        return

    def latency(ids: Sequence[str]) -> np.ndarray:
        return np.asarray(predictor.predict(encode_ids(ctx.space, list(ids))), dtype=float)

    problem = SearchProblem(ctx.space, accuracy, latency, domain=table_domain(ctx),  # type: ignore[arg-type]
                            latency_budget_ms=cfg.search.latency_budget_ms, eval_log=ctx.eval_log(),
                            objectives=tuple(cfg.search.objectives), constraints=target.limits,
                            label=f"refinement {rep.name}")
    seed = int(np.random.SeedSequence([cfg.seed, *rep.name.encode()]).generate_state(1)[0])
    res = run_search(problem, cfg.search.algorithm, SearchSettings(
        n_trials=cfg.sweep.refine_trials, population=cfg.search.population, batch_size=cfg.search.batch_size,
        seed=seed, start_from=rep.front_ids()))
    found = res.feasible()
    acc = np.array([c.accuracy for c in found])
    pred = np.array([c.latency_ms for c in found])
    front = front_of(acc, pred, extra_matrix(found))
    true = target.truth([found[i].arch_id for i in front]) if target.has_truth else np.full(len(front), np.nan)
    rows = [{"arch": found[i].arch_id, "accuracy": float(acc[i]), "predicted_ms": float(pred[i]),
             "true_ms": None if np.isnan(t) else float(t)} for i, t in zip(front, true, strict=True)]
    write_front(rows, ctx.run_dir / "fronts" / f"{safe_name(rep.name)}_refined")
    rep.metrics.update(refine_evaluated=float(res.evaluated), refine_completed=float(len(res.candidates)),
                       refine_s=res.seconds, refined_front_size=float(len(front)))
    if rep.reference is not None:
        rep.metrics["refined_hv_ratio"] = front_quality(rep.reference, acc[front], true)["hv_ratio"]


def per_device_search(ctx: Context, accuracy: object, target: Target, rep: TargetReport) -> None:
    """The baseline: a full search against the target's true latency (same algorithm, budget and accuracy
    source as the proxy search), judged against the same reference as the sweep's front. It takes the proxy
    search's seed on purpose: a paired comparison (common random numbers; the same first generation), so the
    two differ only in the latency they search against, not in their draws."""
    if not target.has_truth or rep.reference is None:
        return
    truth = target.truth
    dom = target.domain
    fill = None
    if dom is not None and len(dom) < (len(ctx.plan.table.archs) if ctx.plan.table is not None else 0):
        # a table with gaps (the Edge TPU's): an additive model of the device for the cells it lacks
        fill = make_predictor("additive").fit(encode_ids(ctx.space, dom), truth(dom))

    def latency(ids: Sequence[str]) -> np.ndarray:
        t = truth(ids)
        if fill is not None and np.isnan(t).any():
            t = np.where(np.isnan(t), fill.predict(encode_ids(ctx.space, list(ids))), t)
        return t

    cfg = ctx.cfg.search
    problem = SearchProblem(ctx.space, accuracy, latency, domain=table_domain(ctx),  # type: ignore[arg-type]
                            latency_budget_ms=cfg.latency_budget_ms, eval_log=ctx.eval_log(),
                            objectives=tuple(cfg.objectives), constraints=target.limits,
                            label=f"per-device search {rep.name}")
    res = run_search(problem, cfg.algorithm, SearchSettings(n_trials=cfg.n_trials, population=cfg.population,
                                                            batch_size=cfg.batch_size, seed=ctx.cfg.seed))
    found = res.feasible()
    acc = np.array([c.accuracy for c in found])
    ids = [c.arch_id for c in found]
    q = front_quality(rep.reference, acc, truth(ids))
    rep.metrics.update(per_device_hv_ratio=q["hv_ratio"], per_device_unserved_budgets=q["unserved_budgets"],
                       per_device_s=res.seconds, per_device_evaluated=float(res.evaluated),
                       per_device_measurements=float(len(set(ids))))
