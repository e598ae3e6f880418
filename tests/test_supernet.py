"""Supernet engine: data, training, checkpoints and resume, evaluation, export (in process)."""

import pickle

import numpy as np
import pytest
import torch

from orchestrator.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from orchestrator.supernet.checkpoint import TMP_MARK, clean_stale_temp_files, load_checkpoint, save_checkpoint
from orchestrator.supernet.data import DATASETS, DataConfig, load_dataset, train_batches
from orchestrator.supernet.evaluate import EvalConfig, evaluate_subnet
from orchestrator.supernet.export import export_subnet, verify_export
from orchestrator.supernet.spec import one_shot_space, with_classes
from orchestrator.supernet.train import SupernetTrainer, TrainConfig, lr_factor
from search_spaces.base import SpaceSpec

TINY = {"width_mult": 0.25, "resolution": 32, "feature_dim": 64}


def make_trainer(tmp_path, epochs=2, max_train=128, name="mobilenetv3", options=None, lr=0.05, **train):
    data = load_dataset(DataConfig(max_train=max_train))
    spec = with_classes(SpaceSpec(name=name, options=TINY if options is None else options), data.num_classes)
    cfg = TrainConfig(**{"epochs": epochs, "batch_size": 32, "lr": lr, "n_random": 1, **train})
    return SupernetTrainer(one_shot_space(spec), data, cfg, tmp_path / "ck")


# -- data ---------------------------------------------------------------------


def test_digits_default():
    data = load_dataset(DataConfig())
    assert data.x_train.shape[1:] == (3, 32, 32) and len(data.x_train) + len(data.x_val) == 1797
    assert data.num_classes == 10
    # stratified: every class is in validation in about the same share
    counts = np.bincount(data.y_val.numpy(), minlength=10)
    assert counts.min() >= 30
    again = load_dataset(DataConfig())
    assert torch.equal(again.y_val, data.y_val)


