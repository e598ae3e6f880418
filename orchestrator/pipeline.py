"""The pipeline: supernet (or table) -> proxy search -> device sweep -> records.

Each phase is a short function over the config; state lives in the run dir
(``<output_dir>/<name>``) and the Optuna storage, so ``--resume`` after a
killed driver continues where it stopped: a finished supernet checkpoint is
loaded, the study continues (torn journal tail repaired, RUNNING trials failed
and re-queued), evaluated accuracies come from the evaluation log, and targets
with a result file are not redone. Only this driver writes to Optuna and MLflow.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config import PipelineConfig
from orchestrator.errors import ConfigError, DeviceError
from orchestrator.latency.metrics import srcc
from orchestrator.latency.predictors import make_predictor
from orchestrator.latency.table import LatencyTable, read_table, shipped_table, write_table
from orchestrator.latency.transfer import SourceSet
from orchestrator.report import plot_hv_history, safe_name, write_front
from orchestrator.search.driver import Candidate, SearchDriver, TableDomain, hypervolume_history, make_sampler
from orchestrator.search.pareto import pareto_mask
from orchestrator.search.storage import EvalLog, make_storage, open_study
from orchestrator.sweep import ProxyCandidates, TargetInput, TargetReport, front_plot, pick_k, run_targets
from orchestrator.tracking import Tracker, package_versions
from search_spaces.base import SearchSpace, encode_ids, get_space

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"
MEASURED_RUNTIMES = ("torch-cpu", "onnxrt-cpu", "cuda")


def device_kind(name: str, table: LatencyTable | None) -> str:
    if name.startswith("sim:"):
        return "simulated"
    if table is not None and name in table.devices:
        return "tabulated"
    return "measured"


@dataclass
class Context:
    cfg: PipelineConfig
    run_dir: Path
    space: SearchSpace
    table: LatencyTable | None
    tracker: Tracker
    progress: bool
    services: dict[str, Any] = field(default_factory=dict)  # long-lived actors, ended with the run
    timings: dict[str, float] = field(default_factory=dict)
    supernet: tuple[dict[str, Any], Any] | None = None  # (space spec, weights ref) when trained or loaded
    proxy_predictor: Any = None  # the proxy's latency model (its coefficients feed the MILP search)


# -- setup ------------------------------------------------------------------------------
def prepare_run_dir(cfg: PipelineConfig, resume: bool, base: Path | None = None) -> Path:
    """Create the run dir, or check on resume that it holds this same config. Before any work."""
    d = cfg.run_dir(base)
    state = d / STATE_FILE
    mine = cfg.model_dump(mode="json")
    if state.is_file():
        old = json.loads(state.read_text())["config"]
        if not resume:
            raise ConfigError(f"{d} already holds a run; pass --resume to continue it, or change 'name'")
        if old != mine:
            diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
            raise ConfigError(f"{d} holds a run with another config (sections differing: {diff}); resume with "
                              f"the same config, or change 'name'")
    elif resume:
        log.info("--resume: %s holds no run yet; starting it", d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "targets").mkdir(exist_ok=True)
    (d / "fronts").mkdir(exist_ok=True)
    state.write_text(json.dumps({"config": mine, "versions": package_versions()}, indent=2))
    return d


def init_ray(cfg: PipelineConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, configure_logging=False)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, configure_logging=False)


def load_table(cfg: PipelineConfig, space: SearchSpace) -> LatencyTable | None:
    if cfg.latency.table == "shipped":
        return shipped_table(space) if space.name == "nb201" else None
    return read_table(cfg.latency.table, space, device_prefix="lat_ms_")


def resolve_targets(cfg: PipelineConfig, table: LatencyTable | None, proxy: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for t in cfg.sweep.targets:
        name, opts = (t, {}) if isinstance(t, str) else (t.name, dict(t.options))
        if name == "tabulated":
            out.extend((d, {}) for d in (table.devices if table is not None else []))
        else:
            out.append((name, opts))
    out.extend((f"sim:{i}", {}) for i in range(cfg.sweep.simulated))
    seen: dict[str, dict[str, Any]] = {}
    for n, o in out:
        if n != proxy:
            seen.setdefault(n, o)
    return list(seen.items())


def check_targets_known(cfg: PipelineConfig, space: SearchSpace, table: LatencyTable | None,
                        targets: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Tabulated targets are known only on the table's rows: unless the table covers the whole space,
    the candidates must come from there."""
    tab = [n for n, _ in targets if table is not None and n in table.devices]
    if tab and cfg.search_domain() != "table" and table is not None and len(table.archs) < space.size:
        raise ConfigError(f"sweep.targets: tabulated targets {tab} are known only on the table's "
                          f"{len(table.archs)} architectures; set search.domain: table")


