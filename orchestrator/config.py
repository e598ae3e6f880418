"""The pipeline's configuration: pydantic models (unknown keys rejected); the only YAML reader.

``load_config(path)`` reports every problem of the schema at once, each with its
path in the file (``search.n_trials: Input should be greater than or equal to 2``).
It is the schema only: it imports nothing of the pipeline. What pydantic cannot
check (the space and its options, the latency table, device names and their
options against the device catalog, algorithms against the registry, cross-field
rules) is ``orchestrator.pipeline.plan.make_plan``'s, the single validator, which
``hwnas validate`` and ``run_pipeline`` call once, before anything is scheduled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import ConfigError
from orchestrator.latency.devices.protocol import DeviceSpec
from orchestrator.latency.measurement import MeasurementProtocol
from orchestrator.schema import Schema, Seed
from orchestrator.search.dnas_settings import DnasConfig
from orchestrator.supernet.settings import DataConfig, EvalConfig, TrainConfig
from search_spaces.base import SpaceSpec

# Bounds on every count and size, checked at validation (issue 24.6): a number beyond them is a typo or an attack,
# and would reach Ray (its own limit is 1e14 CPUs), a loop or an allocation as a hang instead of an error.
MAX_CPUS = 65_536  # CPUs, actors, threads
MAX_COUNT = 1_000_000  # samples, trials, population, k, front members
MAX_DEVICES = 1_024  # device columns of a table, entries of sweep.targets (orchestrator.latency.table too)
MAX_NUMBER = 10**15  # any other integer of a config (epochs, batch sizes, ...)
MAX_CONFIG_BYTES = 1 << 20  # a config file
MAX_YAML_NODES = 100_000  # YAML nodes after alias expansion (an alias bomb expands to billions)


class _Model(Schema):
    """A section of the pipeline's configuration."""


class RayConfig(_Model):
    address: str | None = Field(None, description="Ray address ('auto' on a cluster); None starts a local Ray")
    num_cpus: int | None = Field(None, ge=1, le=MAX_CPUS, description="local Ray only: CPUs to offer (default: all)")


class SupernetSection(_Model):
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="space options for the trained supernet only (a scaled-down proxy: fewer channels/cells); "
                    "latency is always of the network that `space` defines")
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    actors: int = Field(2, ge=1, le=MAX_CPUS, description="evaluator actors")
    train_gpus: float = Field(0, ge=0, description="GPUs the trainer actor asks Ray for (a cluster's GPU node: 1)")
    eval_gpus: float = Field(0, ge=0, description="GPUs per evaluator actor (e.g. 0.25: four share one GPU); "
                                                  "set eval.device to cuda as well")
    checkpoint: str | None = Field(None, description="a trained supernet run dir to load instead of training")


class ZeroCostSection(_Model):
    proxy: Literal["synflow", "naswot", "snip", "grad_norm", "params", "ensemble", "ensemble_mean"] = Field(
        "ensemble", description="zero_cost source: the proxy scored at initialisation (no training); 'ensemble' "
                                "= the lowest of the standardised synflow, naswot and params, 'ensemble_mean' "
                                "= their mean")
    data: DataConfig = Field(default_factory=DataConfig,
                             description="the training images of the proxies' batch (resolution: the space's)")
    batch_size: int = Field(64, ge=2, le=MAX_COUNT, description="images in the proxies' batch")
    reference: int = Field(32, ge=4, le=MAX_COUNT, description="cells sampled to standardise each proxy's score")


class AccuracySection(_Model):
    source: Literal["default", "supernet", "table", "predictor", "zero_cost"] = Field(
        "default", description="'default': the space's default for its data (orchestrator/pipeline/"
                               "default_source.py: NB201 on real images -> zero_cost, else supernet), or a source")
    table: str | None = Field(None, description="table source: a CSV path with columns arch and accuracies (top-1 "
                                                "%), or a shipped table's name (shipped = nb201-full, "
                                                "nb201-hwnasbench); None: the latency table in use")
    table_column: str = Field("test_acc_cifar10_200ep", description="table source: the accuracy column (NB201 "
                                                                    "shipped: *_200ep, or the 12-epoch *_12ep)")
    predictor_samples: int = Field(64, ge=8, le=MAX_COUNT, description="predictor source: subnets evaluated to fit it")
    predictor: str = Field("mlp", description="predictor source: a registered predictor (`hwnas list`: "
                                              "additive, mlp, or one registered in code)")
    predictor_features: Literal["encoding", "zero_cost", "both"] = Field(
        "encoding", description="predictor source: its inputs, the architecture encoding, the zero-cost scores "
                                "(standardised synflow, naswot, params; settings from zero_cost), or both")
    supernet: SupernetSection = Field(default_factory=SupernetSection)
    zero_cost: ZeroCostSection = Field(default_factory=ZeroCostSection)


