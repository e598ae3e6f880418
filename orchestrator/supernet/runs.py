"""A supernet run directory: ``run.json`` (space spec, data and training settings) and the checkpoint.

``hwnas supernet train`` writes one; ``evaluate``, ``export`` and the pipeline
(``accuracy.supernet.checkpoint``) load the trained weights back with
:func:`load_trained`, which checks the checkpoint against the run's settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.supernet.data import DataConfig, Dataset, load_dataset
from orchestrator.supernet.spec import one_shot_space, with_classes
from orchestrator.supernet.train import CHECKPOINT_NAME, TrainConfig
from search_spaces.base import SpaceSpec

RUN_FILE = "run.json"


@dataclass(frozen=True)
class SupernetRun:
    directory: Path
    space: SpaceSpec
    data: DataConfig
    train: TrainConfig

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT_NAME

    def as_dict(self) -> dict[str, Any]:
        return {"space": self.space.model_dump(), "data": self.data.model_dump(), "train": self.train.model_dump()}


def create_run(directory: str | Path, space: SpaceSpec, data: DataConfig, train: TrainConfig) -> SupernetRun:
    """Write ``run.json`` (or check that the directory holds a run with these same settings)."""
    run = SupernetRun(Path(directory), space, data, train)
    f = run.directory / RUN_FILE
    if f.exists() and json.loads(f.read_text()) != run.as_dict():
        raise ConfigError(f"{run.directory} holds a run with other settings ({f}); use another --out")
    run.directory.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(run.as_dict(), indent=2))
    return run


def open_run(directory: str | Path) -> SupernetRun:
    d = Path(directory)
    f = d / RUN_FILE
    if not f.is_file():
        raise ConfigError(f"{d} is not a supernet run directory (no {RUN_FILE}); create one with "
                          f"'hwnas supernet train --out {d}'")
    try:
        raw = json.loads(f.read_text())
        return SupernetRun(d, SpaceSpec(**raw["space"]), DataConfig(**raw["data"]), TrainConfig(**raw["train"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{f}: not a run file of this hwnas ({e}); train again into a new --out") from None


def load_trained(directory: str | Path) -> tuple[SpaceSpec, dict[str, Any], Dataset]:
    """(the trained space's spec, its state_dict, the dataset) of a finished or partial run; the checkpoint is
    loaded with ``weights_only=True`` and must match the run's space."""
    from orchestrator.supernet.checkpoint import load_checkpoint

    run = open_run(directory)
    data = load_dataset(run.data)
    spec = one_shot_space(with_classes(run.space, data.num_classes)).spec()
    state = load_checkpoint(run.checkpoint, expect={"space": spec.model_dump()})["model"]
    return spec, state, data