def test_batches_depend_only_on_seed_and_epoch():
    data = load_dataset(DataConfig(max_train=100))
    a = [y for _, y in train_batches(data, 32, seed=1, epoch=3)]
    b = [y for _, y in train_batches(data, 32, seed=1, epoch=3)]
    c = [y for _, y in train_batches(data, 32, seed=1, epoch=4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    assert len(a) == 3  # drop_last


def write_fake_cifar(root, n_per_batch=20):
    """Files in the real CIFAR-10 python-pickle layout (random pixels)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n_per_batch).tolist()}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


def test_cifar_reader(tmp_path):
    write_fake_cifar(tmp_path)
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    # validation carved from the 100 training images; the 20 test images kept apart (issue 20)
    assert data.x_train.shape[1:] == (3, 32, 32) and len(data.x_train) + len(data.x_val) == 100
    assert data.x_test.shape == (20, 3, 32, 32) and data.flip


def test_cifar_errors_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset(DataConfig(name="cifar10"))
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    d = write_fake_cifar(tmp_path)
    (d / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_dataset_registry_names_valid_choices():
    with pytest.raises(UnknownNameError, match="digits"):
        DATASETS.get("mnist")


# -- training -------------------------------------------------------------------


def test_lr_schedule():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_config_errors():
    from orchestrator.supernet.train import resolve_device

    with pytest.raises(ValueError, match="extra"):
        TrainConfig(epochz=3)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_space_and_data_class_mismatch(tmp_path):
    data = load_dataset(DataConfig(max_train=64))
    spec = SpaceSpec(name="mobilenetv3", options={**TINY, "num_classes": 5})
    with pytest.raises(ConfigError, match="num_classes"):
        SupernetTrainer(one_shot_space(spec), data, TrainConfig(epochs=1), tmp_path)


def test_resumed_run_matches_uninterrupted(tmp_path):
    """Stop after one epoch, resume in a fresh trainer: identical weights to a straight two-epoch run."""
    torch.set_num_threads(1)
    straight = make_trainer(tmp_path / "a")
    straight.fit()
    first = make_trainer(tmp_path / "b")
    first.fit(stop_after=1)
    assert first.epoch == 1
    resumed = make_trainer(tmp_path / "b")
    summary = resumed.fit()
    assert summary["epoch"] == 2 and len(summary["history"]) == 2
    for (k, a), (_, b) in zip(straight.net.state_dict().items(), resumed.net.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert straight.rng.bit_generator.state == resumed.rng.bit_generator.state


def test_checkpoint_is_atomic_and_validated(tmp_path):
    p = save_checkpoint(tmp_path / "last.pt", {"x": torch.ones(3), "rng": {"a": 2**100}, "space": "a"})
    assert not [f for f in tmp_path.iterdir() if TMP_MARK in f.name]
    assert torch.equal(load_checkpoint(p)["x"], torch.ones(3))
    # stale temp files from a crash are cleaned; other files are left alone
    (tmp_path / f".last.pt{TMP_MARK}999").write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("mine")
    assert len(clean_stale_temp_files(tmp_path)) == 1 and (tmp_path / "keep.txt").exists()
    # truncated
    data = p.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(bad)
    # foreign: a torch file that is not an hwnas checkpoint
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not an hwnas"):
        load_checkpoint(foreign)
    # another run's checkpoint
    with pytest.raises(CheckpointError, match="another run"):
        load_checkpoint(p, expect={"space": "b"})


def test_resume_refuses_other_runs_checkpoint(tmp_path):
    make_trainer(tmp_path, epochs=1).fit()
    other = make_trainer(tmp_path, epochs=1, options={**TINY, "width_mult": 0.35})
    with pytest.raises(CheckpointError, match="another run"):
        other.fit()


@pytest.mark.slow
def test_training_learns_and_evaluation_is_real(tmp_path):
    """A short run on digits: the largest subnet beats chance clearly after BN recalibration."""
    torch.set_num_threads(2)
    tr = make_trainer(tmp_path, epochs=4, max_train=640, lr=0.1)
    hist = tr.fit()["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    res = evaluate_subnet(tr.space, tr.net, tr.space.largest(), tr.data, EvalConfig(calib_batches=4))
    assert res.accuracy > 0.5 and res.n_val == len(tr.data.y_val)


def test_nb201_trains_with_the_same_trainer(tmp_path):
    tr = make_trainer(tmp_path, epochs=1, name="nb201", options={"channels": 4, "cells_per_stage": 1},
                      max_train=64)
    assert tr.fit()["epoch"] == 1
    res = evaluate_subnet(tr.space, tr.net, tr.space.sample(np.random.default_rng(0)), tr.data,
                          EvalConfig(calib_batches=1, max_val=50))
    assert 0.0 <= res.accuracy <= 1.0 and res.n_val == 50


def test_uniform_sampling_trains_random_paths_from_the_labels(tmp_path, monkeypatch):
    """``sampling: uniform`` (SPOS): each step's subnets are n_random random ones (no largest, no smallest), each
    from the labels (no distillation: there is no teacher)."""
    import orchestrator.supernet.train as train_mod

    tr = make_trainer(tmp_path, epochs=1, name="nb201", options={"channels": 4, "cells_per_stage": 1},
                      max_train=64, sampling="uniform", n_random=2)
    archs = tr.sandwich()
    assert len(archs) == 2 and tr.space.largest() not in archs and tr.space.smallest() not in archs
    soft = []
    monkeypatch.setattr(train_mod, "soft_cross_entropy", lambda *a: soft.append(1) or a[0].sum())
    x, y = next(iter(train_batches(tr.data, 32, seed=0, epoch=0)))
    loss = tr.step(x, y)
    assert np.isfinite(loss) and not soft  # never distilled
    sandwich = make_trainer(tmp_path / "s", epochs=1, name="nb201", options={"channels": 4, "cells_per_stage": 1},
                            max_train=64)
    sandwich.step(x, y)
    assert len(soft) == 2  # the sandwich distils its smallest and its random subnet
    with pytest.raises(Exception, match="sampling"):
        TrainConfig(sampling="fair")


# -- export ----------------------------------------------------------------------


@pytest.mark.parametrize("name, options", [("mobilenetv3", {**TINY, "num_classes": 10}),
                                           ("nb201", {"channels": 4, "cells_per_stage": 1}),
                                           ("fbnet", {"width_mult": 0.25, "resolution": 16, "num_classes": 10})])
def test_export_reproduces_subnet(tmp_path, name, options):
    space = one_shot_space({"name": name, "options": options})
    sup = space.build_supernet().eval()
    arch = space.sample(np.random.default_rng(3))
    exp = export_subnet(space, sup, arch, tmp_path)
    assert exp.arch_json.exists() and exp.program.exists() and exp.onnx.exists()
    diffs = verify_export(space, sup, exp)
    assert max(diffs.values()) < 1e-4


# -- GPU ---------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_amp_channels_last(tmp_path):
    tr = make_trainer(tmp_path, epochs=1, device="cuda")
    assert tr.amp and tr.channels_last
    summary = tr.fit()
    assert np.isfinite(summary["history"][-1]["loss"])
    res = evaluate_subnet(tr.space, tr.net, tr.space.largest(), tr.data, EvalConfig(device="cuda", calib_batches=2))
    assert 0.0 <= res.accuracy <= 1.0
