"""A config resolved against the registries: the space, the latency table, the proxy, the targets, the domain.

``make_plan(cfg)`` builds everything a run needs to know before any work is
scheduled, and refuses a config with every problem it finds (each with its
path). ``hwnas validate`` and ``parse_config`` run the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import PipelineConfig
from orchestrator.errors import ConfigError, HwnasError
from orchestrator.latency.devices.base import Device, DeviceCatalog, DeviceSpec
from orchestrator.latency.table import LatencyTable
from search_spaces.base import SearchSpace

TABULATED = "tabulated"  # sweep.targets keyword: every column of the latency table but the proxy
AUTO = "auto"
# Counts no run could finish: refused with the estimate (Optuna's ask/tell alone costs about a millisecond a
# trial; a simulated device about as much per architecture), not started to run for months.
MAX_TRIALS = 10_000_000
MAX_SIMULATED = 100_000
TRIALS_PER_S = 1_000.0


@dataclass
class Plan:
    cfg: PipelineConfig
    space: SearchSpace
    table: LatencyTable | None
    catalog: DeviceCatalog
    proxy: str
    targets: list[DeviceSpec]
    domain: str  # "table" or "space"
    proxy_score: float | None = None  # 'auto': the chosen proxy's mean SRCC to the other tabulated devices
    warnings: list[str] = field(default_factory=list)  # allowed, but probably not what was meant
    _devices: dict[str, Device] = field(default_factory=dict, repr=False)

    def domain_size(self) -> int:
        """Architectures the searches can propose: the table's rows, or the whole space."""
        return len(self.table.archs) if self.domain == "table" and self.table is not None else self.space.size

    def device_defaults(self) -> dict[str, Any]:
        """Options every device type that has them takes from the latency section."""
        return {"threads": self.cfg.latency.threads, "protocol": self.cfg.latency.protocol}

    def device(self, name: str, options: dict[str, Any] | None = None) -> Device:
        """The device ``name`` (built once; ``options`` as in the config)."""
        if name not in self._devices:
            if options is None:
                options = next((t.options for t in self.targets if t.name == name), {})
            self._devices[name] = self.catalog.make(name, options, self.device_defaults())
        return self._devices[name]


def _load_table(cfg: PipelineConfig, space: SearchSpace) -> LatencyTable | None:
    from orchestrator.latency.table import read_table, shipped_table

    if cfg.latency.table == "shipped":
        return shipped_table(space) if space.name == "nb201" else None
    return read_table(cfg.latency.table, space, device_prefix="lat_ms_")


def _targets(cfg: PipelineConfig, table: LatencyTable | None, proxy: str) -> tuple[list[DeviceSpec], list[str]]:
    out: list[DeviceSpec] = []
    problems = []
    names = [n for n, _ in cfg.target_entries()]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sweep.targets: {n!r} is listed twice")
    for name, opts in cfg.target_entries():
        if name == TABULATED:
            if table is None:
                problems.append("sweep.targets: 'tabulated' needs a latency table (latency.table); this space has "
                                "no shipped one")
            out.extend(DeviceSpec(name=d) for d in (table.devices if table is not None else []))
        else:
            out.append(DeviceSpec(name=name, options=opts))
    if cfg.sweep.simulated > MAX_SIMULATED:  # refused before a single one is built
        problems.append(f"sweep.simulated: {cfg.sweep.simulated:,} devices; at most {MAX_SIMULATED:,} (each costs "
                        f"a task, files and an MLflow run)")
    else:
        out.extend(DeviceSpec(name=f"sim:{i}") for i in range(cfg.sweep.simulated))
    seen: dict[str, DeviceSpec] = {}
    for t in out:
        if t.name != proxy:
            seen.setdefault(t.name, t)
    return list(seen.values()), problems


