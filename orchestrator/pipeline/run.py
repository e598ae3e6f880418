"""The whole run: plan -> pre-flight -> proxy -> accuracy -> proxy search -> sweep -> records.

State lives in the run dir (``<output_dir>/<name>``) and the Optuna storage, so
``--resume`` after a killed driver continues where it stopped: a finished
supernet checkpoint is loaded, the study continues (torn journal tail
repaired, RUNNING trials failed and re-queued), evaluated accuracies come from
the evaluation log, and targets with a result file are not redone. Only this
driver writes to Optuna and MLflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config import PipelineConfig
from orchestrator.pipeline import extras, records
from orchestrator.pipeline.accuracy import accuracy_stage
from orchestrator.pipeline.context import (
    STATE_FILE,
    Context,
    RunStopped,
    SignalGuard,
    check_run_dir,
    claim_run_dir,
    init_ray,
    run_dir_lock,
    run_log,
    write_failure,
)
from orchestrator.pipeline.plan import Plan, make_plan
from orchestrator.pipeline.proxy import proxy_stage
from orchestrator.pipeline.search import search_stage
from orchestrator.pipeline.targets import Finished, build_shared, sweep_stage
from orchestrator.tracking import Tracker
from search_spaces.base import encode_ids

log = logging.getLogger(__name__)


def run_pipeline(cfg: PipelineConfig | Plan, *, resume: bool = False, progress: bool = True,
                 base: Path | None = None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; returns the summary also written to summary.json.

    ``cfg``: a config, validated here by ``make_plan`` (ConfigError listing every problem, before anything
    starts), or the Plan a caller already made of it (``hwnas run``): the plan is made once either way."""
    t_start = time.perf_counter()
    plan = cfg if isinstance(cfg, Plan) else make_plan(cfg)
    run_dir = plan.cfg.run_dir(base)
    with run_dir_lock(run_dir):
        return _locked(plan, run_dir, resume, progress, t_start)


def _keep_begun_source(plan: Plan, run_dir: Path, resume: bool) -> Plan:
    """On ``--resume`` of a run that began under another default accuracy source (its config named none), the
    plan of the source it began with, so it goes on as it started (``default_source.began_with``)."""
    from orchestrator.pipeline.default_source import began_with

    began = began_with(run_dir / STATE_FILE, plan.accuracy_choice, plan.cfg.accuracy.source) if resume else None
    if began is None or plan.given is None:
        return plan
    assert plan.accuracy_choice is not None
    plan.close()
    log.info("--resume: %s began with accuracy.source %s; it goes on with it (a new run of this config would use "
             "%s)", run_dir, began, plan.accuracy_choice.describe())
    given = plan.given
    return make_plan(given.model_copy(update={"accuracy": given.accuracy.model_copy(update={"source": began})}))


def _locked(plan: Plan, run_dir: Path, resume: bool, progress: bool, t_start: float) -> dict[str, Any]:
    plan = _keep_begun_source(plan, run_dir, resume)
    cfg = plan.cfg
    check_run_dir(cfg, resume, run_dir)
    begun = (run_dir / STATE_FILE).is_file()  # before claim_run_dir writes it: a run to continue, records and all
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.enabled)  # a bad store: refused here
    init_ray(cfg)
    import ray

    from orchestrator.pipeline.cluster import check_cluster

    with SignalGuard() as guard:  # after ray.init, which installs its own SIGTERM handler
        tracker.critical = guard.deferred  # a stop waits for an MLflow write to end
        check_cluster(plan, ray.cluster_resources())
        with guard.deferred():
            claim_run_dir(cfg, run_dir)  # only now: a refused pre-flight leaves nothing that blocks a re-run
        with run_log(run_dir):
            for w in plan.warnings:
                log.warning(w)
            ctx = Context(plan, run_dir, tracker, progress, signals=guard)
            try:
                with guard.deferred():
                    tracker.start(run_dir, cfg.name, resume and begun)
                return _run(ctx, resume, t_start)
            except RunStopped:
                tracker.end_all("KILLED")
                raise
            except BaseException as e:
                tracker.end_all("FAILED")
                failure = write_failure(e, run_dir, tracker.uri)
                if failure is not None:
                    raise failure from None
                raise
            finally:
                ctx.plan.close()  # every device still holding an actor (a failed or stopped run)
                for h in ctx.services.values():
                    ray.kill(h)


def _run(ctx: Context, resume: bool, t_start: float) -> dict[str, Any]:
    import ray

    with ctx.record():
        records.record_start(ctx)
    svc, proxy_table = proxy_stage(ctx)
    accuracy, acc_info = accuracy_stage(ctx)
    ctx.tracker.params(ctx.tracker.parent_id, acc_info)

    def latency(ids: Sequence[str]) -> np.ndarray:
        return np.asarray(ray.get(svc.predict.remote(encode_ids(ctx.space, list(ids)))), dtype=float)

    found = search_stage(ctx, accuracy, latency, resume)
    pool = list({c.arch_id: c for c in found if c.feasible}.values())  # one per architecture
    ctx.pool_id = records.pool_fingerprint(pool)
    with ctx.record():
        records.record_search(ctx, found, pool)
    if hasattr(accuracy, "release"):
        accuracy.release()  # give the evaluators' CPUs back before measuring on this host

    t0 = time.perf_counter()
    shared = build_shared(ctx, accuracy, pool)
    names = [t.name for t in ctx.plan.targets]
    rows = records.done_targets(ctx, names)
    todo = [t for t in ctx.plan.targets if t.name not in rows]
    if rows:
        log.info("resume: %d targets already done, %d to go", len(rows), len(todo))
    bar = None
    if ctx.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="device", disable=None)

    def record(f: Finished) -> None:
        with ctx.record():
            rows[f.target.name] = records.record_target(ctx, shared, f.report, f.export,
                                                              simulated=f.target.simulated, int8=f.int8)
        if bar is not None:
            bar.update(1)

    try:
        sweep_stage(ctx, accuracy, shared, proxy_table, todo, extras.target_hooks(ctx, accuracy, record))
    finally:
        if bar is not None:
            bar.close()
        if hasattr(accuracy, "release"):
            accuracy.release()
    ctx.timings["sweep_s"] = time.perf_counter() - t0
    with ctx.record():
        summary = records.summarize(ctx, len(pool), [rows[n] for n in names if n in rows], t_start)
        records.record_sweep(ctx, shared, summary)
        ctx.tracker.finish(ctx.tracker.parent_id)
    if ctx.cfg.confirm.enabled:
        from orchestrator.confirm import confirm

        with ctx.timed("confirm_s"):
            summary["confirm"] = {k: v for k, v in confirm(ctx.run_dir, ctx.cfg.confirm, ctx.progress).items()
                                  if k != "architectures"}
    return summary
