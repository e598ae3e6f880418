"""The pipeline's configuration: pydantic models (unknown keys rejected); the only YAML reader.

``load_config(path)`` reports every problem at once, each with its path in the
file (``search.n_trials: Input should be greater than or equal to 2``), then
checks what pydantic cannot: names against the registries, and cross-field
rules (a table accuracy source needs a tabular space, ...). Nothing is
scheduled before a config passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import ConfigError
from orchestrator.latency.measurement import MeasurementProtocol
from orchestrator.supernet.data import DataConfig
from orchestrator.supernet.evaluate import EvalConfig
from orchestrator.supernet.train import TrainConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RayConfig(_Model):
    address: str | None = Field(None, description="Ray address ('auto' on a cluster); None starts a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="local Ray only: CPUs to offer (default: all)")


class SpaceSection(_Model):
    name: str = "nb201"
    options: dict[str, Any] = Field(default_factory=dict, description="constructor options of the space")


class SupernetSection(_Model):
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="space options for the trained supernet only (a scaled-down proxy: fewer channels/cells); "
                    "latency is always of the network that `space` defines")
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    actors: int = Field(2, ge=1, description="evaluator actors")
    train_gpus: float = Field(0, ge=0, description="GPUs the trainer actor asks Ray for (a cluster's GPU node: 1)")
    eval_gpus: float = Field(0, ge=0, description="GPUs per evaluator actor (e.g. 0.25: four share one GPU); "
                                                  "set eval.device to cuda as well")
    checkpoint: str | None = Field(None, description="a trained supernet run dir to load instead of training")


class AccuracySection(_Model):
    source: Literal["supernet", "table", "predictor"] = "supernet"
    table_column: str = Field("acc_cifar10", description="table source: accuracy column of the shipped NB201 table")
    predictor_samples: int = Field(64, ge=8, description="predictor source: subnets evaluated to fit it")
    predictor: Literal["additive", "mlp"] = "mlp"
    supernet: SupernetSection = Field(default_factory=SupernetSection)


class LatencySection(_Model):
    table: str = Field("shipped", description="'shipped' (NB201 on six devices) or a CSV path with lat_ms_<device>")
    proxy: str = Field("auto", description="proxy device name, or 'auto': the tabulated device whose latency "
                                           "ranking agrees best with the others (mean SRCC)")
    predictor: Literal["additive", "mlp"] = "additive"
    proxy_samples: int = Field(100, ge=8, description="measured or simulated proxy: architectures measured to "
                                                      "fit its predictor")
    protocol: MeasurementProtocol = Field(default_factory=MeasurementProtocol)
    threads: int = Field(1, ge=1, description="measured CPU devices: intra-op threads")


class SearchSection(_Model):
    algorithm: Literal["nsga2", "tpe", "random", "milp"] = Field(
        "nsga2", description="'milp': the exact front of additive accuracy and latency predictors "
                             "(epsilon-constraint integer programs; n_trials caps the front's size)")
    n_trials: int = Field(200, ge=2, description="completed trials (the budget)")
    population: int = Field(20, ge=2, description="NSGA-II population; TPE's random start-up trials")
    batch_size: int | None = Field(None, ge=1, description="trials asked per round (default: population)")
    latency_budget_ms: float | None = Field(None, gt=0, description="constraint: proxy latency <= budget")
    domain: Literal["auto", "space", "table"] = Field(
        "auto", description="'table': restrict candidates to the latency table's architectures (proposals snap "
                            "to the nearest one), so tabulated devices give ground truth for every candidate; "
                            "'space': the whole space; 'auto': 'table' when the sweep has tabulated targets")
    storage: str | None = Field(None, description="Optuna storage URL; None = a journal file in the run dir")


class TargetSpec(_Model):
    name: str
    options: dict[str, Any] = Field(default_factory=dict, description="device options (threads, batch_size, ...)")


class SweepSection(_Model):
    targets: list[str | TargetSpec] = Field(
        default_factory=lambda: ["tabulated"],
        description="device names; 'tabulated' = every tabulated device except the proxy")
    simulated: int = Field(0, ge=0, description="also sweep this many SIMULATED devices sim:0..sim:N-1")
    k: int = Field(10, ge=3, description="architectures measured per target")
    srcc_threshold: float = Field(0.9, ge=-1, le=1, description="reuse the proxy's front at or above this SRCC")
    transfer: str = Field("multi", description="transfer method when adapting (hwnas list: transfer methods)")
    sources: Literal["proxy", "tabulated"] = Field(
        "tabulated", description="devices the transfer learns from: the proxy only (the seed's AdaProxy), or "
                                 "every tabulated device except the target (multi-proxy)")
    measure_front: int = Field(5, ge=0, description="front members measured on measured targets")
    export_front: int = Field(1, ge=0, description="front members exported (ONNX) for measured targets")
    budget_quantiles: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75],
                                          description="latency budgets for the accuracy gap, as quantiles of "
                                                      "the reference front's latency")
    refine_trials: int = Field(0, ge=0, description="adapted targets: a short search of this many trials on "
                                                    "the target's adapted predictor, started from its front "
                                                    "(0: off)")
    per_device_search: bool = Field(False, description="also run a full search per target with ground truth "
                                                       "(the cost baseline)")

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


class PipelineConfig(_Model):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    output_dir: str = Field("runs", description="the run dir is <output_dir>/<name>")
    ray: RayConfig = Field(default_factory=RayConfig)
    space: SpaceSection = Field(default_factory=SpaceSection)
    accuracy: AccuracySection = Field(default_factory=AccuracySection)
    latency: LatencySection = Field(default_factory=LatencySection)
    search: SearchSection = Field(default_factory=SearchSection)
    sweep: SweepSection = Field(default_factory=SweepSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    def search_domain(self) -> str:
        """The search domain, 'auto' resolved: the table when a tabulated device is a target."""
        if self.search.domain != "auto":
            return self.search.domain
        names = {t if isinstance(t, str) else t.name for t in self.sweep.targets}
        tabular = self.space.name == "nb201" and self.latency.table == "shipped"
        tab = "tabulated" in names or (tabular and bool(names & _shipped_devices()))
        return "table" if tab and (tabular or self.latency.table != "shipped") else "space"

    def run_dir(self, base: Path | None = None) -> Path:
        d = Path(self.output_dir)
        if not d.is_absolute() and base is not None:
            d = base / d
        return (d / self.name).resolve()


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in {"str", "TargetSpec"}))


def _semantic_problems(cfg: PipelineConfig) -> list[str]:
    """Checks against the registries and across fields; every problem, with its path."""
    from orchestrator.latency.devices.base import device_names
    from orchestrator.latency.transfer import TRANSFERS
    from search_spaces.base import SPACES

    problems: list[str] = []
    if cfg.space.name not in SPACES.names():
        problems.append(f"space.name: unknown space {cfg.space.name!r}; registered: {SPACES.names()}")
    if cfg.sweep.transfer not in TRANSFERS.names():
        problems.append(f"sweep.transfer: unknown method {cfg.sweep.transfer!r}; registered: {TRANSFERS.names()}")
    tabular = cfg.space.name == "nb201" and cfg.latency.table == "shipped"
    if cfg.accuracy.source == "table" and cfg.space.name != "nb201":
        problems.append("accuracy.source: 'table' needs the nb201 space (the shipped accuracies); "
                        "use 'supernet' or 'predictor'")
    if cfg.search_domain() == "table" and cfg.space.name != "nb201" and cfg.latency.table == "shipped":
        problems.append("search.domain: 'table' needs a latency table of this space; the shipped one is NB201")
    if cfg.latency.table != "shipped" and not Path(cfg.latency.table).is_file():
        problems.append(f"latency.table: {cfg.latency.table!r} is not a file; give a CSV path or 'shipped'")
    if cfg.space.name != "nb201" and cfg.latency.table == "shipped" and not (
            _is_measurable(cfg.latency.proxy)):
        problems.append("latency.proxy: the shipped tables are NB201; for another space use a measured or "
                        "simulated proxy (torch-cpu, onnxrt-cpu, cuda, sim:<n>)")
    known = set(device_names()) | {"tabulated", "auto"}
    names = [t if isinstance(t, str) else t.name for t in cfg.sweep.targets]
    for i, n in enumerate(names):
        if n not in known and not n.startswith(("sim:", "remote:")):
            problems.append(f"sweep.targets.{i}: unknown device {n!r}; registered: {sorted(known)}, "
                            f"or sim:<n>, remote:<resource>")
        if n.startswith("sim:") and not n[4:].isdigit():
            problems.append(f"sweep.targets.{i}: {n!r}: write simulated devices as sim:<n>")
    p = cfg.latency.proxy
    if p not in known and not p.startswith(("sim:", "remote:")):
        problems.append(f"latency.proxy: unknown device {p!r}; registered: {sorted(known)}")
    if p == "auto" and not tabular and cfg.latency.table == "shipped":
        problems.append("latency.proxy: 'auto' picks among tabulated devices; name a measured or simulated proxy")
    shipped_devices = _shipped_devices() if tabular else set()
    tab_targets = [n for n in names if n == "tabulated" or (tabular and n in shipped_devices)]
    if tabular and tab_targets and cfg.search_domain() != "table":
        problems.append(f"sweep.targets: tabulated targets {tab_targets} need search.domain 'table' (the shipped "
                        f"table holds 1,999 of NB201's 15,625 cells, and a tabulated target is known only there)")
    if len(set(names)) != len(names):
        problems.append(f"sweep.targets: listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    if cfg.search.algorithm == "milp":
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
    if cfg.search.batch_size is not None and cfg.search.algorithm == "nsga2" \
            and cfg.search.batch_size > cfg.search.population:
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
    if cfg.accuracy.supernet.checkpoint and not Path(cfg.accuracy.supernet.checkpoint).is_dir():
        problems.append(f"accuracy.supernet.checkpoint: {cfg.accuracy.supernet.checkpoint!r} is not a directory")
    return problems


def _shipped_devices() -> set[str]:
    from orchestrator.latency.table import shipped_table_path

    with open(shipped_table_path()) as f:
        header = f.readline().strip().split(",")
    return {c[len("lat_ms_"):] for c in header if c.startswith("lat_ms_")}


def _is_measurable(name: str) -> bool:
    return name in {"torch-cpu", "onnxrt-cpu", "cuda"} or name.startswith(("sim:", "remote:"))


def parse_config(data: Any, source: str = "<config>") -> PipelineConfig:
    """Validate a mapping; raise ConfigError listing every problem with its path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"  {_loc(err['loc']) or '<top>'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: {len(lines)} problem(s):\n" + "\n".join(lines)) from None
    problems = _semantic_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
    return cfg


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; see experiments/ for examples")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(data, str(path))
