"""Datasets (issue 20): npz, image folders, CIFAR batches, digits; splits, normalisation, augmentation,
batches without a single image (issue 17), and the errors of each format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.errors import DataError
from orchestrator.supernet.data import (
    DataConfig,
    ImageFiles,
    augment_batch,
    batch_bounds,
    eval_batches,
    load_dataset,
    train_batches,
)
from orchestrator.supernet.evaluate import EvalConfig, calibration_batches

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_20k_10k.npz"


def write_npz(path, n=60, n_test=20, size=8, float_chw=False, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    xt = rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8)
    if float_chw:
        x, xt = x.transpose(0, 3, 1, 2).astype(np.float32) / 255, xt.transpose(0, 3, 1, 2).astype(np.float32) / 255
    y = np.arange(n) % classes
    yt = np.arange(n_test) % classes
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def write_folder(root, classes=("cat", "dog"), per_class=6, size=(8, 8), seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i:03d}.png")
    return root


# -- npz -----------------------------------------------------------------------------


def test_npz_uint8_hwc_splits_and_normalisation(tmp_path):
    p = write_npz(tmp_path / "d.npz")
    data = load_dataset(DataConfig(name="npz", root=str(p), resolution=8, val_fraction=0.25))
    # validation carved from the 60 training images (25 % of each of 3 classes), test kept apart
    assert len(data.y_train) == 45 and len(data.y_val) == 15 and len(data.y_test) == 20
    assert data.x_train.shape == (45, 3, 8, 8) and data.num_classes == 3
    assert np.bincount(data.y_val.numpy()).tolist() == [5, 5, 5]
    # normalised with the training split's per-channel statistics
    assert torch.allclose(data.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(data.x_train.std((0, 2, 3)), torch.ones(3), atol=1e-4)
    raw = np.load(p)
    x0 = torch.from_numpy(raw["x_test"][0]).permute(2, 0, 1).float() / 255
    assert torch.allclose(data.x_test[0], (x0 - data.mean[:, None, None]) / data.std[:, None, None], atol=1e-5)
    # deterministic given the seed; another seed carves another validation split
    again = load_dataset(DataConfig(name="npz", root=str(p), resolution=8, val_fraction=0.25))
    assert torch.equal(again.x_val, data.x_val)
    other = load_dataset(DataConfig(name="npz", root=str(p), resolution=8, val_fraction=0.25, seed=1))
    assert not torch.equal(other.x_val, data.x_val)


def test_every_prefix_of_the_validation_split_holds_the_classes_in_their_shares(tmp_path):
    """``eval.max_val`` evaluates the first N validation images: with data stored class by class (an image
    folder always; the shared CIFAR-10 npz), the validation split in index order gave a prefix of the first
    classes only (1,000 of the shared npz's 2,000: classes 0-4, so a one-shot accuracy was a 5-class one)."""
    x = np.random.default_rng(0).integers(0, 256, (160, 8, 8, 3), dtype=np.uint8)
    y = np.repeat(np.arange(4), 40)  # sorted by class: 40 images each
    np.savez(tmp_path / "sorted.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    data = load_dataset(DataConfig(name="npz", root=str(tmp_path / "sorted.npz"), resolution=8, val_fraction=0.25))
    yv = data.y_val.numpy()
    assert np.bincount(yv).tolist() == [10, 10, 10, 10]
    for m in range(1, len(yv) + 1):  # every prefix: each class within one image of its share
        assert np.abs(np.bincount(yv[:m], minlength=4) - m / 4).max() < 1, (m, yv[:m])
    uneven = np.concatenate([np.zeros(80, np.int64), np.ones(40, np.int64), np.full(40, 2)])  # shares 2:1:1
    np.savez(tmp_path / "uneven.npz", x_train=x, y_train=uneven, x_test=x[:8], y_test=y[:8])
    yv = load_dataset(DataConfig(name="npz", root=str(tmp_path / "uneven.npz"), resolution=8,
                                 val_fraction=0.25)).y_val.numpy()
    assert np.bincount(yv).tolist() == [20, 10, 10]
    for m in range(1, len(yv) + 1):
        assert np.abs(np.bincount(yv[:m], minlength=3) - m * np.array([0.5, 0.25, 0.25])).max() < 1.5, (m, yv[:m])
    folder = load_dataset(DataConfig(name="imagefolder", root=str(write_folder(tmp_path / "f", ("a", "b", "c"), 8)),
                                     resolution=8, val_fraction=0.5))
    assert sorted(folder.y_val[:3].tolist()) == [0, 1, 2]


def test_npz_float_chw_equals_uint8_hwc(tmp_path):
    a = load_dataset(DataConfig(name="npz", root=str(write_npz(tmp_path / "a.npz")), resolution=8))
    b = load_dataset(DataConfig(name="npz", root=str(write_npz(tmp_path / "b.npz", float_chw=True)), resolution=8))
    assert torch.allclose(a.x_train, b.x_train, atol=1e-5) and torch.equal(a.y_val, b.y_val)


def test_npz_errors(tmp_path):
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset(DataConfig(name="npz"))
    with pytest.raises(DataError, match="not found.*nope.npz"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "nope.npz")))
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"lacks arrays \['x_test', 'y_test'\]"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "partial.npz")))
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((4, 3, 8, 8), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((4, 3, 8, 8), np.uint8), y_test=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"x_train is uint8 with shape \(4, 3, 8, 8\)"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "shape.npz")))
    np.savez(tmp_path / "labels.npz", x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.zeros(3, np.int64),
             x_test=np.zeros((4, 8, 8, 3), np.uint8), y_test=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="y_train has 3 labels for 4 images"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "labels.npz")))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk.npz is not an .npz archive .*np.savez\(path, x_train="):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "junk.npz")))


def test_npz_refuses_a_text_file_an_npy_file_one_class_and_a_stray_label(tmp_path):
    """A CSV or a single .npy saved under an .npz name (NumPy's own error spoke of pickled data or of a missing
    attribute), one class only (the image-folder reader refused it, the npz reader did not), and one stray
    label far beyond the others (the classifier got 1,000,001 outputs)."""
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    np.save(tmp_path / "one.npy", np.zeros((4, 8, 8, 3), np.uint8))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    for name in ("text.npz", "one.npz"):
        with pytest.raises(DataError, match=f"{name} is not an .npz archive"):
            load_dataset(DataConfig(name="npz", root=str(tmp_path / name)))
    x = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "oneclass.npz", x_train=x, y_train=np.full(12, 3), x_test=x, y_test=np.full(12, 3))
    with pytest.raises(DataError, match="every training label is class 3; a classifier needs at least 2 classes"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "oneclass.npz")))
    y = np.arange(12) % 3
    stray = y.copy()
    stray[5] = 1_000_000
    np.savez(tmp_path / "stray.npz", x_train=x, y_train=y, x_test=x, y_test=stray)
    with pytest.raises(DataError, match=r"labels use 4 classes but the largest is 1000000.*1000001 outputs.*"
                                        r"remap them"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "stray.npz")))
    np.savez(tmp_path / "gap.npz", x_train=x, y_train=y * 2, x_test=x, y_test=y * 2)  # 0, 2, 4: 5 outputs, kept
    assert load_dataset(DataConfig(name="npz", root=str(tmp_path / "gap.npz"), val_fraction=0.25)).num_classes == 5


