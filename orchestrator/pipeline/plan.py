"""A config resolved against the registries: the space, the latency table, the proxy, the targets, the domain.

``make_plan(cfg)`` builds everything a run needs to know before any work is
scheduled, and refuses a config with every problem it finds (each with its
path). It is the single validator: ``hwnas validate``, ``run_pipeline`` and
tests call it; ``parse_config`` checks the schema only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import PipelineConfig
from orchestrator.errors import ConfigError, HwnasError
from orchestrator.latency.devices.catalog import DeviceCatalog
from orchestrator.latency.devices.protocol import DeviceSpec
from orchestrator.latency.table import LatencyTable
from orchestrator.pipeline.default_source import SourceChoice, resolve_config
from orchestrator.pipeline.resolved import SPACE, TABLE, Domain, Target
from search_spaces.base import SearchSpace

TABULATED = "tabulated"  # sweep.targets keyword: every column of the latency table but the proxy
AUTO = "auto"
MAX_SIMULATED = 100_000  # simulated targets: more is refused before any is built (each costs a task, files, a run)


@dataclass
class Plan:
    cfg: PipelineConfig
    space: SearchSpace
    table: LatencyTable | None
    catalog: DeviceCatalog
    proxy: str
    targets: list[Target]  # resolved once (their devices built); never looked up by name after planning
    domain: Domain
    proxy_target: Target | None = None  # the proxy, resolved (None only in a plan refused for its proxy)
    proxy_score: float | None = None  # 'auto': the chosen proxy's mean SRCC to the other tabulated devices
    warnings: list[str] = field(default_factory=list)  # allowed, but probably not what was meant
    table_failed: bool = False  # latency.table did not load (its problems reported; what follows from it not)
    accuracy: dict[str, float] | None = None  # accuracy.source 'table': its values (%), validated, by arch id
    given: PipelineConfig | None = None  # the config as written (cfg: its accuracy.source resolved)
    accuracy_choice: SourceChoice | None = None  # the source cfg resolved to, and why

    def device_defaults(self) -> dict[str, Any]:
        """Options every device type that has them takes from the latency section."""
        return device_defaults(self.cfg)

    def close(self) -> None:
        """Close every device built (a measured device's actor ends; a later measurement starts another)."""
        for target in [*([self.proxy_target] if self.proxy_target is not None else []), *self.targets]:
            target.device.close()


def device_defaults(cfg: PipelineConfig) -> dict[str, Any]:
    """Options every device type that has them takes from the latency section."""
    return {"threads": cfg.latency.threads, "protocol": cfg.latency.protocol}


def _resolve(cfg: PipelineConfig, catalog: DeviceCatalog, spec: DeviceSpec) -> Target:
    """The Target of ``spec`` (its device built once, its cost limits)."""
    from orchestrator.sweep.target import cost_limits

    limits = cost_limits(dict(cfg.search.constraints), dict(cfg.sweep.memory_mb), spec.name)
    return Target.build(catalog, spec, device_defaults(cfg), limits)



def _load_table(cfg: PipelineConfig, space: SearchSpace) -> LatencyTable | None:
    """``latency.table``: a shipped table of the space (as ``SHIPPED_LATENCY`` declares it; 'shipped' where the
    space has none: None), or a CSV path."""
    from orchestrator.latency.shipped_tables import is_shipped_latency, shipped_latency_table
    from orchestrator.latency.table import read_table

    if is_shipped_latency(cfg.latency.table):
        return shipped_latency_table(space, cfg.latency.table)
    return read_table(cfg.latency.table, space, device_prefix="lat_ms_")


def _load_accuracy(cfg: PipelineConfig, space: SearchSpace, table: LatencyTable | None) -> dict[str, float] | None:
    """The accuracy table source's values, validated against the latency table's rows (None: another source)."""
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.search.accuracy_table import check_coverage, read_accuracy

    acc = cfg.accuracy
    if not SOURCES.get(acc.source).reads_table:
        return None
    name = acc.table
    if name is None:
        if table is None:
            raise ConfigError("no latency table to read accuracy from: set accuracy.table to a CSV with columns "
                              "arch and accuracies, or latency.table")
        from orchestrator.latency.table import is_shipped
        from orchestrator.shipped import SHIPPED_SPACE

        if is_shipped(cfg.latency.table) and space.name != SHIPPED_SPACE:  # fbnet's, mobilenetv3's: latency only
            others = ", ".join(n for n in SOURCES.names() if not SOURCES.get(n).reads_table)
            raise ConfigError(f"accuracy.source table without accuracy.table reads the latency table's accuracy "
                              f"columns, and the shipped latency table of space {space.name!r} has none: set "
                              f"accuracy.table to a CSV with a column 'arch' and accuracy columns (percent), or "
                              f"choose another accuracy.source ({others})")
        name = cfg.latency.table if is_shipped(cfg.latency.table) else table.source
    values = read_accuracy(name, space, acc.table_column)
    if table is not None:
        check_coverage(values, table.archs, f"the latency table {table.source}")
    return values.values


def _targets(cfg: PipelineConfig, table: LatencyTable | None, proxy: str, table_failed: bool = False
             ) -> tuple[list[DeviceSpec], list[str]]:
    out: list[DeviceSpec] = []
    problems = []
    names = [n for n, _ in cfg.target_entries()]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sweep.targets: {n!r} is listed twice")
    for name, opts in cfg.target_entries():
        if name == TABULATED:
            if table is None and not table_failed:  # a table that did not load is reported once, as itself
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
        from orchestrator.pipeline.checks import config_problems

        return None, [f"space: {e}"] + config_problems(cfg)
    table, table_failed = None, False
    try:
        table = _load_table(cfg, space)
    except HwnasError as e:
        problems.append(f"latency.table: {e}")
        table_failed = True
    accuracy = None
    if not table_failed:  # a table that did not load is reported once, as itself
        try:
            accuracy = _load_accuracy(cfg, space, table)
        except HwnasError as e:
            problems.append(f"accuracy.table: {e}")
    lut = None
    if cfg.latency.lut is not None:
        from orchestrator.latency.devices.lut import lut_path

        try:
            lut = lut_path(cfg.latency.lut, space)
        except HwnasError as e:
            problems.append(f"latency.lut: {e}")
    catalog = DeviceCatalog(space, table, lut)
    proxy, score = cfg.latency.proxy, None
    if proxy == AUTO:
        if table_failed:
            proxy = ""
        elif table is None or len(table.devices) < 2:
            problems.append("latency.proxy: 'auto' picks among the latency table's devices (at least two); name "
                            "a measured or simulated proxy (torch-cpu, onnxrt-cpu, cuda, sim:<n>) or give a table")
            proxy = ""
        else:
            try:
                proxy, score = srcc_matrix(table).proxy("mean")
            except HwnasError as e:
                problems.append(f"latency.proxy: 'auto': {e}")
                proxy = ""
    elif not (table_failed and _unknown(catalog, proxy)):
        problems += catalog.problems(proxy, {}, "latency.proxy")
    targets, tp = _targets(cfg, table, proxy, table_failed)
    problems += tp
    index = {n: i for i, (n, _) in enumerate(cfg.target_entries())}
    ok_targets = []
    for t in targets:
        where = f"sweep.targets.{index[t.name]}" if t.name in index else f"sweep.targets ({t.name})"
        p = catalog.problems(t.name, t.options, where)
        if not (table_failed and _unknown(catalog, t.name)):
            problems += p
        if not p:
            ok_targets.append(_resolve(cfg, catalog, t))
    proxy_target = _resolve(cfg, catalog, DeviceSpec(name=proxy)) if proxy and not catalog.problems(proxy) else None
    plan = Plan(cfg, space, table, catalog, proxy, ok_targets, Domain.of(SPACE, space, table), proxy_target, score,
                table_failed=table_failed, accuracy=accuracy)
    for where, name in [("latency.proxy", proxy), *((f"sweep.targets.{i}", n) for n, i in index.items())]:
        other = catalog.shadowed(name) if name else None
        if other is not None:  # the table's column wins: say so, the user may have meant the live device
            plan.warnings.append(f"{where}: {name!r} is a column of the latency table, read from it; without "
                                 f"the column it would be {other}: rename the column to mean that")
    if proxy and proxy in index:  # named as a target: its front is the proxy search's own, not a transfer's
        plan.warnings.append(f"sweep.targets.{index[proxy]}: {proxy!r} is the proxy (latency.proxy"
                             f"{': auto' if cfg.latency.proxy == AUTO else ''}); it is not swept as a target: its "
                             f"front is the proxy search's (fronts/proxy.json)")
    plan.domain = Domain.of(_domain(plan, [] if table_failed else problems), space, table)
    return plan, problems


def _unknown(catalog: DeviceCatalog, name: str) -> bool:
    """Whether ``name`` is no device the catalog knows. Where the latency table did not load, such a name is
    probably one of its columns: its problem follows from the table's, which is reported instead (as are
    'tabulated' and search.domain: table without a table)."""
    try:
        catalog.resolve(name)
    except KeyError:
        return True
    return False


def _domain(plan: Plan, problems: list[str]) -> str:
    """'table' or 'space'; 'auto' = the table when a target is known only on its rows."""
    cfg, table = plan.cfg, plan.table
    restricted = [t.name for t in plan.targets if t.domain is not None]
    covers = table is not None and len(table.archs) >= plan.space.size
    want = cfg.search.domain
    if want == AUTO:
        want = "table" if restricted and table is not None else "space"
    if want == TABLE and table is None:
        problems.append("search.domain: 'table' needs a latency table (latency.table)")
    if want == "space" and restricted and not covers:
        n = len(table.archs) if table is not None else 0
        problems.append(f"search.domain: targets {restricted} are known only on the table's {n} architectures "
                        f"(the space has {plan.space.size:,}); set search.domain: table")
    return want


def make_plan(cfg: PipelineConfig, source: str | None = None) -> Plan:
    """The config resolved, or ConfigError listing every problem (each with its path) that the schema cannot
    see. The single validator: ``hwnas validate``, ``run_pipeline`` and tests call it, once per run;
    ``parse_config`` checks the schema alone. ``source`` names the config in the error (a file's path; default
    the config's name)."""
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.pipeline.checks import plan_checks

    given = cfg
    cfg, choice = resolve_config(cfg)  # accuracy.source 'default' -> the space's source for its data
    plan, problems = _build(cfg)
    if plan is not None:
        plan.given, plan.accuracy_choice = given, choice
        unused = sorted(given.accuracy.supernet.model_fields_set - {"data"})
        if choice.by_default and not SOURCES.get(choice.source).trains_supernet and unused:
            plan.warnings.append(f"accuracy.supernet.{', '.join(unused)} unused: accuracy.source resolved to "
                                 f"{choice.source} by default; set accuracy.source: supernet to train the supernet")
        problems += plan_checks(plan)
    if problems or plan is None:
        head = source if source is not None else f"config {cfg.name!r}"
        raise ConfigError(f"{head}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
    return plan
