"""Accuracy tables: the shipped whole NB201 space, and tables the user brings (any column, any space), each
validated before any work."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.latency.table import SHIPPED_DEVICES, shipped_accuracy, shipped_table
from orchestrator.pipeline.plan import make_plan
from orchestrator.search.accuracy_table import AccuracyTableError, check_coverage, read_accuracy

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_the_whole_space_loads_with_its_documented_counts(space):
    """orchestrator/data/README.md: 15,625 cells, 19 devices, best 94.37 / 73.51 / 47.31 (200 epochs), NB201's
    optimum is index 6111, 341 disconnected cells at 10 %."""
    t = shipped_table(space)
    assert t.values.shape == (15_625, 19) and tuple(t.devices) == SHIPPED_DEVICES
    assert not np.isnan(t.values).any() and len(set(t.archs)) == 15_625 == space.size
    acc = shipped_accuracy()  # the default column: 200-epoch CIFAR-10 test accuracy
    assert len(acc) == 15_625
    assert max(acc, key=acc.get) == space.arch_id(space.parse(BEST)) == t.archs[6111]
    assert acc[t.archs[6111]] == pytest.approx(94.37, abs=0.005)
    assert np.mean(list(acc.values())) == pytest.approx(87.06, abs=0.005)
    assert sum(v == pytest.approx(10.0) for v in acc.values()) == 341
    for column, best in (("test_acc_cifar100_200ep", 73.51), ("test_acc_imagenet16_200ep", 47.31),
                         ("valid_acc_cifar10valid_200ep", 91.61), ("test_acc_cifar10_12ep", 89.16)):
        assert max(shipped_accuracy(column).values()) == pytest.approx(best, abs=0.005), column


def test_the_subset_table_is_named_and_its_accuracies_are_12_epoch(space, shipped):
    """nb201-hwnasbench: 1,999 cells; its accuracy columns are the whole space's 12-epoch figures."""
    sub = shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")
    full = shipped_accuracy("test_acc_cifar10_12ep")
    assert len(sub) == 1999 == len(shipped.archs)
    assert all(sub[a] == pytest.approx(full[a]) for a in sub)
    with pytest.raises(AccuracyTableError, match=r"no accuracy column 'test_acc_cifar10_200ep'; the columns "
                                                 r"there are nb201_index, test_acc_cifar10_12ep, "
                                                 r"test_acc_cifar100_12ep, test_acc_imagenet16_12ep"):
        read_accuracy("nb201-hwnasbench", space, "test_acc_cifar10_200ep")