class LatencySection(_Model):
    table: str = Field("shipped", description="'shipped' (NB201: the whole space on 19 devices = nb201-full; "
                                              "fbnet: 5,000 architectures on 19 devices; no table for other "
                                              "spaces), 'nb201-hwnasbench' (1,999 cells, six HW-NAS-Bench "
                                              "devices) or a CSV path with columns arch and lat_ms_<device>: each "
                                              "such column is a tabulated device")
    lut: str | None = Field(None, description="a lookup table (CSV: layer, op, lat_ms_<device>; base + per-layer "
                                              "block deltas) for a layer-wise space: each column is an exact "
                                              "device lut:<device>; 'shipped' = HW-NAS-Bench's Pixel 3 table for "
                                              "fbnet")
    proxy: str = Field("auto", description="proxy device name, or 'auto': the tabulated device whose latency "
                                           "ranking agrees best with the others (mean SRCC)")
    predictor: str = Field("additive", description="the latency predictor: a registered predictor (`hwnas list`: "
                                                   "additive, mlp, or one registered in code)")
    proxy_samples: int = Field(100, ge=8, le=MAX_COUNT,
                               description="measured or simulated proxy: architectures measured to fit its "
                                           "predictor")
    protocol: MeasurementProtocol = Field(default_factory=MeasurementProtocol)
    threads: int = Field(1, ge=1, le=MAX_CPUS, description="measured CPU devices: intra-op threads")


class SearchSection(_Model):
    algorithm: str = Field(
        "nsga2", description="nsga2, tpe, random; 'milp': the exact front of additive accuracy and latency "
                             "predictors (n_trials caps the front's size); 'exhaustive': every cell of a finite "
                             "domain (hwnas list); 'dnas': differentiable search with a sweep of the latency "
                             "weight (search.dnas)")
    n_trials: int = Field(200, ge=2, description="completed trials (the budget)")
    population: int = Field(20, ge=2, le=MAX_COUNT, description="NSGA-II population; TPE's random start-up trials")
    batch_size: int | None = Field(None, ge=1, le=MAX_COUNT, description="trials asked per round (default: population)")
    latency_budget_ms: float | None = Field(None, gt=0, description="constraint: proxy latency <= budget")
    domain: Literal["auto", "space", "table"] = Field(
        "auto", description="'table': restrict candidates to the latency table's architectures (proposals snap "
                            "to the nearest one), so tabulated devices give ground truth for every candidate; "
                            "'space': the whole space; 'auto': 'table' when the sweep has tabulated targets")
    storage: str | None = Field(None, description="Optuna storage URL; None = a journal file in the run dir")
    objectives: list[str] = Field(
        default_factory=list, max_length=2,
        description="extra objectives minimised beside accuracy and latency (3-4 objectives in all): costs of "
                    "the network, params_m, macs_m, peak_mem_mb (hwnas list: costs); every front is then "
                    "non-dominated in all of them")
    constraints: dict[str, float] = Field(
        default_factory=dict,
        description="cost limits every architecture must meet, e.g. {params_m: 5, macs_m: 300} (same names as "
                    "objectives); searches treat them as constraints, fronts and their judging leave out what "
                    "exceeds them")

    dnas: DnasConfig = Field(default_factory=DnasConfig, description="algorithm 'dnas': the lambda sweep, "
                                                                     "temperatures, epochs")

    @model_validator(mode="after")
    def _costs(self) -> SearchSection:
        from search_spaces.costs import check_cost_names

        problems = check_cost_names(self.objectives, "objectives") + check_cost_names(list(self.constraints),
                                                                                      "constraints")
        if len(set(self.objectives)) < len(self.objectives):
            problems.append(f"objectives: {self.objectives} names one twice")
        problems += [f"constraints: {k} must be > 0, got {v}" for k, v in self.constraints.items() if not v > 0]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Int8AccuracySection(_Model):
    """int8 as a precision (issue 22): each front member's accuracy after ONNX Runtime static int8 quantization,
    beside its fp32 accuracy on the same validation images (``orchestrator.supernet.int8``). Needs a network
    with weights: accuracy.source supernet or predictor."""

    enabled: bool = Field(False, description="evaluate every front member in int8 too (front columns "
                                             "accuracy_int8, int8_drop)")
    calibration_images: int = Field(64, ge=1, le=100_000, description="real training images (unaugmented) that "
                                                                     "calibrate the activation ranges")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = Field("minmax")
    per_channel: bool = Field(True, description="int8 weights per output channel")
    reduce_range: Literal["auto"] | bool = Field("auto", description="7-bit int8 weights: 'auto' = where the "
                                                 "evaluating host's CPU saturates 8-bit ones (x86-64 without VNNI; "
                                                 "orchestrator.latency.devices.runtimes.int8_saturates)")
    threads: int = Field(1, ge=1, le=MAX_CPUS, description="ONNX Runtime intra-op threads")
    actors: int = Field(2, ge=1, le=MAX_CPUS, description="Ray actors evaluating front members at once (each "
                                                          "holds `threads` CPUs; at most the cluster's)")


