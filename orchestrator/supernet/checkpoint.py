"""Atomic training checkpoints.

A checkpoint is written to a temporary file next to its target, flushed and
fsynced, then renamed over the target (and the directory fsynced), so a crash
leaves either the old or the new checkpoint, never half of one. Temporary files
a crash left behind are removed when training starts. Checkpoints hold only
tensors and plain Python values and load with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orchestrator.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = "hwnas-supernet-checkpoint"
VERSION = 1
TMP_MARK = ".tmp-"


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format and version) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    data = {"format": FORMAT, "version": VERSION, **payload}
    with open(tmp, "wb") as f:
        torch.save(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def clean_stale_temp_files(directory: str | Path) -> list[Path]:
    """Remove temporary checkpoint files (``.<name>.tmp-<pid>``) a crash left in ``directory``."""
    d = Path(directory)
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if p.is_file() and p.name.startswith(".") and TMP_MARK in p.name:
                p.unlink()
                removed.append(p)
    if removed:
        log.warning("removed %d stale temporary checkpoint file(s) in %s", len(removed), d)
    return removed


def load_checkpoint(path: str | Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    ``expect`` maps keys to the values the checkpoint must hold (e.g. the space
    and its settings): a checkpoint of another run is refused, naming the file
    and the first difference.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for truncated/foreign files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}); it is truncated "
            f"or not an hwnas checkpoint: delete it to start over, or point to another file"
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an hwnas supernet checkpoint (no format marker {FORMAT!r})")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')!r}; this hwnas reads {VERSION}")
    for key, want in (expect or {}).items():
        if data.get(key) != want:
            raise CheckpointError(
                f"{path} belongs to another run: its {key} is {data.get(key)!r}, this run's is {want!r}; use another "
                f"checkpoint directory or the matching configuration"
            )
    return data


def rng_state(np_rng: np.random.Generator) -> dict[str, Any]:
    """Every random state a training step touches."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_generator": np_rng.bit_generator.state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], np_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = state["numpy_generator"]
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