def _write(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _refused(tmp_path, match, **accuracy):
    with pytest.raises(ConfigError, match=match):
        make_plan(parse_config({"name": "x", "accuracy": {"source": "table", **accuracy},
                                "latency": {"table": "nb201-hwnasbench"}, "output_dir": str(tmp_path)}))


def test_each_validation_error_before_any_work(tmp_path, shipped):
    archs = shipped.archs
    good = [[a, 90.0] for a in archs]
    _refused(tmp_path, r"accuracy.table: accuracy table .*nope.csv: no such file", table=str(tmp_path / "nope.csv"))
    _refused(tmp_path, r"no column 'arch' in header \['cell', 'top1'\]",
             table=str(_write(tmp_path / "a.csv", ["cell", "top1"], good)), table_column="top1")
    _refused(tmp_path, r"no accuracy column 'top5'; the columns there are top1, note; set accuracy.table_column",
             table=str(_write(tmp_path / "b.csv", ["arch", "top1", "note"], [[*r, "x"] for r in good])),
             table_column="top5")
    nan = [list(r) for r in good]
    nan[3][1], nan[10][1] = "", "nan"
    _refused(tmp_path, r"2 blank or NaN values .*e.g. line 5; line 12",
             table=str(_write(tmp_path / "c.csv", ["arch", "top1"], nan)), table_column="top1")
    out = [list(r) for r in good]
    out[0][1], out[1][1], out[2][1] = 101.5, -1, 0.5  # 0.5 is a valid (if odd) percentage
    _refused(tmp_path, r"2 values outside \[0, 100\] .*e.g. line 2: 101.5; line 3: -1",
             table=str(_write(tmp_path / "d.csv", ["arch", "top1"], out)), table_column="top1")
    word = [list(r) for r in good]
    word[5][1] = "high"
    _refused(tmp_path, r"1 values that are not numbers, e.g. line 7: 'high'",
             table=str(_write(tmp_path / "e.csv", ["arch", "top1"], word)), table_column="top1")
    _refused(tmp_path, r"1 duplicate architectures .*line 2001 repeats line 2",
             table=str(_write(tmp_path / "f.csv", ["arch", "top1"], [*good, good[0]])), table_column="top1")
    _refused(tmp_path, r"1 architectures that do not parse, e.g. line 2001",
             table=str(_write(tmp_path / "g.csv", ["arch", "top1"], [*good, ["|conv~0|", 50]])), table_column="top1")
    _refused(tmp_path, r"lacks 1,989 of the 1,999 architectures of the latency table .*, e.g. "
                       + r"\|.*\|, \|.*\|, \|.*\|; add rows for them",
             table=str(_write(tmp_path / "h.csv", ["arch", "top1"], good[:10])), table_column="top1")
    _refused(tmp_path, r"nb201-tiny: no such file; .* or a shipped table's name: shipped \(= nb201-full\), "
                       r"nb201-full, nb201-hwnasbench",
             table="nb201-tiny")


def test_a_space_without_shipped_accuracies_is_told_so(tmp_path, capsys):
    """FBNet's shipped table holds latencies only: the table source without accuracy.table, a shipped accuracy
    name given for FBNet, and `hwnas accuracy estimate --space fbnet --source table` each say that the space has
    no shipped accuracy table and what to give instead (was: 15,625 NB201 cells that do not parse as FBNet)."""
    from orchestrator.cli import main
    from search_spaces.base import get_space

    base = {"name": "fb", "space": {"name": "fbnet"}, "latency": {"table": "shipped", "proxy": "auto"},
            "search": {"n_trials": 20, "population": 10, "domain": "table"}, "sweep": {"targets": ["sim:0"], "k": 5},
            "tracking": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"the shipped latency table of space 'fbnet' has none: set accuracy.table "
                                          r"to a CSV .* or choose another accuracy.source \(predictor, supernet, "
                                          r"zero_cost\)"):
        make_plan(parse_config({**base, "accuracy": {"source": "table"}}))
    fbnet = get_space("fbnet")
    with pytest.raises(AccuracyTableError, match="'nb201-full' is a shipped table of nb201's cells; space 'fbnet' "
                                                 "has no shipped accuracy table"):
        read_accuracy("nb201-full", fbnet)
    archs = tmp_path / "fb.csv"
    archs.write_text("arch\n" + fbnet.arch_id(fbnet.sample(np.random.default_rng(0))) + "\n")
    assert main(["accuracy", "estimate", "--space", "fbnet", "--source", "table", "--archs", str(archs),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "space 'fbnet' has no shipped accuracy table" in capsys.readouterr().err


def test_coverage_names_count_and_examples(space, shipped):
    acc = read_accuracy("nb201-hwnasbench", space, "test_acc_cifar100_12ep")
    check_coverage(acc, shipped.archs)
    with pytest.raises(AccuracyTableError, match=r"lacks 13,626 of the 15,625 architectures"):
        check_coverage(acc, shipped_table(space).archs)


@pytest.mark.ray
def test_own_table_another_column_end_to_end(tmp_path, shipped, space, ray_cluster):
    """NB201: the user's CSV holds their accuracy under their own column name (here the 200-epoch CIFAR-100
    figures) beside the 1,999-cell latency table; every front member's accuracy is theirs."""
    from orchestrator.pipeline import run_pipeline

    mine = shipped_accuracy("test_acc_cifar100_200ep")
    path = _write(tmp_path / "my_acc.csv", ["arch", "my_top1"], [[a, mine[a]] for a in shipped.archs])
    cfg = parse_config({
        "name": "byo", "output_dir": str(tmp_path / "runs"),
        "accuracy": {"source": "table", "table": str(path), "table_column": "my_top1"},
        "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
        "search": {"n_trials": 30, "population": 10, "domain": "table"},
        # sources: proxy: one source set to meta-learn for the transfer, not five (this test is about accuracy)
        "sweep": {"targets": ["pixel3"], "k": 6, "sources": "proxy"}, "tracking": {"enabled": False}})
    summary = run_pipeline(cfg, progress=False)
    assert summary["targets"][0]["n_reference"] == 1999
    front = json.loads((cfg.run_dir() / "fronts" / "pixel3.json").read_text())
    assert front and all(r["accuracy"] == pytest.approx(mine[r["arch"]]) for r in front)
    assert max(r["accuracy"] for r in front) <= max(mine.values())


@pytest.mark.ray
def test_own_table_another_space_end_to_end(tmp_path, ray_cluster):
    """MobileNetV3 (OFA subnets at 224 px with HELP's GPU latencies): latency and accuracy from the user's own
    CSVs, the accuracy in a file of its own."""
    from importlib import resources

    from orchestrator.pipeline import run_pipeline

    src = resources.files("orchestrator") / "data" / "ofa_mbv3_5000.csv"
    with src.open() as f:
        rows = [r for r in csv.DictReader(f) if r["resolution"] == "224"][:60]
    lat = _write(tmp_path / "lat.csv", ["arch", "lat_ms_2080ti_1", "lat_ms_titan_xp_1"],
                 [[r["hwnas_id"], r["lat_ms_2080ti_1"], r["lat_ms_titan_xp_1"]] for r in rows])
    rng = np.random.default_rng(0)  # accuracies the user measured (here: any numbers in range)
    mine = {r["hwnas_id"]: float(v) for r, v in zip(rows, rng.uniform(70, 80, len(rows)), strict=True)}
    acc = _write(tmp_path / "acc.csv", ["arch", "imagenet_top1"], [[a, v] for a, v in mine.items()])
    cfg = parse_config({
        "name": "mb", "output_dir": str(tmp_path / "runs"), "space": {"name": "mobilenetv3"},
        "accuracy": {"source": "table", "table": str(acc), "table_column": "imagenet_top1"},
        "latency": {"table": str(lat), "proxy": "2080ti_1"},
        "search": {"n_trials": 20, "population": 10, "domain": "table"},
        "sweep": {"targets": ["tabulated"], "k": 5}, "tracking": {"enabled": False}})
    summary = run_pipeline(cfg, progress=False)
    (row,) = summary["targets"]
    assert row["target"] == "titan_xp_1" and row["n_reference"] == 60 and 0 < row["hv_ratio"] <= 1
    from search_spaces.mobilenet import MobileNetV3Space

    sp = MobileNetV3Space()
    mine = {sp.arch_id(sp.parse(a)): v for a, v in mine.items()}
    front = json.loads((cfg.run_dir() / "fronts" / "titan_xp_1.json").read_text())
    assert front and all(r["accuracy"] == pytest.approx(mine[r["arch"]]) for r in front)
    with pytest.raises(ConfigError, match=r"lacks 1 of the 60 architectures of the latency table"):
        short = _write(tmp_path / "short.csv", ["arch", "imagenet_top1"], [[a, v] for a, v in list(mine.items())[1:]])
        make_plan(parse_config({"name": "mb2", "space": {"name": "mobilenetv3"},
                                "accuracy": {"source": "table", "table": str(short), "table_column": "imagenet_top1"},
                                "latency": {"table": str(lat), "proxy": "2080ti_1"}, "search": {"domain": "table"}}))
