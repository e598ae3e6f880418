"""The accuracy source of a config that names none (issue 20, turn 7): per space and kind of data, the same in
the plan, the pipeline and ``hwnas accuracy estimate --source default``; named sources and old run dirs kept."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orchestrator.config import AccuracySection, SupernetSection, ZeroCostSection, parse_config
from orchestrator.pipeline.default_source import DEFAULTS, choose_source, resolve_config
from orchestrator.supernet.data import DataConfig


def images(name: str) -> DataConfig:
    return DataConfig(name=name, root=None if name in ("digits", "synthetic") else "/some/where")


@pytest.mark.parametrize("space, data, source", [
    ("nb201", "npz", "zero_cost"), ("nb201", "cifar10", "zero_cost"), ("nb201", "cifar100", "zero_cost"),
    ("nb201", "imagefolder", "zero_cost"),
    ("nb201", "digits", "supernet"), ("nb201", "synthetic", "supernet"),  # no truth to measure a ranking against
    ("mobilenetv3", "npz", "supernet"), ("fbnet", "cifar100", "supernet"),  # no measurement for these spaces
    ("mobilenetv3", "digits", "supernet"),
])
def test_the_default_per_space_and_data(space, data, source):
    for acc in (AccuracySection(supernet=SupernetSection(data=images(data))),  # the images, given either way
                AccuracySection(zero_cost=ZeroCostSection(data=images(data)))):
        choice = choose_source(space, acc)
        assert (choice.source, choice.by_default) == (source, True)
        assert space in choice.reason and data in choice.reason


def test_nb201_is_the_registered_space_and_a_named_source_is_kept():
    assert DEFAULTS.names() == ["nb201"]
    for named in ("supernet", "table", "predictor", "zero_cost"):
        choice = choose_source("nb201", AccuracySection(source=named,
                                                        supernet=SupernetSection(data=images("npz"))))
        assert (choice.source, choice.by_default) == (named, False)
    assert choose_source("nb201", AccuracySection()).source == "supernet"  # nothing set: digits, as before


def test_a_checkpoint_or_int8_keeps_the_supernet_on_real_images():
    acc = AccuracySection(supernet=SupernetSection(data=images("npz"), checkpoint="/a/run"))
    assert choose_source("nb201", acc).source == "supernet"
    acc = AccuracySection(supernet=SupernetSection(data=images("npz")))
    choice = choose_source("nb201", acc, needs_weights=True)
    assert choice.source == "supernet" and "int8" in choice.reason


def config(tmp_path, **accuracy):
    return parse_config({"name": "d", "output_dir": str(tmp_path / "runs"), "space": {"name": "nb201"},
                         "accuracy": accuracy, "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
                         "search": {"n_trials": 16, "population": 8, "domain": "table"},
                         "sweep": {"targets": ["edgegpu"], "k": 5}, "tracking": {"enabled": False}})


def test_the_plan_resolves_the_config(tmp_path):
    from orchestrator.pipeline.plan import make_plan

    npz = {"name": "npz", "root": str(tmp_path / "x.npz")}
    (tmp_path / "x.npz").touch()  # validate checks that a dataset file is there
    cfg = config(tmp_path, supernet={"data": npz, "train": {"epochs": 2}})
    assert cfg.accuracy.source == "default"
    plan = make_plan(cfg)
    assert plan.cfg.accuracy.source == "zero_cost" and plan.cfg.accuracy.zero_cost.proxy == "ensemble"
    assert plan.cfg.accuracy.zero_cost.data.model_dump() == cfg.accuracy.supernet.data.model_dump()
    assert plan.given is cfg and plan.accuracy_choice.by_default
    assert any("accuracy.supernet.train unused" in w for w in plan.warnings)
    # resolving the resolved config changes nothing (a resumed run compares resolved configs)
    assert resolve_config(plan.cfg)[0] == plan.cfg
    named = make_plan(config(tmp_path, source="supernet", supernet={"data": npz}))
    assert named.cfg.accuracy.source == "supernet" and not named.accuracy_choice.by_default
    assert make_plan(config(tmp_path)).cfg.accuracy.source == "supernet"


def test_the_shipped_experiments_keep_their_sources():
    from pathlib import Path

    import yaml

    from orchestrator.config import load_config

    root = Path(__file__).resolve().parents[1] / "experiments"
    for path in sorted(root.glob("*.yaml")):
        named = (yaml.safe_load(path.read_text()).get("accuracy") or {}).get("source")
        cfg, choice = resolve_config(load_config(path))
        if named is not None:
            assert (cfg.accuracy.source, choice.by_default) == (named, False), path
        else:  # nb201_cifar_default.yaml: NB201 on the CIFAR-10 npz, no source named
            assert cfg.accuracy.source == "zero_cost" and choice.by_default, path


def test_resume_of_a_run_begun_under_the_old_default_goes_on_with_its_source(tmp_path):
    """A run dir whose stored config has the source the old default gave (supernet) is resumed with it, not
    refused as another config; a fresh run of the same config takes the new default."""
    from orchestrator.errors import ConfigError
    from orchestrator.pipeline.context import check_run_dir, claim_run_dir
    from orchestrator.pipeline.plan import make_plan
    from orchestrator.pipeline.run import _keep_begun_source

    npz = {"name": "npz", "root": str(tmp_path / "x.npz")}
    (tmp_path / "x.npz").touch()  # validate checks that a dataset file is there
    cfg = config(tmp_path, supernet={"data": npz})
    old = make_plan(config(tmp_path, source="supernet", supernet={"data": npz}))  # as the old version stored it
    d = cfg.run_dir()
    claim_run_dir(old.cfg, d)
    plan = make_plan(cfg)
    with pytest.raises(ConfigError, match="another config"):
        check_run_dir(plan.cfg, True, d)  # without the rule, the resume would be refused
    kept = _keep_begun_source(plan, d, resume=True)
    assert kept.cfg.accuracy.source == "supernet"
    assert check_run_dir(kept.cfg, True, d) == d
    assert _keep_begun_source(plan, d, resume=False) is plan
    # a run begun under this version stores the resolved source: resumed as it is
    claim_run_dir(plan.cfg, d)
    assert json.loads((d / "pipeline.json").read_text())["config"]["accuracy"]["source"] == "zero_cost"
    assert _keep_begun_source(plan, d, resume=True) is plan and check_run_dir(plan.cfg, True, d) == d


def write_npz(path, n=40):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), y_train=np.arange(n) % 10,
             x_test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), y_test=np.arange(10) % 10)
    return path


@pytest.mark.parametrize("data, source", [("npz", "zero_cost"), ("digits", "supernet")])
def test_estimate_source_default_is_the_plans_choice(tmp_path, data, source):
    from orchestrator.cli import build_parser
    from orchestrator.cli_accuracy import default_choice
    from orchestrator.pipeline.plan import make_plan

    path = str(write_npz(tmp_path / "x.npz")) if data == "npz" else "digits"
    args = build_parser().parse_args(["accuracy", "estimate", "--source", "default", "--data", path,
                                      "--archs", "a.csv", "--out", "o.csv"])
    given = {"name": "npz", "root": path} if data == "npz" else {"name": "digits"}
    plan = make_plan(config(tmp_path, zero_cost={"data": given}))
    assert default_choice(args) == plan.accuracy_choice
    assert default_choice(args).source == source


def test_estimate_source_default_on_real_images_writes_the_zero_cost_ensemble(tmp_path, capsys):
    import torch

    from orchestrator.cli import main
    from orchestrator.search.zero_cost import make_scorer
    from search_spaces.nb201 import NB201Space

    cells = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
             "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"]
    archs = tmp_path / "archs.csv"
    archs.write_text("arch\n" + "\n".join(cells) + "\n")
    npz = write_npz(tmp_path / "x.npz")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "est.csv"
        assert main(["accuracy", "estimate", "--source", "default", "--data", str(npz), "--batch-size", "8",
                     "--reference", "4", "--archs", str(archs), "--out", str(out)]) == 0
        assert "--source default: zero_cost (the default: nb201 on npz images" in capsys.readouterr().err
        with out.open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["arch", "zero_cost_ensemble"]
        scorer = make_scorer(NB201Space(), "ensemble", DataConfig(name="npz", root=str(npz)), 8, 4, 0)
        assert [float(r["zero_cost_ensemble"]) for r in rows] == pytest.approx(scorer.scores(cells), rel=1e-5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.ray
@pytest.mark.slow
def test_the_pipeline_uses_the_default_source(tmp_path, ray_cluster):
    """An NB201 config on real images that names no source runs the zero-cost ensemble through the whole
    pipeline, says so in run.log, and records how the source was chosen."""
    from orchestrator.pipeline import run_pipeline

    npz = write_npz(tmp_path / "x.npz")
    cfg = parse_config({
        "name": "dflt", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "space": {"name": "nb201", "options": {"channels": 4, "cells_per_stage": 1}},
        "accuracy": {"zero_cost": {"data": {"name": "npz", "root": str(npz)}, "batch_size": 8, "reference": 4}},
        "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
        "search": {"algorithm": "nsga2", "n_trials": 16, "population": 8, "domain": "table"},
        "sweep": {"targets": ["edgegpu"], "simulated": 0, "k": 5, "target_search": {"max_new_evaluations": 2}},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test"},
    })
    run_pipeline(cfg, progress=False)
    d = cfg.run_dir()
    with (d / "fronts" / "proxy.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["accuracy_from"] == "zero_cost" for r in rows)
    assert "accuracy source: zero_cost (the default: nb201 on npz images" in (d / "run.log").read_text()
    stored = json.loads((d / "pipeline.json").read_text())["config"]["accuracy"]
    assert stored["source"] == "zero_cost" and stored["zero_cost"]["data"]["root"] == str(npz)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("test").experiment_id], "tags.mlflow.runName = 'dflt'")
    assert run and run[0].data.params.get("accuracy_source_by") == "default"


@pytest.mark.parametrize("extra, message", [
    ([], "--source default is supernet (the default: nb201 on digits"),
    (["--space", "mobilenetv3", "--data", "digits"], "no measurement supports another source for this space"),
])
def test_estimate_source_default_without_a_run_says_what_it_resolved_to(tmp_path, capsys, extra, message):
    from orchestrator.cli import main

    archs = tmp_path / "a.csv"
    archs.write_text("arch\n")
    assert main(["accuracy", "estimate", "--source", "default", *extra, "--archs", str(archs),
                 "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and "needs --run" in err
    assert ("--data with real images" in err) == (not extra)
