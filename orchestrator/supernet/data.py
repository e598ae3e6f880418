"""Datasets for supernet training and subnet evaluation.

Every dataset has three splits of images (N, C, H, W), float32, normalised per channel with the mean and
standard deviation of its **training** split:

- ``train``: what the supernet learns from (augmented per batch: random crop with zero padding, horizontal
  flips where they preserve the label);
- ``val``: carved from the training images (a stratified ``val_fraction``, seeded): BatchNorm recalibration
  and subnet ranking read it or the training split, never the test images;
- ``test``: the dataset's own test images where it has them (``None`` for digits, image folders, synthetic),
  for a final report only.

Formats (``DataConfig.name``):

- ``digits``: scikit-learn's handwritten digits (1,797 real 8x8 images that ship with scikit-learn),
  upsampled to the space's resolution and repeated to 3 channels: the embedded default, offline.
- ``npz``: one ``.npz`` file (``root``) with ``x_train``/``y_train``/``x_test``/``y_test``; images uint8
  (N, H, W, C) or (N, H, W), or float (N, C, H, W).
- ``imagefolder``: a directory (``root``) of class sub-folders of image files (a user's own dataset), read
  lazily from disk (never held in memory), batches loaded by ``workers`` DataLoader processes.
- ``cifar10`` / ``cifar100``: a local directory in the standard python-pickle format (no download).
- ``synthetic``: random images and labels, for throughput benchmarks.

Every problem is a :class:`DataError` naming the file or folder and the fix. Deterministic given the seed.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from orchestrator.errors import DataError
from orchestrator.registry import Registry
from orchestrator.supernet.settings import DataConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFiles:
    """Image files read on access: a tensor-like of shape (N, C, H, W) (``len``, ``shape``, indexing by int,
    slice or index tensor returns normalised float32 tensors). Nothing but the paths is held in memory."""

    def __init__(self, paths: Sequence[str], resolution: int, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.resolution = resolution
        self.mean = torch.zeros(3) if mean is None else mean
        self.std = torch.ones(3) if std is None else std

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.resolution, self.resolution)

    def __len__(self) -> int:
        return len(self.paths)

    def raw(self, i: int) -> torch.Tensor:
        """Image ``i`` as (3, H, W) float32 in [0, 1] at the resolution; DataError naming the file if unreadable."""
        from PIL import Image

        path = self.paths[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (self.resolution, self.resolution):
                    im = im.resize((self.resolution, self.resolution), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - any decoding failure is an unreadable file
            raise DataError(f"unreadable image {path} ({type(e).__name__}: {e}); replace or remove it") from e
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0

    def image(self, i: int) -> torch.Tensor:
        return (self.raw(i) - self.mean[:, None, None]) / self.std[:, None, None]

    def subset(self, idx: Sequence[int] | np.ndarray) -> ImageFiles:
        return ImageFiles([self.paths[int(i)] for i in idx], self.resolution, self.mean, self.std)

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, int | np.integer):
            return self.image(int(key))
        if isinstance(key, slice):
            idx = range(*key.indices(len(self)))
        else:
            idx = [int(i) for i in torch.as_tensor(key).reshape(-1)]
        if not idx:
            return torch.empty(0, *self.shape[1:])
        return torch.stack([self.image(i) for i in idx])

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()


Images = torch.Tensor | ImageFiles


@dataclass
class Dataset:
    name: str
    x_train: Images
    y_train: torch.Tensor
    x_val: Images
    y_val: torch.Tensor
    num_classes: int
    flip: bool = False  # horizontal flips are label-preserving (not for digits)
    x_test: Images | None = None
    y_test: torch.Tensor | None = None
    mean: torch.Tensor | None = None  # per-channel statistics of the training split (before normalising)
    std: torch.Tensor | None = None
    crop_padding: int = 4
    workers: int = 0

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def lazy(self) -> bool:
        return isinstance(self.x_train, ImageFiles)

    def __repr__(self) -> str:
        test = f", test {tuple(self.x_test.shape)}" if self.x_test is not None else ""
        return (f"Dataset({self.name}: train {tuple(self.x_train.shape)}, val {tuple(self.x_val.shape)}{test}, "
                f"{self.num_classes} classes)")


DATASETS: Registry = Registry("dataset")


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean((0, 2, 3)), x.std((0, 2, 3)).clamp_min(1e-6)


def _norm(x: torch.Tensor | None, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor | None:
    return None if x is None else (x - mean[None, :, None, None]) / std[None, :, None, None]


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def at_resolution(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Images ``(B, C, H, W)`` scaled (bilinear) to ``resolution x resolution``; unchanged where ``resolution`` is
    None or already theirs (a subnet of an elastic-resolution space runs at its own resolution)."""
    return x if resolution is None else _resize(x, int(resolution))