class TargetSearchSection(_Model):
    algorithm: str = Field(
        "auto", description="the search of each target's front over the whole domain, on its latency predictor "
                            "and the run's accuracy (evaluated values first, a model's elsewhere): 'auto' = "
                            "exhaustive on a finite domain, else milp with additive models, else nsga2; or "
                            "'none' (only re-rank the proxy search's candidates)")
    n_trials: int = Field(400, ge=2, le=MAX_COUNT,
                          description="trials of a sampler search (nsga2, tpe, random) per target")
    population: int = Field(40, ge=2, le=MAX_COUNT)
    max_new_evaluations: int = Field(8, ge=0, le=MAX_COUNT,
                                     description="supernet accuracy: front members chosen on a predicted accuracy "
                                                 "that are evaluated for real, per target (the rest are dropped)")


class SweepSection(_Model):
    targets: list[str | DeviceSpec] = Field(
        default_factory=lambda: ["tabulated"], max_length=MAX_DEVICES,
        description="device names (or {name, options}); 'tabulated' = every column of the latency table except "
                    "the proxy")
    simulated: int = Field(0, ge=0, description="also sweep this many SIMULATED devices sim:0..sim:N-1")
    k: int = Field(10, ge=3, le=MAX_COUNT, description="architectures measured per target")
    reference_cells: int = Field(0, ge=0, le=MAX_COUNT,
                                 description="of the k, this many are a fixed set of reference cells measured on "
                                             "every target first (HELP's reference architectures; "
                                             "orchestrator/sweep/reference.py): the domain's cells known on every "
                                             "table column, evenly spaced in multiply-adds (0: off)")
    k_adaptive: float = Field(0.5, ge=0, lt=1, description="share of the k measured in a second round along the "
                                                             "target's own predicted front (where its front lives; "
                                                             "0: one round)")
    k_front: float = Field(1.0, ge=0, le=1, description="first round: share chosen along the proxy's front (both "
                                                          "ends); the rest at evenly spaced proxy-latency ranks")
    srcc_threshold: float = Field(0.9, ge=-1, le=1, description="reuse the proxy's ranking when SRCC on the k "
                                                                "samples is at least this (see decision)")
    decision: Literal["bound", "point"] = Field(
        "bound", description="'bound': reuse when the lower bound of the SRCC (at `confidence`; the smaller of an "
                             "exact small-sample bound and the bootstrap's) clears "
                             "the threshold, else adapt; 'point': the paper's rule, SRCC >= threshold")
    confidence: float = Field(0.9, gt=0.5, lt=1, description="one-sided confidence of the SRCC lower bound")
    target_search: TargetSearchSection = Field(default_factory=TargetSearchSection)
    retest: int = Field(10, ge=0, le=MAX_COUNT,
                        description="measured targets: re-measure this many of the k (at most k, in another "
                                    "order) and record the test-retest SRCC; below 0.9 the target is flagged "
                                    "(0: off)")
    transfer: str = Field("multi", description="transfer method when adapting (hwnas list: transfer methods)")
    sources: Literal["proxy", "tabulated"] = Field(
        "tabulated", description="devices the transfer learns from: the proxy only (the seed's AdaProxy), or "
                                 "every tabulated device except the target (multi-proxy)")
    measure_front: int = Field(5, ge=0, le=MAX_COUNT, description="front members measured on measured targets")
    export_front: int = Field(1, ge=0, le=MAX_COUNT, description="front members exported (ONNX) for measured targets")
    budget_quantiles: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75], max_length=64,
                                          description="latency budgets for the accuracy gap, as quantiles of "
                                                      "the reference front's latency")
    refine_trials: int = Field(0, ge=0, le=MAX_COUNT,
                               description="adapted targets: a short search of this many trials on the target's "
                                           "adapted predictor, started from its front (0: off)")
    memory_mb: dict[str, float] = Field(
        default_factory=dict,
        description="per target device: memory for activations (MiB); architectures whose peak_mem_mb exceeds "
                    "it are neither measured nor chosen on that device, and its truth is judged without them")
    per_device_search: bool = Field(False, description="also run a full search per target with ground truth "
                                                       "(the cost baseline)")
    int8_accuracy: Int8AccuracySection = Field(default_factory=Int8AccuracySection,
                                               description="front members' int8 accuracy beside fp32")

    @model_validator(mode="after")
    def _memory(self) -> SweepSection:
        bad = {k: v for k, v in self.memory_mb.items() if not v > 0}
        if bad:
            raise ValueError(f"memory_mb must be > 0 MiB, got {bad}")
        return self

    @model_validator(mode="after")
    def _reference(self) -> SweepSection:
        if self.reference_cells > self.k:
            raise ValueError(f"reference_cells {self.reference_cells} > k {self.k}: they are counted in k")
        return self

    @model_validator(mode="after")
    def _quantiles(self) -> SweepSection:
        if any(not 0 < q < 1 for q in self.budget_quantiles):
            raise ValueError(f"budget_quantiles must lie in (0, 1), got {self.budget_quantiles}")
        return self