# -- latency ------------------------------------------------------------------------------
def make_device(ctx: Context, name: str, options: dict[str, Any] | None = None) -> Any:
    from orchestrator.latency.devices import get_device

    opts = dict(options or {})
    if name in MEASURED_RUNTIMES or name.startswith("remote:"):
        opts.setdefault("threads", ctx.cfg.latency.threads)
        opts.setdefault("protocol", ctx.cfg.latency.protocol)
    return get_device(name, ctx.space, **opts)


def measure(ctx: Context, name: str, arch_ids: Sequence[str], options: dict[str, Any] | None = None) -> np.ndarray:
    """Latency (ms) of ``arch_ids`` measured on a measured or simulated device (its own actor for measured)."""
    import ray

    from orchestrator.latency.service import start_latency_service

    dev = make_device(ctx, name, options)
    if dev.kind == "simulated":
        return dev.latency_ms(list(arch_ids))
    if dev.kind == "tabulated":
        raise DeviceError(f"{name} is tabulated; look its latencies up instead of measuring")
    if dev.kind == "remote":
        return np.array([s.median_ms for s in dev.measure_many([ctx.space.parse(a) for a in arch_ids])])
    # The actor holds the CPUs it times on, so it lives only while it measures: kept alive, two measured
    # devices would hold both cores of a small machine and starve the sweep's tasks (and the timings of one
    # would include the other's load).
    svc = start_latency_service(name, None, device=dev)
    try:
        rows = ray.get(svc.measure.remote(list(arch_ids)))
    finally:
        ray.kill(svc)
    return np.array([r["median_ms"] for r in rows], dtype=float)


def proxy_phase(ctx: Context) -> tuple[str, Any, LatencyTable]:
    """Pick the proxy, fit its predictor, serve it; returns (name, service, the proxy's own table)."""
    from orchestrator.latency.monotonicity import srcc_matrix
    from orchestrator.latency.service import start_latency_service

    cfg, table = ctx.cfg, ctx.table
    proxy = cfg.latency.proxy
    if proxy == "auto":
        assert table is not None
        proxy, score = srcc_matrix(table).proxy("mean")
        log.info("proxy: %s (mean SRCC %.3f to the other tabulated devices)", proxy, score)
    if table is not None and proxy in table.devices:
        own = table.select([proxy])
    else:
        path = ctx.run_dir / "proxy_measurements.csv"
        if path.is_file():
            own = read_table(path, ctx.space, device_prefix="lat_ms_")
        else:
            rng = np.random.default_rng([cfg.seed, 11])
            drawn = (ctx.space.arch_id(ctx.space.sample(rng)) for _ in range(cfg.latency.proxy_samples))
            ids = list(dict.fromkeys(drawn))
            log.info("proxy %s: measuring %d architectures to fit its predictor", proxy, len(ids))
            y = measure(ctx, proxy, ids)
            own = LatencyTable(ids, [proxy], y[:, None], str(path))
            write_table(path, LatencyTable(ids, [f"lat_ms_{proxy}"], y[:, None]))
    ids, y = own.measured(proxy)
    params = {"seed": cfg.seed} if cfg.latency.predictor == "mlp" else {}
    predictor = ctx.proxy_predictor = make_predictor(cfg.latency.predictor, **params).fit(
        encode_ids(ctx.space, ids), y)
    svc = ctx.services[proxy] = start_latency_service(proxy, predictor)
    return proxy, svc, own