def _split(n: int, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same share of every class goes to validation (seeded). The training indices are
    in index order; the validation indices are interleaved by class (each class's images spread evenly over the
    order, ties broken at random), so that every prefix of the validation split, which ``eval.max_val``
    evaluates, holds the classes in their shares: in index order, data stored class by class (an image folder
    always, the shared CIFAR-10 npz) put only the first classes in a prefix."""
    rng = np.random.default_rng(seed)
    val, position = [], []
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        rng.shuffle(idx)
        take = idx[: max(1, round(len(idx) * val_fraction))]
        val.extend(take)
        position.extend((np.arange(len(take)) + 0.5) / len(take))  # where in the order: evenly over [0, 1)
    val_idx = np.array(val, dtype=np.int64)[np.lexsort((rng.random(len(val)), np.array(position)))]
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    if len(train_idx) == 0:
        raise DataError(f"{n} training images leave none for training after the validation split "
                        f"(val_fraction {val_fraction}); provide more images or lower val_fraction")
    return train_idx, val_idx


def _limit(train_idx: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """``max_train`` of the training indices, a seeded random subset (files sorted by class would otherwise
    give one class), in index order."""
    if cfg.max_train is None or cfg.max_train >= len(train_idx):
        return train_idx
    rng = np.random.default_rng([cfg.seed, 11])
    return np.sort(rng.choice(train_idx, size=cfg.max_train, replace=False))


def in_memory(name: str, x: torch.Tensor, y: torch.Tensor, cfg: DataConfig, num_classes: int, flip: bool,
              x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
              crop_padding: int = 4) -> Dataset:
    """Images (N, C, H, W) in [0, 1] -> a Dataset: validation carved from ``x`` (stratified, seeded), training
    truncated to ``max_train``, every split normalised with the training split's per-channel statistics."""
    if len(y) == 0:
        raise DataError(f"{name}: no training images; a dataset needs training images to carve a validation "
                        f"split from and to normalise with")
    if len(used := torch.unique(y)) < 2:
        raise DataError(f"{name}: every training label is class {int(used[0])}; a classifier needs at least 2 "
                        f"classes")
    if float(x.amax()) == float(x.amin()):
        raise DataError(f"{name}: every training image is the constant {float(x.amax()):g}; nothing can be "
                        f"learned or ranked on it (check how the images were written)")
    x = _resize(x, cfg.resolution)
    tr, va = _split(len(y), y.numpy(), cfg.val_fraction, cfg.seed)
    tr = _limit(tr, cfg)
    xt = x[tr]
    mean, std = _stats(xt)
    x_test = None if x_test is None else _resize(x_test, cfg.resolution)
    return Dataset(name, _norm(xt, mean, std), y[tr], _norm(x[va], mean, std), y[va], num_classes, flip,
                   _norm(x_test, mean, std), y_test, mean, std,
                   crop_padding if cfg.crop_padding is None else cfg.crop_padding)


@DATASETS.register("digits", help="scikit-learn handwritten digits (real, offline), upsampled")
def load_digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = _resize(x, cfg.resolution).repeat(1, 3, 1, 1)
    # no crop by default: on the quickstart's 4-epoch digits supernet a 2-pixel crop left the top accuracies
    # tied (9 subnets at one value), the fronts of 2 points and 5 of 8 simulated targets at hv_ratio 0.0;
    # without it fronts of 4-8 members and hv_ratio 0.87-1.0 (same seed; docs/benchmarks.md, turn 3 merge)
    return in_memory("digits", x, torch.tensor(d.target, dtype=torch.int64), cfg, 10, flip=False, crop_padding=0)


# -- npz ---------------------------------------------------------------------------


def _npz_images(arr: np.ndarray, path: Path, key: str) -> torch.Tensor:
    if arr.dtype == np.uint8:
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise DataError(f"{path}: {key} is uint8 with shape {arr.shape}; expected (N, H, W, C) with C 1 or 3 "
                            f"(or (N, H, W) grayscale)")
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.ndim != 4 or arr.shape[1] not in (1, 3):
            raise DataError(f"{path}: {key} is {arr.dtype} with shape {arr.shape}; float images must be "
                            f"(N, C, H, W) with C 1 or 3 (uint8 images are (N, H, W, C))")
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            raise DataError(f"{path}: {key} has {int(bad.sum())} pixel values that are nan or infinite (image "
                            f"{int(bad.flatten(1).any(1).nonzero()[0])} first); images must be finite numbers")
    else:
        raise DataError(f"{path}: {key} has dtype {arr.dtype}; expected uint8 (N, H, W, C) or float (N, C, H, W)")
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def _labels(arr: np.ndarray, n: int, path: Path | str, key: str) -> torch.Tensor:
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: {key} must be a 1-D integer array of class indices, got {arr.dtype} {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{path}: {key} has {len(arr)} labels for {n} images")
    if len(arr) and arr.min() < 0:
        raise DataError(f"{path}: {key} has negative class index {arr.min()}; labels are 0..K-1")
    return torch.from_numpy(arr.astype(np.int64))


@DATASETS.register("npz", help="a .npz file (data.root) with x_train, y_train, x_test, y_test")
def load_npz(cfg: DataConfig) -> Dataset:
    if cfg.root is None:
        raise DataError("npz needs data.root: the path of a .npz file with arrays x_train, y_train, x_test, y_test")
    path = Path(cfg.root).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"npz file not found: {path}; set data.root to a .npz file with x_train, y_train, "
                        f"x_test, y_test")
    if not zipfile.is_zipfile(path):  # np.load would read a .npy as one array, and text as "pickled data"
        raise DataError(f"{path} is not an .npz archive (a zip of .npy arrays, as numpy.savez writes); save the "
                        f"dataset with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any failure to read is a malformed file
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from e
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks arrays {missing} (has {sorted(arrays)}); an npz dataset holds x_train, "
                        f"y_train, x_test, y_test")
    x = _npz_images(arrays["x_train"], path, "x_train")
    xt = _npz_images(arrays["x_test"], path, "x_test")
    y = _labels(arrays["y_train"], len(x), path, "y_train")
    yt = _labels(arrays["y_test"], len(xt), path, "y_test")
    if len(y) == 0:
        raise DataError(f"{path}: x_train has no images; a dataset needs training images to carve a validation "
                        f"split from and to normalise with")
    num_classes = int(max(int(y.max()), int(yt.max()) if len(yt) else 0)) + 1
    used = len(np.union1d(y.numpy(), yt.numpy()))
    # the classifier gets num_classes outputs (their cost is part of the latency); one class: in_memory says so
    if used >= 2 and num_classes > 2 * used:
        raise DataError(f"{path}: the labels use {used} classes but the largest is {num_classes - 1}, so the "
                        f"classifier would have {num_classes} outputs; labels are class indices 0..K-1: remap "
                        f"them (np.unique(y, return_inverse=True)) or remove the stray label")
    log.info("npz %s: %d train images, %d test, %d classes", path, len(y), len(yt), num_classes)
    return in_memory("npz", x, y, cfg, num_classes, flip=True, x_test=xt, y_test=yt)


# -- image folder ----------------------------------------------------------------------


def _scan_folder(root: Path) -> tuple[list[str], list[Path], list[int]]:
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}; set data.root to a directory with one sub-folder of "
                        f"images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class sub-folders; put each class's images in a sub-folder named after "
                        f"the class (e.g. {root}/cat/001.png)")
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {root / name} has no images ({', '.join(IMAGE_SUFFIXES)}); add images "
                            f"or remove the folder")
        paths += files
        labels += [c] * len(files)
    return classes, paths, labels