class TrackingSection(_Model):
    uri: str | None = Field(None, description="MLflow tracking URI; None = sqlite:///<absolute path>/mlflow.db "
                                              "in the working directory")
    experiment: str = "hwnas"
    enabled: bool = True


class ConfirmConfig(_Model):
    """`hwnas confirm` (orchestrator.confirm): the chosen fronts trained from scratch as Ray Tune trials."""

    enabled: bool = Field(False, description="run at the end of `hwnas run` (else: `hwnas confirm RUN`)")
    top: int = Field(0, ge=0, description="per front, only the N most accurate members (0: all)")
    devices: list[str] | None = Field(None, description="only these devices' fronts ('proxy': the proxy's)")
    epochs: int = Field(10, ge=1, description="full training budget per architecture")
    grace_period: int = Field(2, ge=1, description="ASHA: epochs every trial gets before it can be stopped")
    reduction_factor: int = Field(2, ge=2, description="ASHA: keep 1/reduction_factor at each rung")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="a GPU share per trial (e.g. 0.25: four share one)")
    max_concurrent: int = Field(0, ge=0, description="trials at once (0: as many as the resources allow)")
    seed: Seed = 0


class PipelineConfig(_Model):
    name: str = Field(..., description="the run's name: one file name (letters, digits, '_', '-', '.'), the run "
                                        "dir <output_dir>/<name>")
    seed: Seed = 0
    output_dir: str = Field("runs", description="the run dir is <output_dir>/<name>")
    ray: RayConfig = Field(default_factory=RayConfig)
    space: SpaceSpec = Field(default_factory=lambda: SpaceSpec(name="nb201"),
                             description="the deployed network: a registered space and its options")
    accuracy: AccuracySection = Field(default_factory=AccuracySection)
    latency: LatencySection = Field(default_factory=LatencySection)
    search: SearchSection = Field(default_factory=SearchSection)
    sweep: SweepSection = Field(default_factory=SweepSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    confirm: ConfirmConfig = Field(default_factory=ConfirmConfig,
                                   description="train the chosen fronts from scratch with Ray Tune (hwnas confirm)")

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", v) or set(v) == {"."}:
            shown = repr(v) if len(v) <= 60 else repr(v[:60]) + f"... ({len(v)} characters)"
            raise ValueError(f"{shown} is not a run name: it names the run dir <output_dir>/<name>, so it must be one "
                             f"file name of 1 to 128 letters, digits, '_', '-' or '.' (not '.' or '..', no '/' or "
                             f"spaces), e.g. 'nb201-sweep'")
        return v

    def target_entries(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, options) of each entry of sweep.targets, as written."""
        return [(t, {}) if isinstance(t, str) else (t.name, dict(t.options)) for t in self.sweep.targets]

    def run_dir(self, base: Path | None = None) -> Path:
        d = Path(self.output_dir)
        if not d.is_absolute() and base is not None:
            d = base / d
        return (d / self.name).resolve()


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in {"str", "DeviceSpec"}))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``X``, ``X | None``, ``list[X]``, ``dict[str, X]`` ...)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """For an unknown key at ``loc``: "; did you mean 'x'?" naming the closest field of the section it is in
    (difflib), else "; this section's keys: ..." ; empty where the section is not a model."""
    import difflib

    models: list[type[BaseModel]] = [PipelineConfig]
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: the same models
            continue
        named = [m for m in models if m.__name__ == part]  # a union branch, named after its type
        if named:
            models = named
            continue
        models = [m for model in models if part in model.model_fields
                  for m in _models_in(model.model_fields[part].annotation)]
        if not models:
            return ""
    keys = sorted({k for m in models for k in m.model_fields})
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; this section's keys: {', '.join(keys)}"


def parse_config(data: Any, source: str = "<config>") -> PipelineConfig:
    """Validate a mapping against the schema alone; raise ConfigError listing every problem with its path.

    Nothing is resolved here (no space, table or device is built): ``orchestrator.pipeline.plan.make_plan`` is
    the one validator of what the schema cannot see, called by ``hwnas validate``, ``run_pipeline`` and tests."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"  {_loc(err['loc']) or '<top>'}: {err['msg'].removeprefix('Value error, ')}"
                 + (_did_you_mean(err["loc"]) if err["type"] == "extra_forbidden" else "") for err in e.errors()]
        raise ConfigError(f"{source}: {len(lines)} problem(s):\n" + "\n".join(lines)) from None
    problems = _number_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
    return cfg


