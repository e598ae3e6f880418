"""The checks of a plan that the schema cannot do: names against the registries, cross-field rules, and every
count against what the space, the table and each device can give."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config import PipelineConfig
from orchestrator.errors import HwnasError
from orchestrator.search.algorithms import AUTO, NONE

if TYPE_CHECKING:  # the plan calls these checks (make_plan): no arrow back at run time
    from orchestrator.pipeline.plan import Plan
    from orchestrator.search.algorithms import ProblemTraits

# Counts no run could finish: refused with the estimate (Optuna's ask/tell alone costs about a millisecond a
# trial; a simulated device about as much per architecture), not started to run for months.
MAX_TRIALS = 10_000_000
TRIALS_PER_S = 1_000.0


def config_problems(cfg: PipelineConfig) -> list[str]:
    """What can be checked without the space: names against registries, cross-field rules."""
    from orchestrator.latency.predictors import PREDICTORS
    from orchestrator.latency.transfer import TRANSFERS
    from orchestrator.search.algorithms import ALGORITHMS

    problems = url_problems(cfg)
    for where, name in (("latency.predictor", cfg.latency.predictor), ("accuracy.predictor", cfg.accuracy.predictor)):
        if name not in PREDICTORS:
            problems.append(f"{where}: unknown predictor {name!r}; registered: {PREDICTORS.names()}")
    if cfg.sweep.transfer not in TRANSFERS:
        problems.append(f"sweep.transfer: unknown method {cfg.sweep.transfer!r}; registered: {TRANSFERS.names()}")
    algo = cfg.search.algorithm
    if algo not in ALGORITHMS:
        problems.append(f"search.algorithm: unknown {algo!r}; registered: {ALGORITHMS.names()}")
    ts = cfg.sweep.target_search.algorithm
    if ts not in (AUTO, NONE) and ts not in ALGORITHMS:
        problems.append(f"sweep.target_search.algorithm: unknown {ts!r}; 'auto', 'none' or {ALGORITHMS.names()}")
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
    if cfg.sweep.int8_accuracy.enabled:
        from orchestrator.pipeline.accuracy import SOURCES

        src = cfg.accuracy.source
        if src in SOURCES and not SOURCES.get(src).trains_supernet:
            problems.append(f"sweep.int8_accuracy: int8 accuracy quantizes and evaluates a network with weights; "
                            f"accuracy.source {src!r} gives accuracies without one ({SOURCES.get(src).help}): use "
                            f"accuracy.source supernet or predictor, or set sweep.int8_accuracy.enabled: false")
    if sn.checkpoint:
        from pathlib import Path

        if not Path(sn.checkpoint).is_dir():
            problems.append(f"accuracy.supernet.checkpoint: {sn.checkpoint!r} is not a directory")
    return problems


# a database URL's driver module -> what to install (the extras of pyproject.toml where the project has one)
DRIVERS = {"psycopg": "pip install 'hwnas[postgres]' (psycopg[binary])", "psycopg2": "pip install psycopg2-binary",
           "pymysql": "pip install 'hwnas[mysql]' (PyMySQL)", "MySQLdb": "pip install mysqlclient",
           "pg8000": "pip install pg8000", "pyodbc": "pip install pyodbc", "pymssql": "pip install pymssql",
           "oracledb": "pip install oracledb"}
DB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "sqlite")


def url_problems(cfg: PipelineConfig) -> list[str]:
    """Database URLs (search.storage, tracking.uri): parseable, their driver installed; each URL shown with its
    password redacted."""
    from orchestrator.names import redact

    urls = [("search.storage", cfg.search.storage)]
    if cfg.tracking.enabled:
        urls.append(("tracking.uri", cfg.tracking.uri))
    problems = []
    for where, url in urls:
        if not url or url.split(":", 1)[0].split("+", 1)[0].lower() not in DB_SCHEMES:
            continue
        from sqlalchemy.engine import make_url

        try:
            dialect = make_url(url).get_dialect()
        except Exception as e:  # noqa: BLE001 - SQLAlchemy raises ArgumentError, NoSuchModuleError, ...
            problems.append(f"{where}: {redact(url)!r} is not a database URL SQLAlchemy can use "
                            f"({type(e).__name__}); e.g. postgresql://user@host/db")
            continue
        try:
            dialect.import_dbapi()
        except ImportError as e:
            module = (getattr(e, "name", None) or "").split(".")[0]
            fix = DRIVERS.get(module, f"install the Python package of module {module!r}")
            problems.append(f"{where}: the database driver for {redact(url)!r} is not installed (no module "
                            f"{module!r}); {fix}, or use another store")
    return problems


def source_problems(plan: Plan) -> list[str]:
    """Each tabulated device the sweep's transfer takes as a source (``sweep.sources``: the proxy, or every
    tabulated device but the target) measured on fewer architectures than a source needs
    (``transfer.min_source_samples``): refused here, not after the search."""
    table, sw = plan.table, plan.cfg.sweep
    if table is None or not plan.targets:
        return []
    from orchestrator.latency.transfer import min_source_samples
    from search_spaces.base import encode_ids

    need = min_source_samples(encode_ids(plan.space, table.archs[:1]).shape[1])
    if sw.sources == "tabulated":
        names = {d for t in plan.targets for d in table.devices if d != t.name}
    else:
        names = {plan.proxy} & set(table.devices)
    problems = []
    for d in sorted(names):
        n = len(table.measured(d)[0])
        if n < need:
            fix = "name another latency.proxy" if sw.sources == "proxy" else "leave it out of the table"
            problems.append(f"latency.table: device {d!r} has {n} measured architectures; as a transfer source "
                            f"(sweep.sources: {sw.sources}) it needs at least {need}: measure more of them, or "
                            f"{fix}")
    return problems


def count_problems(plan: Plan) -> list[str]:
    """Every count against what the space, the table and each device can give (a loop that draws distinct
    architectures must be able to finish)."""
    cfg, sw, size, n_dom = plan.cfg, plan.cfg.sweep, plan.space.size, plan.domain.size
    problems = []
    from orchestrator.pipeline.accuracy import SOURCES

    for where, n in SOURCES.get(cfg.accuracy.source).subnets(cfg.accuracy).items():
        if n > size:
            problems.append(f"{where}: {n:,} distinct subnets asked of space {plan.space.name!r}, which has "
                            f"{size:,}; at most {size:,}")
    if plan.proxy_target is not None and plan.proxy_target.domain is None \
            and cfg.latency.proxy_samples > size:
        problems.append(f"latency.proxy_samples: {cfg.latency.proxy_samples:,} distinct architectures asked of "
                        f"space {plan.space.name!r}, which has {size:,}; at most {size:,}")
    for t in plan.targets:
        dom = t.domain
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
    if sw.decision == "bound" and plan.targets:
        plan.warnings += bound_warnings(sw.k, sw.confidence, sw.srcc_threshold)
    from orchestrator.search.algorithms import ALGORITHMS

    if cfg.search.algorithm in ALGORITHMS and ALGORITHMS.get(cfg.search.algorithm).trains_supernet \
            and not SOURCES.get(cfg.accuracy.source).trains_supernet:
        plan.warnings.append(f"search.algorithm: {cfg.search.algorithm!r} trains a supernet of its own on "
                             f"search.{cfg.search.algorithm}.data (minutes; progress in the run's log) although "
                             f"accuracy.source is {cfg.accuracy.source!r}, which then scores what it finds; "
                             f"'exhaustive' or 'nsga2' search without training")
    if cfg.search.algorithm in ALGORITHMS and ALGORITHMS.get(cfg.search.algorithm).samples \
            and cfg.search.n_trials > 20 * n_dom:
        plan.warnings.append(f"search.n_trials: {cfg.search.n_trials:,} trials on a domain of {n_dom:,} "
                             f"architectures: most trials will repeat an architecture (told from the evaluation "
                             f"log, no new information); 'exhaustive' evaluates each once")
    return problems


def bound_warnings(k: int, confidence: float, threshold: float) -> list[str]:
    """A k at which even a perfectly ordered sample's SRCC lower bound stays below the threshold: every target
    will adapt (allowed: adapting is the safe choice, but the decision then decides nothing)."""
    from orchestrator.sweep.decision import max_srcc_lower_bound

    best = max_srcc_lower_bound(k, confidence)
    if best >= threshold:
        return []
    need = next((n for n in range(k + 1, 31) if max_srcc_lower_bound(n, confidence) >= threshold), None)
    return [f"sweep.k: {k} samples cannot show an SRCC lower bound of {threshold} at confidence {confidence} (a "
            f"perfectly ordered sample's bound is {best:.3f}): every target will adapt; reuse needs "
            + (f"k >= {need}" if need else "more than 30 samples") + " (or decision: point)"]


def cost_problems(plan: Plan) -> list[str]:
    """Memory limits name targets; cost limits leave something to search (checked on the table's cells, or on
    the space's smallest network where it has one)."""
    cfg = plan.cfg
    problems = []
    names = {t.name for t in plan.targets}
    for name in cfg.sweep.memory_mb:
        if name not in names and not plan.table_failed:
            problems.append(f"sweep.memory_mb: {name!r} is not a target of this sweep; targets: "
                            f"{sorted(names)[:10]}{' ...' if len(names) > 10 else ''}")
    limits = {f"search.constraints.{k}": (k, v) for k, v in cfg.search.constraints.items()}
    limits.update({f"sweep.memory_mb.{t}": ("peak_mem_mb", v) for t, v in cfg.sweep.memory_mb.items()})
    if not limits:
        return problems
    from search_spaces.costs import CostModel

    model = CostModel(plan.space.spec())
    if plan.domain.ids is not None:
        ids = list(plan.domain.ids)
    elif hasattr(plan.space, "smallest"):
        ids = [plan.space.arch_id(plan.space.smallest())]
    else:
        return problems
    for where, (name, limit) in limits.items():
        low = float(model.values(ids, name).min())
        if low > limit:
            problems.append(f"{where}: {limit:g}, but the smallest {name} of the search domain is {low:.4g}: "
                            f"nothing fits; raise it to at least {low:.4g}")
    return problems


def name_problems(plan: Plan) -> list[str]:
    """Device names against each other: one file name per target (``names.stem_clashes``), and no table column
    that would silently replace a simulated device of the same name."""
    import re

    from orchestrator.names import stem_clashes

    problems = [f"device names: {p}" for p in stem_clashes(t.name for t in plan.targets)]
    for col in plan.table.devices if plan.table is not None else []:
        m = re.fullmatch(r"sim:(\d+)", col)
        if m and int(m.group(1)) < plan.cfg.sweep.simulated:
            problems.append(f"latency.table: column {col!r} has the name of simulated device {col} (sweep.simulated: "
                            f"{plan.cfg.sweep.simulated}), which it would silently replace; rename the column "
                            f"(e.g. {col.replace(':', '_')}_measured) or lower sweep.simulated")
    return problems


def search_traits(plan: Plan) -> list[tuple[str, str, ProblemTraits]]:
    """(where, algorithm, what its problem offers) of every search the run will make, as the plan knows them
    before any work: the proxy search, each target's search (unless 'auto' or 'none'), the refinement and the
    per-device baseline (these two search on a latency with no additive model)."""
    from orchestrator.latency.predictors import PREDICTORS, predictor_declares
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.search.algorithms import ALGORITHMS, ProblemTraits

    cfg, space = plan.cfg, plan.space
    finite = plan.domain.finite
    known = cfg.latency.predictor in PREDICTORS  # an unknown name is config_problems' report
    proxy_additive = (known and predictor_declares(cfg.latency.predictor, "additive")) or bool(
        plan.proxy_target is not None and hasattr(plan.proxy_target.device, "additive"))
    source = SOURCES.get(cfg.accuracy.source)
    costs = bool(cfg.search.objectives or cfg.search.constraints)
    algo, ts, sw = cfg.search.algorithm, cfg.sweep.target_search.algorithm, cfg.sweep
    out: list[tuple[str, str, ProblemTraits]] = []
    if algo in ALGORITHMS:
        out.append(("search.algorithm", algo, ProblemTraits(
            space, finite, proxy_additive, source.additive(cfg.accuracy), costs, per_target=False,
            batch_size=cfg.search.batch_size, population=cfg.search.population, n_trials=cfg.search.n_trials)))
        own = ProblemTraits(space, finite, False, False, costs or bool(sw.memory_mb), per_target=True)
        if sw.refine_trials:
            out.append(("sweep.refine_trials (search.algorithm)", algo, own))
        if sw.per_device_search:
            out.append(("sweep.per_device_search (search.algorithm)", algo, own))
    if ts in ALGORITHMS:  # the adapted predictors and the oracle's model: known in the run, checked there
        out.append(("sweep.target_search.algorithm", ts, ProblemTraits(
            space, finite, None, None, costs or bool(sw.memory_mb), per_target=True,
            population=sw.target_search.population, n_trials=sw.target_search.n_trials)))
    return out


ROOTED = {"npz": "file", "imagefolder": "folder", "cifar10": "folder", "cifar100": "folder"}  # data a root names


def data_problems(model: Any, where: str = "") -> list[str]:
    """Every dataset section of the config (``accuracy.supernet.data``, ``accuracy.zero_cost.data``,
    ``search.dnas.data``, ...) whose data lives at a ``root`` that is not given or not there: validate passed
    them and the run failed minutes later in a Ray actor (break test, turn 16). Their contents are checked when
    they are read. Only for a local run (``ray.address`` unset): on a cluster the data lives on its nodes."""
    from pydantic import BaseModel

    from orchestrator.supernet.settings import DataConfig

    out = []
    if isinstance(model, DataConfig) and model.name in ROOTED:
        kind = ROOTED[model.name]
        if model.root is None:
            out.append(f"{where}.root: data {model.name!r} reads a {kind}; set root to it")
        else:
            root = Path(model.root).expanduser()
            if not (root.is_file() if kind == "file" else root.is_dir()):
                state = "is not a " + kind if root.exists() else "does not exist"
                out.append(f"{where}.root: {model.root} {state}; data {model.name!r} reads a {kind}")
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            out += data_problems(getattr(model, name), f"{where}.{name}" if where else name)
    return out


def plan_checks(plan: Plan) -> list[str]:
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.pipeline.budget import plan_budget_problems
    from orchestrator.search.algorithms import requirement_problems

    cfg, problems = plan.cfg, config_problems(plan.cfg) + count_problems(plan) + cost_problems(plan)
    problems += name_problems(plan) + source_problems(plan)
    if cfg.ray.address is None:
        problems += data_problems(cfg)
    for where, algorithm, traits in search_traits(plan):  # each algorithm says what it needs
        problems += requirement_problems(where, algorithm, traits)
    if not problems:  # the budget against the proxy's predictor: only a config that is otherwise sound
        problems += plan_budget_problems(plan)
    if SOURCES.get(cfg.accuracy.source).trains_supernet:
        try:
            sup = cfg.space.with_options(**cfg.accuracy.supernet.options).build()
        except HwnasError as e:
            problems.append(f"accuracy.supernet.options: {e}")
        else:  # a subnet is evaluated at the resolution its id names: the supernet must know every one
            mine = getattr(plan.space, "resolutions", None)
            theirs = getattr(sup, "resolutions", None)
            if mine is not None and theirs != mine:
                problems.append(f"accuracy.supernet.options: the space searches the input resolution "
                                f"{list(mine)}, the supernet trains at {list(theirs) if theirs else 'one'}; "
                                f"a subnet is evaluated at its own resolution, so leave 'resolutions' and "
                                f"'resolution' out of accuracy.supernet.options")
    return problems