def _check_images(paths: list[Path], resize: bool) -> set[tuple[int, int]]:
    """Open every file's header (cheap): unreadable files and mixed sizes are refused before any work."""
    from PIL import Image

    sizes: dict[tuple[int, int], Path] = {}
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes.setdefault(im.size, p)
        except Exception as e:  # noqa: BLE001 - any failure to identify is an unreadable file
            raise DataError(f"unreadable image {p} ({type(e).__name__}: {e}); replace or remove it") from e
    if len(sizes) > 1 and not resize:
        shown = ", ".join(f"{w}x{h} ({p})" for (w, h), p in list(sizes.items())[:3])
        raise DataError(f"images of {len(sizes)} different sizes ({shown}...); set data.resize: true to resize "
                        f"every image to data.resolution")
    return set(sizes)


@DATASETS.register("imagefolder", help="a directory (data.root) of class sub-folders of images, read lazily")
def load_imagefolder(cfg: DataConfig) -> Dataset:
    if cfg.root is None:
        raise DataError("imagefolder needs data.root: a directory with one sub-folder of images per class")
    root = Path(cfg.root).expanduser().resolve()
    classes, paths, labels = _scan_folder(root)
    if len(classes) < 2:
        raise DataError(f"{root} has one class folder ({classes[0]}); a classifier needs at least 2 classes")
    _check_images(paths, cfg.resize)
    y = np.array(labels, dtype=np.int64)
    tr, va = _split(len(y), y, cfg.val_fraction, cfg.seed)
    tr = _limit(tr, cfg)
    files = ImageFiles(paths, cfg.resolution)
    rng = np.random.default_rng([cfg.seed, 7])
    probe = rng.choice(tr, size=min(len(tr), cfg.norm_images), replace=False)
    mean, std = _stats(torch.stack([files.raw(int(i)) for i in probe]))
    files.mean, files.std = mean, std
    yt = torch.from_numpy(y)
    log.info("imagefolder %s: %d classes, %d train, %d val images (read from disk)", root, len(classes), len(tr),
             len(va))
    return Dataset("imagefolder", files.subset(tr), yt[tr], files.subset(va), yt[va], len(classes), True,
                   mean=mean, std=std, crop_padding=4 if cfg.crop_padding is None else cfg.crop_padding,
                   workers=cfg.workers)