def _number_problems(model: BaseModel, prefix: str = "") -> list[str]:
    """Every integer of the config (nested models, lists, dicts) within ``MAX_NUMBER``: a bound for the counts
    and sizes of the sections that declare none of their own."""
    out: list[str] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, BaseModel):
            out.extend(_number_problems(v, path + "."))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}")
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                walk(x, f"{path}.{i}")
        elif isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > MAX_NUMBER:
            out.append(f"{path}: {v:g} is beyond any sensible count or size (at most {MAX_NUMBER:.0e}); "
                       f"fix the number")

    for name in type(model).model_fields:
        if name != "seed":  # a Seed, bounded by its type (0 .. 2**63 - 1)
            walk(getattr(model, name), prefix + name)
    return out


def _yaml_nodes(root: yaml.Node, limit: int) -> int:
    """The number of nodes ``root`` expands to (aliases counted at their full size); stops past ``limit``.
    Raises ValueError on a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("an alias refers to a node that contains it (a recursive structure)")
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for c in n.value:
                total += size(c)
                if total > limit:
                    break
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _duplicate_key(root: yaml.Node) -> tuple[str, int, int] | None:
    """The first key given twice in one mapping of ``root`` (its text, its line and the first one's, 1-based), or
    None. Merge keys (``<<``) are left to YAML."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    if k.value in first:
                        return k.value, line, first[k.value]
                    first[k.value] = line
                stack += [k, v]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value
    return None


def read_yaml(path: Path) -> Any:
    """A config file's YAML, bounded: at most ``MAX_CONFIG_BYTES``, and at most ``MAX_YAML_NODES`` nodes after
    alias expansion (a "billion laughs" file is refused before anything expands it). Raises ConfigError."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,} bytes: is this the "
                          f"config file?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}): is this the config file? Save "
                          f"it as UTF-8") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            n = _yaml_nodes(root, MAX_YAML_NODES)
            if n > MAX_YAML_NODES:
                raise ConfigError(f"{path}: its aliases (*name) expand to over {MAX_YAML_NODES:,} values; a "
                                  f"config needs a few hundred: write the values out, or remove the aliases")
            dup = _duplicate_key(root)
            if dup is not None:
                raise ConfigError(f"{path}, line {dup[1]}: key {dup[0]!r} given twice in one mapping (first on line "
                                  f"{dup[2]}); YAML would keep the last silently: keep one")
        return yaml.safe_load(text)
    except ConfigError:
        raise
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e)[:500] or type(e).__name__}") from None


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a config file in it (a .yaml: see experiments/ for examples)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; see experiments/ for examples")
    data = read_yaml(path)
    return parse_config(data, str(path))