def _build(cfg: PipelineConfig) -> tuple[Plan | None, list[str]]:
    from orchestrator.latency.monotonicity import srcc_matrix

    problems: list[str] = []
    try:
        space = cfg.space.build()
    except HwnasError as e:
        return None, [f"space: {e}"] + _config_problems(cfg)
    table = None
    try:
        table = _load_table(cfg, space)
    except HwnasError as e:
        problems.append(f"latency.table: {e}")
    catalog = DeviceCatalog(space, table)
    proxy, score = cfg.latency.proxy, None
    if proxy == AUTO:
        if table is None or len(table.devices) < 2:
            problems.append("latency.proxy: 'auto' picks among the latency table's devices (at least two); name "
                            "a measured or simulated proxy (torch-cpu, onnxrt-cpu, cuda, sim:<n>) or give a table")
            proxy = ""
        else:
            proxy, score = srcc_matrix(table).proxy("mean")
    else:
        problems += catalog.problems(proxy, {}, "latency.proxy")
    targets, tp = _targets(cfg, table, proxy)
    problems += tp
    index = {n: i for i, (n, _) in enumerate(cfg.target_entries())}
    ok_targets = []
    for t in targets:
        where = f"sweep.targets.{index[t.name]}" if t.name in index else f"sweep.targets ({t.name})"
        p = catalog.problems(t.name, t.options, where)
        problems += p
        if not p:
            ok_targets.append(t)
    plan = Plan(cfg, space, table, catalog, proxy, ok_targets, "space", score)
    plan.domain = _domain(plan, problems)
    return plan, problems


def _domain(plan: Plan, problems: list[str]) -> str:
    """'table' or 'space'; 'auto' = the table when a target is known only on its rows."""
    cfg, table = plan.cfg, plan.table
    restricted = [t.name for t in plan.targets if plan.device(t.name, t.options).domain() is not None]
    covers = table is not None and len(table.archs) >= plan.space.size
    want = cfg.search.domain
    if want == AUTO:
        want = "table" if restricted and table is not None else "space"
    if want == "table" and table is None:
        problems.append("search.domain: 'table' needs a latency table (latency.table)")
    if want == "space" and restricted and not covers:
        n = len(table.archs) if table is not None else 0
        problems.append(f"search.domain: targets {restricted} are known only on the table's {n} architectures "
                        f"(the space has {plan.space.size:,}); set search.domain: table")
    return want


def _config_problems(cfg: PipelineConfig) -> list[str]:
    """What can be checked without the space: names against registries, cross-field rules."""
    from orchestrator.latency.transfer import TRANSFERS
    from orchestrator.search.algorithms import ALGORITHMS

    problems = []
    if cfg.sweep.transfer not in TRANSFERS:
        problems.append(f"sweep.transfer: unknown method {cfg.sweep.transfer!r}; registered: {TRANSFERS.names()}")
    algo = cfg.search.algorithm
    if algo not in ALGORITHMS:
        problems.append(f"search.algorithm: unknown {algo!r}; registered: {ALGORITHMS.names()}")
    ts = cfg.sweep.target_search.algorithm
    if ts not in (AUTO, "none") and ts not in ALGORITHMS:
        problems.append(f"sweep.target_search.algorithm: unknown {ts!r}; 'auto', 'none' or {ALGORITHMS.names()}")
    if algo == "milp":
        if cfg.latency.predictor != "additive":
            problems.append("search.algorithm: 'milp' needs an additive latency predictor; set "
                            "latency.predictor: additive")
        if not (cfg.accuracy.source == "table" or (cfg.accuracy.source == "predictor"
                                                   and cfg.accuracy.predictor == "additive")):
            problems.append("search.algorithm: 'milp' needs an additive accuracy model; use accuracy.source: "
                            "predictor with accuracy.predictor: additive (or source: table)")
        if cfg.sweep.per_device_search or cfg.sweep.refine_trials:
            problems.append("sweep.per_device_search / sweep.refine_trials: these run a sampler search; use "
                            "nsga2, tpe or random with them")
    if cfg.search.batch_size is not None and algo == "nsga2" and cfg.search.batch_size > cfg.search.population:
        problems.append(f"search.batch_size: {cfg.search.batch_size} > population {cfg.search.population}: NSGA-II "
                        f"would ask children of a generation that is not complete; use <= population")
    sn = cfg.accuracy.supernet
    if sn.eval_gpus > 0 and not sn.eval.device.startswith("cuda"):
        problems.append(f"accuracy.supernet.eval.device: {sn.eval.device!r} while eval_gpus is {sn.eval_gpus}; "
                        f"set it to 'cuda' to use the GPU share the actors ask for")
    if sn.eval.device.startswith("cuda") and sn.eval_gpus == 0:
        problems.append("accuracy.supernet.eval_gpus: 0 while eval.device is cuda; Ray hides GPUs from actors "
                        "that ask for none: give each actor a share (e.g. 0.25)")
    if sn.train.device.startswith("cuda") and sn.train_gpus == 0:
        problems.append("accuracy.supernet.train_gpus: 0 while train.device is cuda; Ray hides GPUs from actors "
                        "that ask for none: set train_gpus: 1")
    if sn.checkpoint:
        from pathlib import Path

        if not Path(sn.checkpoint).is_dir():
            problems.append(f"accuracy.supernet.checkpoint: {sn.checkpoint!r} is not a directory")
    return problems


