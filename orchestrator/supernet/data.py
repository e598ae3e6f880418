"""Datasets for supernet training and subnet evaluation.

All datasets are in-memory tensors (N, C, H, W) float32, normalised, with a
train and a validation split:

- ``digits``: scikit-learn's handwritten digits (1,797 real 8x8 images that
  ship with scikit-learn), upsampled to the space's resolution and repeated to
  3 channels: the embedded default, offline, seconds on a CPU.
- ``cifar10`` / ``cifar100``: read from a local directory in the standard
  python-pickle format (no download).
- ``synthetic``: random images and labels, for throughput benchmarks.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import DataError
from orchestrator.registry import Registry

log = logging.getLogger(__name__)


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["digits", "cifar10", "cifar100", "synthetic"] = "digits"
    root: str | None = Field(None, description="directory holding the CIFAR python-pickle files")
    resolution: int = Field(32, ge=8)
    val_fraction: float = Field(0.2, gt=0, lt=1, description="digits and synthetic: share held out for validation")
    synthetic_size: int = Field(2048, ge=16)
    num_classes: int = Field(10, ge=2, description="synthetic only")
    max_train: int | None = Field(None, ge=16, description="use only the first N training images (quick runs)")
    seed: int = 0


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    flip: bool = False  # horizontal flips are label-preserving (not for digits)

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (f"Dataset({self.name}: train {tuple(self.x_train.shape)}, val {tuple(self.x_val.shape)}, "
                f"{self.num_classes} classes)")


DATASETS: Registry = Registry("dataset")


def _normalise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x_train.mean((0, 2, 3), keepdim=True)
    std = x_train.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x_train - mean) / std, (x_val - mean) / std


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def _split(n: int, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same share of every class goes to validation."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        rng.shuffle(idx)
        val.extend(idx[: max(1, round(len(idx) * val_fraction))])
    val_idx = np.sort(np.array(val))
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx


@DATASETS.register("digits", help="scikit-learn handwritten digits (real, offline), upsampled")
def load_digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = np.asarray(d.target)
    x = _resize(x, cfg.resolution).repeat(1, 3, 1, 1)
    tr, va = _split(len(y), y, cfg.val_fraction, cfg.seed)
    xt, xv = _normalise(x[tr], x[va])
    yt = torch.tensor(y)
    return Dataset("digits", xt, yt[tr], xv, yt[va], 10)


def _cifar_dir(root: str | None, variant: int) -> Path:
    sub = "cifar-10-batches-py" if variant == 10 else "cifar-100-python"
    need = (["data_batch_1", "...", "data_batch_5", "test_batch"] if variant == 10 else ["train", "test"])
    if root is None:
        raise DataError(f"cifar{variant} needs data.root: a directory holding {sub}/ (or its files {need}) in the "
                        f"python-pickle format from https://www.cs.toronto.edu/~kriz/cifar.html; hwnas does not "
                        f"download")
    base = Path(root).expanduser().resolve()
    probe = "data_batch_1" if variant == 10 else "train"
    for cand in (base / sub, base):
        if (cand / probe).is_file():
            return cand
    raise DataError(f"cifar{variant}: {base} holds neither {sub}/ nor its files {need}; download and extract "
                    f"cifar-{variant}-python.tar.gz there (python-pickle format)")


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR file missing: {path}; extract the complete python-pickle archive there")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a malformed file
        raise DataError(f"{path} is not a CIFAR python-pickle batch ({type(e).__name__}: {e}); re-extract it") from e
    if not isinstance(batch, dict) or b"data" not in batch:
        raise DataError(f"{path} is not a CIFAR python-pickle batch (no b'data' entry)")
    return batch


def _cifar_arrays(batches: list[Path], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for p in batches:
        b = _read_pickle(p)
        if label_key not in b:
            raise DataError(f"{p} has no {label_key!r} labels; is it the right CIFAR variant?")
        data = np.asarray(b[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{p}: data has shape {data.shape}, expected (N, 3072) CIFAR rows")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(b[label_key], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    return x, torch.from_numpy(np.concatenate(ys))


def _load_cifar(cfg: DataConfig, variant: int) -> Dataset:
    d = _cifar_dir(cfg.root, variant)
    if variant == 10:
        xt, yt = _cifar_arrays([d / f"data_batch_{i}" for i in range(1, 6)], b"labels")
        xv, yv = _cifar_arrays([d / "test_batch"], b"labels")
    else:
        xt, yt = _cifar_arrays([d / "train"], b"fine_labels")
        xv, yv = _cifar_arrays([d / "test"], b"fine_labels")
    xt, xv = _normalise(_resize(xt, cfg.resolution), _resize(xv, cfg.resolution))
    log.info("cifar%d from %s: %d train, %d test", variant, d, len(yt), len(yv))
    return Dataset(f"cifar{variant}", xt, yt, xv, yv, variant, flip=True)


@DATASETS.register("cifar10", help="CIFAR-10 from a local python-pickle directory (data.root)")
def load_cifar10(cfg: DataConfig) -> Dataset:
    return _load_cifar(cfg, 10)


@DATASETS.register("cifar100", help="CIFAR-100 from a local python-pickle directory (data.root)")
def load_cifar100(cfg: DataConfig) -> Dataset:
    return _load_cifar(cfg, 100)


@DATASETS.register("synthetic", help="random images and labels (throughput benchmarks only)")
def load_synthetic(cfg: DataConfig) -> Dataset:
    g = torch.Generator().manual_seed(cfg.seed)
    n = cfg.synthetic_size
    x = torch.randn(n, 3, cfg.resolution, cfg.resolution, generator=g)
    y = torch.randint(0, cfg.num_classes, (n,), generator=g)
    n_val = max(1, int(n * cfg.val_fraction))
    return Dataset("synthetic", x[n_val:], y[n_val:], x[:n_val], y[:n_val], cfg.num_classes, flip=True)


def load_dataset(cfg: DataConfig) -> Dataset:
    data = DATASETS.get(cfg.name)(cfg)
    if cfg.max_train is not None:
        data.x_train, data.y_train = data.x_train[: cfg.max_train], data.y_train[: cfg.max_train]
    return data


def _augment(x: torch.Tensor, gen: torch.Generator, flip: bool, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero fill), and horizontal flips if allowed."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])  # (n, w)
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        m = torch.rand(n, generator=gen) < 0.5
        out[m] = out[m].flip(-1)
    return out


def train_batches(data: Dataset, batch_size: int, seed: int, epoch: int, augment: bool = True,
                  drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled training batches; the order depends only on (seed, epoch),
    so a resumed run sees exactly the batches an uninterrupted one does."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    n = len(data.y_train)
    perm = torch.randperm(n, generator=gen)
    stop = n - (n % batch_size if drop_last and n >= batch_size else 0)
    for i in range(0, stop, batch_size):
        idx = perm[i:i + batch_size]
        x = data.x_train[idx]
        if augment:
            x = _augment(x, gen, data.flip)
        yield x, data.y_train[idx]


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    n = len(data.y_train)
    return max(1, n // batch_size) if n >= batch_size else 1