# -- image folder -----------------------------------------------------------------------


def test_imagefolder_is_lazy_and_matches_the_files(tmp_path):
    from PIL import Image

    root = write_folder(tmp_path / "imgs", classes=("cat", "dog", "eel"), per_class=8)
    data = load_dataset(DataConfig(name="imagefolder", root=str(root), resolution=8, val_fraction=0.25))
    assert data.lazy and isinstance(data.x_train, ImageFiles) and isinstance(data.x_val, ImageFiles)
    assert data.num_classes == 3 and len(data.y_train) == 18 and len(data.y_val) == 6 and data.x_test is None
    assert data.x_train.shape == (18, 3, 8, 8)
    # an image read on access is the file's pixels, normalised with the training statistics
    path = data.x_val.paths[0]
    px = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
    assert torch.allclose(data.x_val[0], (px - data.mean[:, None, None]) / data.std[:, None, None], atol=1e-6)
    assert data.y_val[0].item() == ["cat", "dog", "eel"].index(Path(path).parent.name)
    # training batches through DataLoader workers equal those read in process
    inproc = list(train_batches(data, 8, seed=0, epoch=0))
    data.workers = 2
    workers = list(train_batches(data, 8, seed=0, epoch=0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(inproc, workers, strict=True))
    assert len(inproc) == 2 and inproc[0][0].shape == (8, 3, 8, 8)


def test_imagefolder_resize(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=3, size=(8, 8))
    write_folder(tmp_path / "more", classes=("cat",), per_class=1, size=(12, 10), seed=1)
    (tmp_path / "more" / "cat" / "000.png").rename(root / "cat" / "big.png")
    with pytest.raises(DataError, match=r"2 different sizes.*data.resize: true"):
        load_dataset(DataConfig(name="imagefolder", root=str(root), resolution=8))
    data = load_dataset(DataConfig(name="imagefolder", root=str(root), resolution=16, resize=True))
    assert data.x_train.shape[1:] == (3, 16, 16)
    assert next(eval_batches(data.x_train, data.y_train, 2))[0].shape == (2, 3, 16, 16)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found.*missing"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "missing")))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "flat")))
    root = write_folder(tmp_path / "imgs", per_class=3)
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*empty has no images"):
        load_dataset(DataConfig(name="imagefolder", root=str(root)))
    (root / "empty" / "notes.txt").unlink()
    (root / "empty").rmdir()
    (root / "dog" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"unreadable image .*dog/broken.png"):
        load_dataset(DataConfig(name="imagefolder", root=str(root)))


# -- CIFAR python batches, digits ----------------------------------------------------------


def write_fake_cifar(root, n_per_batch=20):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": (np.arange(n_per_batch) % 10).tolist()}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


def test_cifar_validation_is_carved_from_training_images(tmp_path):
    d = write_fake_cifar(tmp_path)
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert len(data.y_train) == 80 and len(data.y_val) == 20 and len(data.y_test) == 20
    with open(d / "test_batch", "rb") as f:
        test = np.asarray(pickle.load(f, encoding="bytes")[b"data"]).reshape(-1, 3, 32, 32)
    raw_val = data.x_val * data.std[None, :, None, None] + data.mean[None, :, None, None]
    test_t = torch.from_numpy(test).float() / 255
    # no validation image is a test image
    assert not any(torch.allclose(v, t, atol=1e-4) for v in raw_val for t in test_t)


def _rewrite_batch(d, name, **entries):
    with open(d / name, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch.update({k.encode(): v for k, v in entries.items()})
    with open(d / name, "wb") as f:
        pickle.dump(batch, f)


@pytest.mark.parametrize("entries, error", [
    ({"labels": list(range(10)) * 1 + [0] * 5}, r"data_batch_2: labels has 15 labels for 20 images"),
    ({"labels": [-1] + [0] * 19}, r"data_batch_2: labels has negative class index -1"),
    ({"labels": [10] + [0] * 19}, r"data_batch_2: labels has class index 10; CIFAR-10 labels are 0..9"),
    ({"labels": ["cat"] * 20}, r"data_batch_2: labels must be a 1-D integer array"),
    ({"labels": {"a": 1}}, r"data_batch_2: labels must be a 1-D integer array"),
    ({"data": np.full((20, 3072), 0.5, np.float32)}, r"data_batch_2: data is float32 in \[0.5, 0.5\]; CIFAR rows "
                                                      r"are uint8 pixel values 0..255"),
    ({"data": np.full((20, 3072), 300, np.int64)}, r"data is int64 in \[300, 300\]"),
])
def test_cifar_batches_refuse_what_a_cast_or_a_split_would_silently_change(tmp_path, entries, error):
    """Labels fewer than images (they were split on the labels' count: every later image took another's label),
    labels outside 0..9 or not integers, pixels that are not uint8 0..255 (float [0, 1] became zeros, 300
    wrapped to 44): each refused naming the batch file, as the npz reader does (found by a break test)."""
    d = write_fake_cifar(tmp_path)
    _rewrite_batch(d, "data_batch_2", **entries)
    with pytest.raises(DataError, match=error):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_cifar_integer_pixels_in_range_are_read_as_uint8(tmp_path):
    d = write_fake_cifar(tmp_path)
    before = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    with open(d / "data_batch_2", "rb") as f:
        data = pickle.load(f, encoding="bytes")[b"data"]
    _rewrite_batch(d, "data_batch_2", data=data.astype(np.int64), labels=np.arange(20) % 10)
    after = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert torch.equal(before.x_train, after.x_train) and torch.equal(before.y_train, after.y_train)


def test_npz_refuses_non_finite_constant_and_empty_images(tmp_path):
    """nan or inf pixels, every image the same constant, no training image: each refused before any work (a
    zero-cost estimate on them gave every architecture the same floor score, rc 0; an empty split a bare
    RuntimeError)."""
    x = np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)
    y = np.arange(6) % 2
    bad = x.copy()
    bad[4, 1, 2, 3] = np.inf
    np.savez(tmp_path / "inf.npz", x_train=bad, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=r"x_train has 1 pixel values that are nan or infinite \(image 4 first\)"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "inf.npz")))
    np.savez(tmp_path / "nan.npz", x_train=x, y_train=y, x_test=np.full_like(x, np.nan), y_test=y)
    with pytest.raises(DataError, match=r"x_test has 1152 pixel values that are nan"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "nan.npz")))
    np.savez(tmp_path / "const.npz", x_train=np.zeros((6, 8, 8, 3), np.uint8), y_train=y,
             x_test=np.zeros((6, 8, 8, 3), np.uint8), y_test=y)
    with pytest.raises(DataError, match="every training image is the constant 0"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "const.npz")))
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((0, 8, 8, 3), np.uint8), y_train=np.zeros(0, np.int64),
             x_test=np.zeros((6, 8, 8, 3), np.uint8), y_test=y)
    with pytest.raises(DataError, match="empty.npz: x_train has no images"):
        load_dataset(DataConfig(name="npz", root=str(tmp_path / "empty.npz")))