# -- accuracy ------------------------------------------------------------------------------
def accuracy_phase(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """The accuracy source and what to record about it."""
    from orchestrator.latency.table import shipped_accuracy
    from orchestrator.search.accuracy import PredictorAccuracy, TableAccuracy

    cfg = ctx.cfg.accuracy
    if cfg.source == "table":
        return TableAccuracy(ctx.space, shipped_accuracy(cfg.table_column), seed=ctx.cfg.seed), {
            "accuracy_source": f"table:{cfg.table_column}"}
    source, info = supernet_source(ctx)
    if cfg.source == "predictor":
        pred = PredictorAccuracy(ctx.space, source, cfg.predictor_samples, np.random.default_rng([ctx.cfg.seed, 3]),
                                 cfg.predictor)
        info.update({f"accuracy_predictor_{k}": v for k, v in pred.quality.items()})
        return pred, info
    return source, info


def supernet_source(ctx: Context) -> tuple[Any, dict[str, Any]]:
    from orchestrator.search.accuracy import SupernetAccuracy
    from orchestrator.supernet.actor import train_supernet
    from orchestrator.supernet.data import load_dataset
    from orchestrator.supernet.pool import EvaluatorPool
    from orchestrator.supernet.spec import SpaceConfig

    sc = ctx.cfg.accuracy.supernet
    t0 = time.perf_counter()
    if sc.checkpoint:
        from orchestrator.cli_supernet import _load_run, _weights

        run, ck = _load_run(sc.checkpoint)
        spec, weights, data = _weights(run, ck)
        info: dict[str, Any] = {"supernet": f"loaded {ck}"}
    else:
        space_cfg = SpaceConfig(name=ctx.cfg.space.name, options={**ctx.cfg.space.options, **sc.options})
        data_cfg = sc.data
        data = load_dataset(data_cfg)
        spec = space_cfg.spec(data.num_classes)
        summary, weights = train_supernet(space_cfg, data_cfg, sc.train, ctx.run_dir / "supernet",
                                          num_gpus=sc.train_gpus, show_progress=ctx.progress)
        last = summary["history"][-1] if summary["history"] else {}
        info = {"supernet_epochs": summary["epoch"], "supernet_last_loss": last.get("loss")}
    ctx.timings["supernet_s"] = time.perf_counter() - t0
    import ray

    weights_ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(dict(weights))
    data_ref = ray.put(data)
    info["evaluator_actors"] = sc.actors
    ctx.supernet = (spec, weights_ref)
    return SupernetAccuracy(ctx.space, lambda: EvaluatorPool(spec, weights_ref, data_ref, sc.eval,
                                                             n_actors=sc.actors, num_gpus=sc.eval_gpus)), info


# -- search ------------------------------------------------------------------------------
def table_domain(ctx: Context) -> TableDomain | None:
    """The search domain as the driver takes it: the table's cells, or None for the whole space."""
    if ctx.cfg.search_domain() == "table" and ctx.table is not None:
        return TableDomain(ctx.space, ctx.table.archs)
    return None


def milp_search(ctx: Context, accuracy: Any, latency: Callable[[Sequence[str]], np.ndarray]) -> list[Candidate]:
    """The exact front of the additive accuracy and proxy-latency models; its members are then evaluated
    by the accuracy source and the latency service like any search's candidates."""
    from orchestrator.search.milp import milp_front, space_model, table_model

    cfg = ctx.cfg
    if cfg.accuracy.source == "table":
        ids = list(accuracy.table)
        acc_model = make_predictor("additive").fit(encode_ids(ctx.space, ids), np.array([accuracy.table[a]
                                                                                          for a in ids]))
    else:
        acc_model = accuracy.model
    lat_model = ctx.proxy_predictor
    use_table = cfg.search_domain() == "table" and ctx.table is not None
    model = table_model(ctx.space, ctx.table.archs) if use_table else space_model(ctx.space)
    # the table's fronts are small: every point; a space's additive front can hold thousands: a grid
    front = milp_front(model, acc_model.coef_, acc_model.intercept_, lat_model.coef_, lat_model.intercept_,
                       max_points=cfg.search.n_trials, grid=None if use_table else cfg.search.n_trials)
    ids = [p.arch_id for p in front.points]
    acc = dict(accuracy.evaluate(ids))
    lat = np.asarray(latency(ids), dtype=float)
    ctx.timings["milp_solves"] = front.solves
    ctx.timings["milp_s"] = front.seconds
    budget = cfg.search.latency_budget_ms
    return [Candidate(n, a, float(acc[a]), float(t), budget is None or t <= budget)
            for n, (a, t) in enumerate(zip(ids, lat, strict=True))]


def search_phase(ctx: Context, accuracy: Any, latency: Callable[[Sequence[str]], np.ndarray],
                 resume: bool) -> list[Candidate]:
    cfg = ctx.cfg.search
    if cfg.algorithm == "milp":
        t0 = time.perf_counter()
        found = milp_search(ctx, accuracy, latency)
        ctx.timings["search_s"] = time.perf_counter() - t0
        return found
    storage = make_storage(cfg.storage, ctx.run_dir)
    import optuna

    study = open_study(storage, ctx.cfg.name, optuna.samplers.RandomSampler(), resume)
    study.sampler = make_sampler(cfg.algorithm, ctx.cfg.seed, cfg.population, len(study.trials))
    domain = table_domain(ctx)
    driver = SearchDriver(study, ctx.space, accuracy, latency, n_trials=cfg.n_trials,
                          batch_size=cfg.batch_size or cfg.population, latency_budget_ms=cfg.latency_budget_ms,
                          domain=domain, eval_log=EvalLog(ctx.run_dir / "evaluations.jsonl"), progress=ctx.progress)
    t0 = time.perf_counter()
    cands = driver.run()
    ctx.timings["search_s"] = time.perf_counter() - t0
    ctx.timings["search_evaluated"] = driver.stats.evaluated
    return cands


# -- sweep ------------------------------------------------------------------------------
class SourceCache:
    """Transfer sources per target: the proxy alone, or every tabulated device but the target."""

    def __init__(self, ctx: Context, proxy: str, proxy_table: LatencyTable) -> None:
        self.ctx, self.proxy, self.proxy_table = ctx, proxy, proxy_table
        self._sets: dict[tuple[str, ...], SourceSet] = {}

    def __call__(self, target: str) -> SourceSet | None:
        table = self.ctx.table
        if self.ctx.cfg.sweep.sources == "tabulated" and table is not None:
            names = tuple(d for d in table.devices if d != target)
            base = table
        else:
            names, base = (self.proxy,), self.proxy_table
        if not names:
            return None
        if names not in self._sets:
            self._sets[names] = SourceSet.from_table(base.select(list(names)), self.ctx.space, seed=self.ctx.cfg.seed)
        return self._sets[names]


def target_input(ctx: Context, cands: ProxyCandidates, name: str, options: dict[str, Any]) -> TargetInput:
    """k measurements on the target (and the truth over the candidates where it exists)."""
    kind = device_kind(name, ctx.table)
    k = ctx.cfg.sweep.k
    t0 = time.perf_counter()
    if kind == "tabulated":
        assert ctx.table is not None
        truth = ctx.table.lookup(name, cands.ids)
        ok = np.flatnonzero(~np.isnan(truth))
        if len(ok) < 3:
            raise DeviceError(f"target {name}: only {len(ok)} candidates are in its table; use search.domain "
                              f"'table' so candidates come from the table")
        k_ids = pick_k([cands.ids[i] for i in ok], cands.proxy_latency[ok], k)
        k_lat = ctx.table.lookup(name, k_ids)
    elif kind == "simulated":
        truth = make_device(ctx, name).latency_ms(cands.ids)
        k_ids = pick_k(cands.ids, cands.proxy_latency, k)
        idx = {a: i for i, a in enumerate(cands.ids)}
        k_lat = truth[[idx[a] for a in k_ids]]
    else:
        truth = None
        k_ids = pick_k(cands.ids, cands.proxy_latency, k)
        k_lat = measure(ctx, name, k_ids, options)
    return TargetInput(name, kind, k_ids, np.asarray(k_lat, dtype=float), truth, time.perf_counter() - t0)


def measure_front(ctx: Context, rep: TargetReport, cands: ProxyCandidates, options: dict[str, Any]) -> None:
    """Measured targets: measure up to ``measure_front`` front members; predicted vs measured."""
    n = min(ctx.cfg.sweep.measure_front, len(rep.front))
    if rep.kind != "measured" or n == 0:
        return
    pos = np.unique(np.round(np.linspace(0, len(rep.front) - 1, n)).astype(int))
    chosen = [rep.front[p] for p in pos]
    ids = [cands.ids[i] for i in chosen]
    t0 = time.perf_counter()
    y = measure(ctx, rep.name, ids, options)
    rep.seconds += time.perf_counter() - t0
    rep.measured_front = dict(zip(ids, map(float, y), strict=True))
    rep.n_measurements += len(ids)
    pred = rep.predicted[chosen]
    rep.metrics["front_mape_pct"] = float(100 * np.mean(np.abs(pred - y) / y))
    if len(y) >= 3:
        rep.metrics["front_srcc"] = srcc(pred, y)


def front_rows(rep: TargetReport, cands: ProxyCandidates, truth: np.ndarray | None) -> list[dict[str, Any]]:
    return [{"arch": cands.ids[i], "accuracy": float(cands.accuracy[i]), "predicted_ms": float(rep.predicted[i]),
             "measured_ms": rep.measured_front.get(cands.ids[i]),
             "true_ms": None if truth is None or np.isnan(truth[i]) else float(truth[i]),
             "proxy_ms": float(cands.proxy_latency[i])} for i in rep.front]


def export_front(ctx: Context, rep: TargetReport, cands: ProxyCandidates) -> Path | None:
    """Measured targets with a supernet: the most accurate front members as .pt2/.onnx with weights."""
    n = min(ctx.cfg.sweep.export_front, len(rep.front))
    if rep.kind != "measured" or n == 0 or ctx.supernet is None:
        return None
    import ray
    import torch

    from orchestrator.supernet.export import export_subnet
    from orchestrator.supernet.spec import space_from_spec

    spec, weights_ref = ctx.supernet
    sup_space = space_from_spec(spec)
    net = sup_space.build_supernet()
    net.load_state_dict(ray.get(weights_ref))
    net.eval()
    out = ctx.run_dir / "exports" / safe_name(rep.name)
    best = sorted(rep.front, key=lambda i: -cands.accuracy[i])[:n]
    with torch.no_grad():
        for j, i in enumerate(best):
            export_subnet(sup_space, net, ctx.space.parse(cands.ids[i]), out, name=f"front{j}",
                          extra={"device": rep.name, "accuracy": float(cands.accuracy[i]),
                                 "predicted_ms": float(rep.predicted[i])})
    return out


def record_target(ctx: Context, rep: TargetReport, cands: ProxyCandidates, truth: np.ndarray | None,
                  export_dir: Path | None) -> dict[str, Any]:
    """Write the target's files and its nested MLflow run; return its summary row."""
    rows = front_rows(rep, cands, truth)
    stem = ctx.run_dir / "fronts" / safe_name(rep.name)
    csv_p, json_p = write_front(rows, stem)
    png = stem.with_suffix(".png")
    if rep.png is None:
        measured = {cands.ids.index(a): v for a, v in rep.measured_front.items()}
        rep.png = front_plot(rep, cands, truth, measured)
    png.write_bytes(rep.png)
    summary = rep.summary()
    run = ctx.tracker.child(rep.name, tags={"decision": rep.decision, "method": rep.method, "kind": rep.kind,
                                            "simulated": rep.kind == "simulated"})
    ctx.tracker.record(run, {"kind": rep.kind, "k": rep.k, "srcc_threshold": ctx.cfg.sweep.srcc_threshold,
                             "transfer": ctx.cfg.sweep.transfer, "sources": ctx.cfg.sweep.sources},
                       {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for p in (csv_p, json_p, png):
        ctx.tracker.artifact(run, p)
    if export_dir is not None:
        ctx.tracker.artifact(run, export_dir, "exported_front")
    ctx.tracker.finish(run)
    (ctx.run_dir / "targets" / f"{safe_name(rep.name)}.json").write_text(json.dumps(
        {"summary": summary, "budgets_ms": rep.budgets_ms}, indent=2))
    return summary


def refine_target(ctx: Context, accuracy: Any, rep: TargetReport, cands: ProxyCandidates,
                  truth: np.ndarray | None) -> None:
    """An adapted target: a short search on its adapted predictor, started from its front; the refined
    front is written beside the sweep's (``fronts/<device>_refined.*``) and, where the target's latency is
    known, its hypervolume compared with the unrefined front's at true latency."""
    import optuna

    from orchestrator.search.pareto import hypervolume

    cfg = ctx.cfg
    predictor = rep.predictor

    def latency(ids: Sequence[str]) -> np.ndarray:
        return np.asarray(predictor.predict(encode_ids(ctx.space, list(ids))), dtype=float)

    t0 = time.perf_counter()
    seed = int(np.random.SeedSequence([cfg.seed, *rep.name.encode()]).generate_state(1)[0])
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler(cfg.search.algorithm, seed, cfg.search.population))
    for i in rep.front:
        study.enqueue_trial(ctx.space.to_params(ctx.space.parse(cands.ids[i])))
    domain = table_domain(ctx)
    drv = SearchDriver(study, ctx.space, accuracy, latency, n_trials=cfg.sweep.refine_trials + len(rep.front),
                       batch_size=cfg.search.batch_size or cfg.search.population, domain=domain,
                       eval_log=EvalLog(ctx.run_dir / "evaluations.jsonl"))
    found = drv.run()
    if hasattr(accuracy, "release"):
        accuracy.release()
    ids = list(dict.fromkeys([*(cands.ids[i] for i in rep.front), *(c.arch_id for c in found)]))
    acc_of = {c.arch_id: c.accuracy for c in found} | {cands.ids[i]: float(cands.accuracy[i]) for i in rep.front}
    acc = np.array([acc_of[a] for a in ids])
    pred = latency(ids)
    front = np.flatnonzero(pareto_mask(acc, pred))
    front = front[np.argsort(pred[front], kind="stable")]
    true_of: dict[str, float] = {}
    if rep.kind == "tabulated" and ctx.table is not None:
        true_of = dict(zip(ids, ctx.table.lookup(rep.name, ids), strict=True))
    elif rep.kind == "simulated":
        true_of = dict(zip(ids, make_device(ctx, rep.name).latency_ms(ids), strict=True))
    rows = [{"arch": ids[i], "accuracy": float(acc[i]), "predicted_ms": float(pred[i]),
             "true_ms": None if np.isnan(true_of.get(ids[i], np.nan)) else float(true_of[ids[i]])} for i in front]
    write_front(rows, ctx.run_dir / "fronts" / f"{safe_name(rep.name)}_refined")
    rep.metrics["refine_evaluated"] = float(drv.stats.evaluated)
    rep.metrics["refine_s"] = time.perf_counter() - t0
    rep.metrics["refined_front_size"] = float(len(front))
    if true_of and truth is not None:
        old = [(float(cands.accuracy[i]), float(truth[i])) for i in rep.front if not np.isnan(truth[i])]
        new = [(r["accuracy"], r["true_ms"]) for r in rows if r["true_ms"] is not None]
        if old and new:
            pts = np.array(old + new)
            ref = (float(pts[:, 0].min()) - 1e-6, float(pts[:, 1].max()) * 1.001)
            hv_old = hypervolume(*np.array(old).T, *ref)
            rep.metrics["refine_hv_gain"] = hypervolume(*np.array(new).T, *ref) / hv_old if hv_old > 0 else \
                float("nan")


def per_device_search(ctx: Context, accuracy: Any, name: str, cands: ProxyCandidates,
                      rep: TargetReport) -> None:
    """The baseline: a full search against the target's own ground truth (same budget, same accuracy)."""
    import optuna

    from orchestrator.search.pareto import hypervolume

    if rep.kind == "tabulated":
        assert ctx.table is not None
        ids, y = ctx.table.measured(name)
        model = make_predictor("additive").fit(encode_ids(ctx.space, ids), y)
        table = ctx.table

        def latency(a: Sequence[str]) -> np.ndarray:
            t = table.lookup(name, a)
            return np.where(np.isnan(t), model.predict(encode_ids(ctx.space, list(a))), t)
    elif rep.kind == "simulated":
        dev = make_device(ctx, name)
        latency = dev.latency_ms
    else:
        return
    cfg = ctx.cfg.search
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler(cfg.algorithm, ctx.cfg.seed, cfg.population))
    log_ = EvalLog(ctx.run_dir / "evaluations.jsonl")
    domain = table_domain(ctx)
    t0 = time.perf_counter()
    drv = SearchDriver(study, ctx.space, accuracy, latency, n_trials=cfg.n_trials,
                       batch_size=cfg.batch_size or cfg.population, domain=domain, eval_log=log_)
    base = drv.run()
    if hasattr(accuracy, "release"):
        accuracy.release()
    acc_b = np.array([c.accuracy for c in base])
    lat_b = np.array([c.latency_ms for c in base])
    lat_p = np.asarray(latency([cands.ids[i] for i in rep.front]))
    acc_p = cands.accuracy[rep.front]
    ref = (min(acc_b.min(), cands.accuracy.min()) - 1e-6, max(lat_b.max(), lat_p.max()) * 1.001)
    hv_b = hypervolume(acc_b, lat_b, *ref)
    rep.metrics["hv_vs_per_device_search"] = hypervolume(acc_p, lat_p, *ref) / hv_b if hv_b > 0 else float("nan")
    rep.metrics["per_device_search_s"] = time.perf_counter() - t0
    rep.metrics["per_device_search_evaluated"] = float(drv.stats.evaluated)


# -- the whole run ------------------------------------------------------------------------
def run_pipeline(cfg: PipelineConfig, *, resume: bool = False, progress: bool = True,
                 base: Path | None = None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; returns the summary also written to summary.json."""
    t_start = time.perf_counter()
    space = get_space(cfg.space.name, **cfg.space.options)
    table = load_table(cfg, space)
    proxy_name = cfg.latency.proxy
    check_targets_known(cfg, space, table, resolve_targets(cfg, table, proxy_name))
    run_dir = prepare_run_dir(cfg, resume, base)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    lib_log = logging.getLogger("orchestrator")
    old_level = lib_log.level
    if lib_log.getEffectiveLevel() > logging.INFO:
        lib_log.setLevel(logging.INFO)  # run.log gets the INFO record whatever the caller's logging setup
    lib_log.addHandler(handler)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.enabled)
    ctx = Context(cfg, run_dir, space, table, tracker, progress)
    try:
        init_ray(cfg)
        import ray

        from orchestrator.cluster import check_cluster

        check_cluster(cfg, ray.cluster_resources())
        tracker.start(run_dir, cfg.name, resume)
        return _run(ctx, resume, t_start)
    except BaseException:
        tracker.finish(tracker.parent_id, "FAILED")
        raise
    finally:
        lib_log.removeHandler(handler)
        lib_log.setLevel(old_level)
        handler.close()


def _run(ctx: Context, resume: bool, t_start: float) -> dict[str, Any]:
    cfg, tracker, parent = ctx.cfg, ctx.tracker, ctx.tracker.parent_id
    tracker.params(parent, {"config": cfg.model_dump(mode="json")})
    tracker.tags(parent, {f"version.{k}": v for k, v in package_versions().items()} | {"seed": cfg.seed})
    tracker.artifact(parent, ctx.run_dir / STATE_FILE)

    import ray

    proxy, svc, proxy_table = proxy_phase(ctx)
    tracker.tags(parent, {"proxy": proxy})
    accuracy, acc_info = accuracy_phase(ctx)
    tracker.params(parent, acc_info)

    def latency(ids: Sequence[str]) -> np.ndarray:
        return np.asarray(ray.get(svc.predict.remote(encode_ids(ctx.space, list(ids)))), dtype=float)

    found = search_phase(ctx, accuracy, latency, resume)
    feasible = list({c.arch_id: c for c in found if c.feasible}.values())  # one row per architecture
    if len(feasible) < 3:
        raise ConfigError(f"only {len(feasible)} feasible candidates: search.latency_budget_ms "
                          f"{cfg.search.latency_budget_ms} is too tight for proxy {proxy}; raise it")
    cands = ProxyCandidates(proxy, [c.arch_id for c in feasible], [c.accuracy for c in feasible],
                            [c.latency_ms for c in feasible])
    _record_search(ctx, found, cands)

    if hasattr(accuracy, "release"):
        accuracy.release()  # give the evaluators' CPUs back before measuring on this host

    # -- the sweep
    targets = resolve_targets(cfg, ctx.table, proxy)
    done = {}
    for name, _ in targets:
        f = ctx.run_dir / "targets" / f"{safe_name(name)}.json"
        if f.is_file():
            done[name] = json.loads(f.read_text())["summary"]
    todo = [(n, o) for n, o in targets if n not in done]
    if done:
        log.info("resume: %d targets already done, %d to go", len(done), len(todo))
    t0 = time.perf_counter()
    inputs = _measure_targets(ctx, cands, todo)
    sources = SourceCache(ctx, proxy, proxy_table)
    bar = None
    if ctx.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="device", disable=None)
    opts = dict(todo)
    truth = {t.name: t.truth for t in inputs}
    for name in done:  # finished before a resume: simulated truth is cheap to recompute (for the heatmap)
        if device_kind(name, ctx.table) == "simulated":
            truth[name] = make_device(ctx, name).latency_ms(cands.ids)
    rows: dict[str, dict[str, Any]] = dict(done)

    def finish(rep: TargetReport) -> None:
        measure_front(ctx, rep, cands, opts[rep.name])
        if cfg.sweep.refine_trials and rep.predictor is not None:
            refine_target(ctx, accuracy, rep, cands, truth[rep.name])
        rep.predictor = None
        if cfg.sweep.per_device_search:
            per_device_search(ctx, accuracy, rep.name, cands, rep)
        export = export_front(ctx, rep, cands)
        rows[rep.name] = record_target(ctx, rep, cands, truth[rep.name], export)
        if bar is not None:
            bar.update(1)

    try:
        run_targets(ctx.space, cands, inputs, sources, threshold=cfg.sweep.srcc_threshold,
                    method=cfg.sweep.transfer, quantiles=cfg.sweep.budget_quantiles, seed=cfg.seed,
                    plot=True, keep_predictor=cfg.sweep.refine_trials > 0, progress=finish)
    finally:
        if bar is not None:
            bar.close()
    ctx.timings["sweep_s"] = time.perf_counter() - t0
    summary = _summarize(ctx, proxy, cands, [rows[n] for n, _ in targets], t_start)
    _record_sweep(ctx, cands, truth, summary)
    for h in ctx.services.values():
        ray.kill(h)
    tracker.finish(parent)
    return summary


def _measure_targets(ctx: Context, cands: ProxyCandidates,
                     todo: Sequence[tuple[str, dict[str, Any]]]) -> list[TargetInput]:
    """k measurements per target. Measured devices one after another: timing two on one host at once
    would measure the contention."""
    out = []
    bar = None
    if ctx.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="measure k", unit="device", disable=None)
    for name, opts in todo:
        out.append(target_input(ctx, cands, name, opts))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _record_search(ctx: Context, found: Sequence[Candidate], cands: ProxyCandidates) -> None:
    import csv

    parent = ctx.tracker.parent_id
    path = ctx.run_dir / "candidates.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["number", "arch_id", "accuracy", "latency_ms", "feasible"])
        w.writeheader()
        for c in found:
            w.writerow(c.as_dict())
    front = [int(i) for i in cands.front()]
    front.sort(key=lambda i: cands.proxy_latency[i])
    rows = [{"arch": cands.ids[i], "accuracy": float(cands.accuracy[i]), "predicted_ms": float(cands.proxy_latency[i]),
             "proxy_ms": float(cands.proxy_latency[i])} for i in front]
    csv_p, json_p = write_front(rows, ctx.run_dir / "fronts" / "proxy")
    acc = np.array([c.accuracy for c in found])
    lat = np.array([c.latency_ms for c in found])
    hist = hypervolume_history(found, float(acc.min()) - 1e-6, float(lat.max()) * 1.001,
                               every=max(1, len(found) // 50))
    png = plot_hv_history(ctx.run_dir / "hv_history.png", hist, f"proxy {cands.proxy}: hypervolume over trials")
    for p in (path, csv_p, json_p, png):
        ctx.tracker.artifact(parent, p, "proxy_search")
    for n, hv in hist:
        ctx.tracker.metrics(parent, {"proxy_hypervolume": hv}, step=n)
    ctx.tracker.metrics(parent, {"n_trials": len(found), "n_candidates": len(cands.ids),
                                 "proxy_front_size": len(front), "n_evaluated": len(EvalLog(
                                     ctx.run_dir / "evaluations.jsonl").values),
                                 **{k: v for k, v in ctx.timings.items()}})


def _summarize(ctx: Context, proxy: str, cands: ProxyCandidates, rows: list[dict[str, Any]],
               t_start: float) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        v = [r[key] for r in rows if r.get(key) is not None and not np.isnan(r[key])]
        return float(np.mean(v)) if v else None

    summary = {
        "name": ctx.cfg.name, "proxy": proxy, "n_candidates": len(cands.ids), "targets": rows,
        "n_reuse": sum(r["decision"] == "reuse" for r in rows), "n_adapt": sum(r["decision"] == "adapt" for r in rows),
        "mean_hv_ratio": mean("hv_ratio"), "mean_hv_ratio_reuse": mean("hv_ratio_reuse"),
        "target_measurements": int(sum(r["n_measurements"] for r in rows)),
        "timings": ctx.timings, "wall_s": time.perf_counter() - t_start,
    }
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _record_sweep(ctx: Context, cands: ProxyCandidates, truth: dict[str, np.ndarray | None],
                  summary: dict[str, Any]) -> None:
    from orchestrator.latency.monotonicity import plot_heatmap, srcc_matrix

    parent = ctx.tracker.parent_id
    cols = {cands.proxy: cands.proxy_latency}
    for name, t in truth.items():
        if t is not None and (~np.isnan(t)).sum() >= 3:
            cols[name] = t
    if ctx.table is not None:
        for d in ctx.table.devices:
            cols.setdefault(d, ctx.table.lookup(d, cands.ids))
    names = list(cols)[:64]
    m = srcc_matrix(LatencyTable(list(cands.ids), names, np.stack([cols[n] for n in names], axis=1)))
    png = plot_heatmap(m, ctx.run_dir / "srcc_heatmap.png",
                       title=f"Latency SRCC over the {len(cands.ids)} candidates (proxy: predicted)")
    ctx.tracker.artifact(parent, png)
    ctx.tracker.artifact(parent, ctx.run_dir / "summary.json")
    ctx.tracker.metrics(parent, {k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None}
                        | {k: v for k, v in summary["timings"].items()})