def _count_problems(plan: Plan) -> list[str]:
    """Every count against what the space, the table and each device can give (a loop that draws distinct
    architectures must be able to finish)."""
    cfg, sw, size, n_dom = plan.cfg, plan.cfg.sweep, plan.space.size, plan.domain_size()
    problems = []
    if cfg.accuracy.source == "predictor" and cfg.accuracy.predictor_samples > size:
        problems.append(f"accuracy.predictor_samples: {cfg.accuracy.predictor_samples:,} distinct subnets asked "
                        f"of space {plan.space.name!r}, which has {size:,}; at most {size:,}")
    if plan.proxy and not plan.catalog.problems(plan.proxy) and plan.device(plan.proxy, {}).domain() is None \
            and cfg.latency.proxy_samples > size:
        problems.append(f"latency.proxy_samples: {cfg.latency.proxy_samples:,} distinct architectures asked of "
                        f"space {plan.space.name!r}, which has {size:,}; at most {size:,}")
    for t in plan.targets:
        dom = plan.device(t.name, t.options).domain()
        can = min(len(dom), n_dom) if dom is not None else n_dom
        if sw.k > can:
            problems.append(f"sweep.k: {sw.k:,} measurements of target {t.name!r}, which can be measured on "
                            f"{can:,} architectures of the search domain; at most {can:,}")
    for key in ("measure_front", "export_front"):
        if getattr(sw, key) > n_dom:
            problems.append(f"sweep.{key}: {getattr(sw, key):,} front members, but the search domain has "
                            f"{n_dom:,} architectures; at most {n_dom:,}")
    for where, n in (("search.n_trials", cfg.search.n_trials), ("sweep.target_search.n_trials",
                                                                 sw.target_search.n_trials)):
        if n > MAX_TRIALS:
            problems.append(f"{where}: {n:,} trials would take over {n / TRIALS_PER_S / 86400:,.0f} days at "
                            f"{TRIALS_PER_S:,.0f} trials/s (Optuna's own cost per trial); at most {MAX_TRIALS:,}")
    if cfg.search.population > cfg.search.n_trials:
        problems.append(f"search.population: {cfg.search.population} > n_trials {cfg.search.n_trials}: the first "
                        f"generation would not finish; raise n_trials or lower population")
    if cfg.search.algorithm in ("nsga2", "tpe", "random") and cfg.search.n_trials > 20 * n_dom:
        plan.warnings.append(f"search.n_trials: {cfg.search.n_trials:,} trials on a domain of {n_dom:,} "
                             f"architectures: most trials will repeat an architecture (told from the evaluation "
                             f"log, no new information); 'exhaustive' evaluates each once")
    return problems


def _other_problems(plan: Plan) -> list[str]:
    from orchestrator.search.algorithms import MAX_EXHAUSTIVE

    cfg, problems = plan.cfg, _config_problems(plan.cfg) + _count_problems(plan)
    if cfg.accuracy.source == "table" and plan.space.name != "nb201":
        problems.append("accuracy.source: 'table' needs the nb201 space (the shipped accuracies); use 'supernet' "
                        "or 'predictor'")
    finite = plan.domain == "table" or plan.space.size <= MAX_EXHAUSTIVE
    for where, a in (("search.algorithm", cfg.search.algorithm),
                     ("sweep.target_search.algorithm", cfg.sweep.target_search.algorithm)):
        if a == "exhaustive" and not finite:
            problems.append(f"{where}: 'exhaustive' needs a finite domain; space {plan.space.name!r} has "
                            f"{plan.space.size:.3g} architectures: use search.domain: table, or milp / nsga2")
    if cfg.accuracy.source != "table":
        try:
            cfg.space.with_options(**cfg.accuracy.supernet.options).build()
        except HwnasError as e:
            problems.append(f"accuracy.supernet.options: {e}")
    return problems


def plan_problems(cfg: PipelineConfig) -> list[str]:
    """Every problem of ``cfg`` that the schema cannot see (empty: it can run)."""
    plan, problems = _build(cfg)
    return problems + (_other_problems(plan) if plan is not None else [])


def make_plan(cfg: PipelineConfig) -> Plan:
    plan, problems = _build(cfg)
    if plan is not None:
        problems += _other_problems(plan)
    if problems or plan is None:
        raise ConfigError(f"config {cfg.name!r}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
    return plan