def test_digits_default_is_unchanged_in_size():
    data = load_dataset(DataConfig())
    assert len(data.y_train) + len(data.y_val) == 1797 and data.x_test is None and not data.flip


# -- augmentation and batches ------------------------------------------------------------------


def test_augmentation_is_a_padded_crop_and_flip():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = augment_batch(x, torch.Generator().manual_seed(0), flip=True, pad=2, fill=fill)
    for i in range(2):
        padded = fill.view(3, 1, 1).expand(3, 10, 10).clone()
        padded[:, 2:8, 2:8] = x[i]
        crops = [padded[:, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_no_augmentation_at_evaluation(tmp_path):
    p = write_npz(tmp_path / "d.npz")
    data = load_dataset(DataConfig(name="npz", root=str(p), resolution=8))
    xb, yb = next(eval_batches(data.x_val, data.y_val, 5))
    assert torch.equal(xb, data.x_val[:5]) and torch.equal(yb, data.y_val[:5])
    calib = calibration_batches(data, EvalConfig(calib_batches=1, calib_batch_size=4))
    assert any(torch.equal(calib[0][0], row) for row in data.x_train)
    augmented = next(train_batches(data, 8, seed=0, epoch=0))[0]
    unaugmented = next(train_batches(data, 8, seed=0, epoch=0, augment=False))[0]
    assert not torch.equal(augmented, unaugmented)
    assert all(any(torch.equal(u, row) for row in data.x_train) for u in unaugmented)


@pytest.mark.parametrize("n, bs, drop_last, expect", [
    (65, 64, False, [(0, 65)]),
    (65, 64, True, [(0, 64)]),
    (129, 64, False, [(0, 64), (64, 129)]),
    (130, 64, False, [(0, 64), (64, 128), (128, 130)]),
    (10, 64, True, [(0, 10)]),
    (1, 4, False, [(0, 1)]),
])
def test_batch_bounds_never_leave_one_image(n, bs, drop_last, expect):
    assert batch_bounds(n, bs, drop_last) == expect


def test_calibration_never_has_a_batch_of_one():
    for n in (65, 129, 17):
        data = load_dataset(DataConfig(max_train=n))
        sizes = [len(b) for b in calibration_batches(data, EvalConfig(calib_batches=8, calib_batch_size=64))]
        assert sum(sizes) == n and min(sizes) >= 2, sizes
        sizes = [len(y) for _, y in train_batches(data, 16, seed=0, epoch=0, drop_last=False)]
        assert sum(sizes) == n and min(sizes) >= 2


def test_mobilenet_supernet_on_65_images_evaluates():
    """Issue 17: --max-train 65 then evaluation: BatchNorm recalibration on 65 = 64 + 1 images failed ("Expected
    more than 1 value per channel", the last stage is 1x1). The weights do not matter to the failure, so the
    supernet is evaluated as built (trained weights go through the same recalibration)."""
    from orchestrator.supernet.evaluate import evaluate_subnet
    from orchestrator.supernet.spec import one_shot_space, with_classes
    from search_spaces.base import SpaceSpec

    data = load_dataset(DataConfig(max_train=65))
    space = one_shot_space(with_classes(SpaceSpec(name="mobilenetv3", options={
        "width_mult": 0.25, "resolution": 32, "feature_dim": 64}), 10))
    sup = space.build_supernet()
    cfg = EvalConfig(calib_batches=8, calib_batch_size=64, max_val=40)
    assert [len(b) for b in calibration_batches(data, cfg)] == [65]
    for arch in (space.largest(), space.smallest()):
        res = evaluate_subnet(space, sup, arch, data, cfg)
        assert 0.0 <= res.accuracy <= 1.0 and res.n_val == 40


# -- the shared real CIFAR-10 ---------------------------------------------------------------


@pytest.mark.skipif(not SHARED_NPZ.is_file(), reason="../shared/data/cifar10_20k_10k.npz not present")
def test_shared_cifar10_npz():
    data = load_dataset(DataConfig(name="npz", root=str(SHARED_NPZ), val_fraction=0.1, max_train=2000))
    assert data.num_classes == 10 and len(data.y_val) == 2000 and len(data.y_test) == 10000
    assert len(data.y_train) == 2000 and np.bincount(data.y_val.numpy()).tolist() == [200] * 10
    # the published CIFAR-10 channel means (0.491, 0.482, 0.447), on a 2,000-image training split
    assert torch.allclose(data.mean, torch.tensor([0.491, 0.482, 0.447]), atol=0.01)