# -- CIFAR python batches -------------------------------------------------------------


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


def _cifar_arrays(batches: list[Path], label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for p in batches:
        b = _read_pickle(p)
        if label_key not in b:
            raise DataError(f"{p} has no {label_key!r} labels; is it the right CIFAR variant?")
        data = np.asarray(b[b"data"])
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{p}: data has shape {data.shape}, expected (N, 3072) CIFAR rows")
        if data.dtype != np.uint8:  # a cast would wrap 300 to 44 and turn floats in [0, 1] into zeros
            if not np.issubdtype(data.dtype, np.integer) or (data.size and (data.min() < 0 or data.max() > 255)):
                lo_hi = f" in [{data.min()}, {data.max()}]" if data.size and data.dtype != object else ""
                raise DataError(f"{p}: data is {data.dtype}{lo_hi}; CIFAR rows are uint8 pixel values 0..255")
            data = data.astype(np.uint8)
        labels = b[label_key]
        try:
            labels = np.asarray(labels)
        except (TypeError, ValueError) as e:
            raise DataError(f"{p}: {label_key.decode()} is not an array of class indices ({e})") from e
        y = _labels(labels, len(data), p, label_key.decode())
        if len(y) and int(y.max()) >= num_classes:
            raise DataError(f"{p}: {label_key.decode()} has class index {int(y.max())}; CIFAR-{num_classes} "
                            f"labels are 0..{num_classes - 1}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    return x, torch.cat(ys)


def _load_cifar(cfg: DataConfig, variant: int) -> Dataset:
    d = _cifar_dir(cfg.root, variant)
    if variant == 10:
        x, y = _cifar_arrays([d / f"data_batch_{i}" for i in range(1, 6)], b"labels", 10)
        xt, yt = _cifar_arrays([d / "test_batch"], b"labels", 10)
    else:
        x, y = _cifar_arrays([d / "train"], b"fine_labels", 100)
        xt, yt = _cifar_arrays([d / "test"], b"fine_labels", 100)
    log.info("cifar%d from %s: %d train, %d test", variant, d, len(y), len(yt))
    return in_memory(f"cifar{variant}", x, y, cfg, variant, flip=True, x_test=xt, y_test=yt)


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
    xt, yt = x[n_val:], y[n_val:]
    if cfg.max_train is not None:
        xt, yt = xt[: cfg.max_train], yt[: cfg.max_train]
    return Dataset("synthetic", xt, yt, x[:n_val], y[:n_val], cfg.num_classes, flip=True,
                   crop_padding=4 if cfg.crop_padding is None else cfg.crop_padding)


def load_dataset(cfg: DataConfig) -> Dataset:
    return DATASETS.get(cfg.name)(cfg)


# -- batches -----------------------------------------------------------------------------


def augment_batch(x: torch.Tensor, gen: torch.Generator, flip: bool, pad: int = 4,
            fill: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop of the image padded by ``pad`` pixels on every side (the standard CIFAR augmentation), and
    horizontal flips (probability 0.5) if ``flip``. ``fill`` (C,): the padding value per channel (the
    normalised value of a black pixel; zeros if None). x: (N, C, H, W); returns the same shape."""
    n, c, h, w = x.shape
    if pad > 0:
        xp = (torch.zeros(c) if fill is None else fill).to(x.dtype).view(1, c, 1, 1).expand(
            n, c, h + 2 * pad, w + 2 * pad).clone()
        xp[:, :, pad:pad + h, pad:pad + w] = x
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])  # (n, h)
        cols = (dx[:, None] + torch.arange(w)[None, :])  # (n, w)
        out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    else:
        out = x.clone()
    if flip:
        m = torch.rand(n, generator=gen) < 0.5
        out[m] = out[m].flip(-1)
    return out


def batch_bounds(n: int, batch_size: int, drop_last: bool) -> list[tuple[int, int]]:
    """[start, stop) of each batch over ``n`` items: never a batch of one when n >= 2 (BatchNorm in training
    mode cannot normalise a single image at 1x1 resolution); a last batch of one joins the batch before it.
    With ``drop_last`` (and n >= batch_size) the incomplete last batch is left out; with n < batch_size
    there is one batch of all n."""
    if n <= 0:
        return []
    if n < batch_size:
        return [(0, n)]
    stop = n - (n % batch_size) if drop_last else n
    bounds = [(i, min(i + batch_size, stop)) for i in range(0, stop, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], bounds[-1][1])
        bounds.pop()
    return bounds


class _Items(torch.utils.data.Dataset):
    """One normalised image per index (DataLoader workers read the files)."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.files.image(i)


def _load_batches(x: Images, index_batches: list[torch.Tensor], workers: int) -> Iterator[torch.Tensor]:
    if not isinstance(x, ImageFiles):
        for idx in index_batches:
            yield x[idx]
        return
    loader = torch.utils.data.DataLoader(_Items(x), batch_sampler=[b.tolist() for b in index_batches],
                                         num_workers=workers, persistent_workers=False)
    yield from loader


def train_batches(data: Dataset, batch_size: int, seed: int, epoch: int, augment: bool = True,
                  drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled training batches (x (B, C, H, W), y (B,)); the order and the augmentation depend
    only on (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one does. No batch has
    a single image (see :func:`batch_bounds`)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**64)  # any Seed (torch takes < 2**64)
    n = len(data.y_train)
    perm = torch.randperm(n, generator=gen)
    index_batches = [perm[a:b] for a, b in batch_bounds(n, batch_size, drop_last)]
    fill = None if data.mean is None else -data.mean / data.std
    for idx, x in zip(index_batches, _load_batches(data.x_train, index_batches, data.workers), strict=True):
        if augment:
            x = augment_batch(x, gen, data.flip, data.crop_padding, fill)
        yield x, data.y_train[idx]


def eval_batches(x: Images, y: torch.Tensor, batch_size: int, workers: int = 0, limit: int | None = None,
                 order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Images unaugmented, in batches (x (B, C, H, W), y (B,)): the first ``limit`` in order, or the indices
    ``order``; never a batch of one (see :func:`batch_bounds`)."""
    if order is None:
        order = torch.arange(len(y) if limit is None else min(limit, len(y)))
    index_batches = [order[a:b] for a, b in batch_bounds(len(order), batch_size, drop_last=False)]
    for idx, xb in zip(index_batches, _load_batches(x, index_batches, workers), strict=True):
        yield xb, y[idx]


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    return max(1, len(batch_bounds(len(data.y_train), batch_size, drop_last=True)))
