"""The hwnas command line, end to end on real data."""

import csv

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.latency.table import LatencyTable, read_table, write_table


def _list_sections(out: str) -> dict[str, dict[str, str]]:
    """`hwnas list` as {section: {entry name: its help}} (a section: an unindented line ending in ':' or
    with ' (...):'; an entry: an indented line, its first word the name)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            current = line.split(" (")[0].rstrip(":")
            sections[current] = {}
        elif line.strip():
            name, _, text = line.strip().partition(" ")
            sections[current][name] = text.strip()
    return sections


def test_list(capsys):
    """Each registry's names are entries of its own section (not words somewhere in the output)."""
    from orchestrator.latency.predictors import PREDICTORS
    from orchestrator.latency.table import SHIPPED_DEVICES
    from orchestrator.latency.transfer import TRANSFERS
    from orchestrator.search.algorithms import ALGORITHMS
    from search_spaces.base import SPACES
    from search_spaces.costs import COSTS

    assert main(["list"]) == 0
    got = _list_sections(capsys.readouterr().out)
    assert set(got) == {"search spaces", "devices", "predictors", "transfer methods", "search algorithms",
                        "datasets", "costs"}
    assert set(got["search spaces"]) == set(SPACES.names()) >= {"nb201", "mobilenetv3"}
    assert set(got["predictors"]) == set(PREDICTORS.names()) == {"additive", "mlp"}
    assert set(got["transfer methods"]) == set(TRANSFERS.names()) >= {"multi", "adaproxy", "reuse", "auto"}
    assert set(got["search algorithms"]) == set(ALGORITHMS.names()) >= {"nsga2", "milp", "exhaustive"}
    assert set(got["costs"]) == set(COSTS)
    devices = got["devices"]
    assert {"torch-cpu", "onnxrt-cpu", "cuda", "remote:<name>", "sim:<n>", "<column>"} <= set(devices)
    assert "shipped: " + ", ".join(SHIPPED_DEVICES) + ";" in devices["<column>"] and "pixel3" in SHIPPED_DEVICES
    assert devices["<column>"].endswith("nb201-hwnasbench: edgegpu, edgetpu, eyeriss, fpga, pixel3, raspi4")
    assert all(text for section in got.values() for text in section.values())  # every entry has its help


def test_srcc_with_plot(tmp_path, capsys):
    assert main(["latency", "srcc", "--table", "nb201-hwnasbench", "--plot", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out
    assert "proxy by mean SRCC to the others: fpga" in out and (tmp_path / "h.png").exists()


def test_latency_commands_find_each_spaces_shipped_table(capsys):
    """`--table shipped` is the space's own shipped table (the plan's SHIPPED_LATENCY registry): FBNet's 19 devices,
    not NB201's cells read as FBNet ids (turn 10: every row refused as malformed); a space configured without one
    is an error that says so."""
    assert main(["latency", "srcc", "--space", "fbnet", "--table", "shipped"]) == 0
    out = capsys.readouterr().out
    assert "proxy by mean SRCC to the others: titanxp_32" in out and "silver_4210r" in out
    assert main(["latency", "srcc", "--space", "mobilenetv3", "--table", "shipped"]) == 2
    assert "space mobilenetv3 (as configured) has no shipped latency table; give a CSV path" in capsys.readouterr().err


@pytest.fixture
def transfer_files(tmp_path, shipped):
    """Sources: four shipped devices. Targets: pixel3 and raspi4 with 15 samples each."""
    write_table(tmp_path / "sources.csv", shipped.select(["edgegpu", "edgetpu", "eyeriss", "fpga"]))
    rng = np.random.default_rng(0)
    tv = np.full((len(shipped.archs), 2), np.nan)
    for j, d in enumerate(["pixel3", "raspi4"]):
        pick = rng.choice(len(shipped.archs), 15, replace=False)
        tv[pick, j] = shipped.column(d)[pick]
    write_table(tmp_path / "targets.csv", LatencyTable(shipped.archs, ["pixel3", "raspi4"], tv))
    with (tmp_path / "archs.csv").open("w") as f:
        f.write("arch\n" + "\n".join(shipped.archs[:300]) + "\n")
    return tmp_path


@pytest.mark.parametrize("method", ["auto", "multi"])
def test_transfer_end_to_end(transfer_files, shipped, method, capsys):
    d = transfer_files
    rc = main(["latency", "transfer", "--space", "nb201", "--sources", str(d / "sources.csv"),
               "--targets", str(d / "targets.csv"), "--predict", str(d / "archs.csv"), "--out", str(d / "pred.csv"),
               "--method", method, "--seed", "1"])
    assert rc == 0
    with (d / "pred.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["arch", "pixel3", "raspi4"] and len(rows) == 301
    assert [r[0] for r in rows[1:]] == shipped.archs[:300]
    pred = read_table(d / "pred.csv", __import__("search_spaces").get_space("nb201"))
    from orchestrator.latency.metrics import srcc

    for dev in ("pixel3", "raspi4"):
        assert srcc(pred.column(dev), shipped.column(dev)[:300]) > 0.8
    assert "wrote 300 x 2 predictions" in capsys.readouterr().out


def test_transfer_errors_name_the_target(transfer_files, shipped, capsys):
    d = transfer_files
    tv = np.full((len(shipped.archs), 2), np.nan)
    tv[:2, 0] = 1.0
    write_table(d / "bad.csv", LatencyTable(shipped.archs, ["tiny", "ok"], tv))
    other = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert other not in shipped.archs
    with (d / "nooverlap.csv").open("w") as f:
        f.write(f"arch,lonely\n{other},1.0\n")
    args = ["latency", "transfer", "--space", "nb201", "--sources", str(d / "sources.csv"),
            "--predict", str(d / "archs.csv"), "--out", str(d / "p.csv")]
    assert main([*args, "--targets", str(d / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "target 'tiny' has 2 measured" in err and "target 'ok' has 0 measured" in err
    assert not (d / "p.csv").exists()
    with (d / "few.csv").open("w") as f:
        f.write("arch,lonely\n" + "".join(f"{a},1.0\n" for a in [other] * 1))
    assert main([*args, "--targets", str(d / "nooverlap.csv")]) == 2
    assert "target 'lonely' has 1 measured" in capsys.readouterr().err
    assert main([*args, "--targets", str(d / "targets.csv"), "--method", "magic"]) == 2
    assert "unknown transfer method 'magic'" in capsys.readouterr().err


def test_transfer_no_overlap_is_an_error(transfer_files, shipped, space, capsys):
    d = transfer_files
    outside = [a for a in (space.arch_id(x) for x in space.enumerate()) if a not in set(shipped.archs)][:4]
    with (d / "t.csv").open("w") as f:
        f.write("arch,newdev\n" + "".join(f"{a},{i + 1}.0\n" for i, a in enumerate(outside)))
    rc = main(["latency", "transfer", "--space", "nb201", "--sources", str(d / "sources.csv"), "--targets",
               str(d / "t.csv"), "--predict", str(d / "archs.csv"), "--out", str(d / "p.csv")])
    assert rc == 2 and "target 'newdev': none of its 4 measured" in capsys.readouterr().err


def test_measure_tabulated_and_cpu(tmp_path, capsys):
    assert main(["latency", "measure", "--device", "pixel3", "--space", "nb201", "--n", "5", "--archs", "shipped",
                 "--out", str(tmp_path / "p3.csv")]) == 0
    assert "wrote 5 latencies of pixel3" in capsys.readouterr().out
    assert main(["latency", "measure", "--device", "torch-cpu", "--space", "nb201", "--n", "3",
                 "--repeats", "3", "--warmup", "1", "--out", str(tmp_path / "cpu.csv"), "--retest", "3"]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 latencies of torch-cpu to" in out and "test-retest SRCC over 3" in out
    assert main(["latency", "measure", "--device", "nosuch", "--space", "nb201", "--n", "1",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "Valid devices: 1080ti_1" in capsys.readouterr().err  # the whole-space table's 19 devices first


def test_fit_and_compare(tmp_path, capsys):
    assert main(["latency", "fit", "--table", "nb201-hwnasbench", "--device", "fpga",
                 "--out", str(tmp_path / "f.npz")]) == 0
    out = capsys.readouterr().out
    assert "SRCC 0.99" in out and (tmp_path / "f.npz").exists()
    assert main(["latency", "export-shipped", "--out", str(tmp_path / "s.csv"), "--devices", "fpga",
                 "--table", "nb201-hwnasbench"]) == 0
    assert main(["latency", "compare", "--pred", str(tmp_path / "s.csv"), "--truth", "nb201-hwnasbench"]) == 0
    assert "fpga: 1999 architectures, SRCC 1.000" in capsys.readouterr().out


def test_version_and_help_show_defaults(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"hwnas {metadata.version('hwnas')}"
    with pytest.raises(SystemExit):
        main(["latency", "measure", "--help"])
    out = capsys.readouterr().out
    assert "--space SPACE         (default: nb201)" in out and "(default: torch-cpu)" in out
    assert "(default: None)" not in out  # required options and switches have no default to show


def test_a_reader_that_leaves_is_not_an_error(tmp_path):
    """`hwnas list | head -c 10`: the pipe closes before hwnas writes; no traceback, exit 0."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the command prints
    err = p.stderr.read().decode()
    assert p.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_validate_does_not_import_torch():
    """`hwnas validate` of the Quickstart config (a supernet source, DNAS settings, measured devices' protocol)
    reads and checks it without importing torch (2.5 s of every validate here): the pydantic settings live in
    torch-free modules (supernet/settings.py, search/dnas_settings.py)."""
    import subprocess
    import sys
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
    code = ("import sys\nfrom orchestrator.cli import main\ntry:\n    main(['validate', sys.argv[1]])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    p = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1] == "NO TORCH", p.stdout + p.stderr


def _finished_run(d, source: dict, targets: list[dict]):
    """A run dir as `hwnas run` leaves it (summary.json, pipeline.json with the config), for report/compare."""
    import json

    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"name": d.name, "proxy": "fpga", "n_candidates": 9,
                                                "targets": targets}))
    (d / "pipeline.json").write_text(json.dumps({"config": {"name": d.name, "space": {"name": "nb201"},
                                                            "accuracy": source, "tracking": {"enabled": False}}}))
    (d / "fronts").mkdir()
    for t in targets:
        (d / "fronts" / f"{t['target'].replace(':', '_')}.json").write_text(json.dumps(
            [{"arch": f"a{i}", "accuracy": 80.0 + i, "predicted_ms": 1.0 + i, "true_ms": 1.0 + i} for i in range(3)]))
    return d


def _target(name, **figures):
    return {"target": name, "kind": "tabulated", "k": 10, "srcc_k": 0.8, "srcc_lb": 0.5, "decision": "adapt",
            "method": "multi", "front_size": 4, "hv_ratio": 0.9, "pool_hv_ratio": 0.95, "hv_ratio_reuse": 0.7,
            "unserved_budgets": 0.0, "acc_loss_q50": 1.5, "unserved_q50": 0.0, "n_measurements": 10, **figures}


def test_report_names_the_reuse_figure_and_unserved_budgets(tmp_path, capsys):
    run = _finished_run(tmp_path / "r", {"source": "table"}, [
        _target("pixel3"), _target("sim:0", unserved_budgets=2.0, acc_loss_q50=88.0, unserved_q50=1.0)])
    assert main(["report", str(run), "--no-fronts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = lines[1].split()
    assert "reuse_hv" in head and "reuse" not in head  # "reuse" is a decision; the column is plain reuse's hv
    rows = {ln.split()[0]: dict(zip(head, ln.split(), strict=True)) for ln in lines[2:4]}
    assert rows["pixel3"]["reuse_hv"] == "0.700" and rows["pixel3"]["loss@q50"] == "1.50"
    assert rows["sim:0"]["loss@q50"] == "unserved" and rows["sim:0"]["unserved"] == "2"  # not the whole 88 %


def test_report_on_a_missing_directory_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope'} does not exist" in err and "summary.json" not in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "has no summary.json" in capsys.readouterr().err  # a dir, but not a finished run


def test_compare_warns_and_labels_runs_with_different_accuracy_sources(tmp_path, capsys, caplog):
    import csv as csv_mod

    table = _finished_run(tmp_path / "table", {"source": "table", "table_column": "acc_cifar10"},
                          [_target("pixel3")])
    supernet = _finished_run(tmp_path / "sn", {"source": "supernet", "supernet": {"data": {"name": "digits"}}},
                             [_target("pixel3", unserved_q50=1.0, acc_loss_q50=90.0)])
    assert main(["compare", str(table), str(supernet), "--out", str(tmp_path / "cmp"), "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING: accuracies from different sources (table: table acc_cifar10; sn: supernet "
                          "nb201 on digits)")
    assert "different sources" in caplog.text
    rows = list(csv_mod.DictReader((tmp_path / "cmp" / "compare.csv").read_text().splitlines()))
    assert [r["accuracy_source"] for r in rows] == ["table acc_cifar10", "supernet nb201 on digits"]
    line = next(ln for ln in out.splitlines() if ln.startswith("pixel3") and " sn " in ln)
    assert "supernet nb201 on digit" in line and "unserved" in line
    same = _finished_run(tmp_path / "t2", {"source": "table", "table_column": "acc_cifar10"}, [_target("pixel3")])
    caplog.clear()
    assert main(["compare", str(table), str(same), "--out", str(tmp_path / "cmp2"), "--no-mlflow"]) == 0
    assert "WARNING" not in capsys.readouterr().out and "different sources" not in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "empty", "null", "list", "a row without its target",
                                    "a front that is not JSON", "a deleted front"])
def test_report_and_compare_on_a_damaged_record_say_which_file(tmp_path, capsys, damage):
    """A break test's reproducers: each was a JSONDecodeError, AttributeError or KeyError traceback."""
    run = _finished_run(tmp_path / "r", {"source": "table"}, [_target("pixel3")])
    other = _finished_run(tmp_path / "o", {"source": "table"}, [_target("pixel3")])
    summary = run / "summary.json"
    bad = summary
    if damage == "truncated":
        summary.write_text(summary.read_text()[:40])
    elif damage == "empty":
        summary.write_text("")
    elif damage == "null":
        summary.write_text("null")
    elif damage == "list":
        summary.write_text("[]")
    elif damage == "a row without its target":
        summary.write_text('{"proxy": "fpga", "targets": [{"k": 10}]}')
    elif damage == "a deleted front":  # report left the target out, compare drew no front for it
        bad = run / "fronts" / "pixel3.json"
        bad.unlink()
    else:
        bad = run / "fronts" / "pixel3.json"
        bad.write_text('[{"arch": "a0", ')
    state = "is missing" if damage == "a deleted front" else "is damaged"
    for args in (["report", str(run)], ["compare", str(run), str(other), "--out", str(tmp_path / "cmp")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{bad} {state}" in err[0] and "--resume" in err[0], err


def test_compare_refuses_one_run_given_twice(tmp_path, capsys):
    """Break test: `compare A A` drew A twice as two runs (and `compare A ./A/` too)."""
    run = _finished_run(tmp_path / "r", {"source": "table"}, [_target("pixel3")])
    other = _finished_run(tmp_path / "o", {"source": "table"}, [_target("pixel3")])
    assert main(["compare", str(run), str(other), f"{run}/.", "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert f"{run}: given twice (also as {run}); name each run once" in err and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("args, needle", [
    (["latency", "measure", "--device", "torch-cpu", "--n", "3", "--out", "{tmp}"], "is a directory"),
    (["latency", "measure", "--device", "torch-cpu", "--n", "3", "--out", "{tmp}/f/x.csv"], "cannot write a file in"),
    (["latency", "measure", "--device", "torch-cpu", "--n", "0", "--out", "{tmp}/x.csv"], "--n: must be 1 or more"),
    (["latency", "measure", "--device", "torch-cpu", "--n", "3", "--repeats", "2", "--out", "{tmp}/x.csv"],
     "--repeats: must be 3 or more"),
    (["latency", "measure", "--device", "torch-cpu", "--n", "3", "--warmup", "-1", "--out", "{tmp}/x.csv"],
     "--warmup: must be 0 or more"),
    (["latency", "measure", "--device", "torch-cpu", "--n", "3", "--retest", "-2", "--out", "{tmp}/x.csv"],
     "--retest: must be 0 or more"),
    (["latency", "fit", "--table", "shipped", "--device", "pixel3", "--test-fraction", "nan"], "must be in [0, 1)"),
    (["latency", "fit", "--table", "shipped", "--device", "pixel3", "--test-fraction", "-0.2"], "must be in [0, 1)"),
    (["latency", "srcc", "--table", "shipped", "--plot", "{tmp}/p.txt"], "must end in .png or .pdf or .svg"),
    (["latency", "export-shipped", "--out", "{tmp}"], "is a directory"),
    (["supernet", "evaluate", "--run", "{tmp}", "--n", "1", "--out", "{tmp}/e.csv"], "--n: must be 2 or more"),
    (["supernet", "evaluate", "--run", "{tmp}", "--calib-batches", "0", "--out", "{tmp}/e.csv"],
     "--calib-batches: must be 1 or more"),
])
def test_flags_out_of_range_and_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys, args, needle):
    """Break test (turn 16): each of these measured, evaluated or built for minutes and then failed writing (an
    --out that is a directory), or gave a pydantic traceback, or read -2 as 'all but the last two'."""
    (tmp_path / "f").write_text("a file where a directory is expected")
    with pytest.raises(SystemExit) as e:
        main([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_measure_checks_retest_before_measuring_and_fit_says_when_nothing_is_held_out(tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["latency", "measure", "--device", "torch-cpu", "--n", "2", "--retest", "5", "--out", str(out)]) == 2
    assert "--retest 5: the test-retest SRCC needs 3 to --n (2)" in capsys.readouterr().err and not out.exists()
    assert main(["latency", "fit", "--table", "nb201-hwnasbench", "--device", "fpga", "--test-fraction", "0"]) == 0
    assert "0 held-out architectures (--test-fraction 0.0 of 1999); the held-out figures need at least 3" in \
        capsys.readouterr().out


def test_a_setting_out_of_its_models_range_is_one_line(capsys):
    """A flag that passes argparse but not the settings model it fills (pydantic): one line, exit 2 (was a
    ValidationError traceback)."""
    assert main(["supernet", "train", "--lr", "0", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hwnas: error: TrainConfig: lr: Input should be greater than 0"], err


def test_an_srcc_that_does_not_exist_is_said_so(tmp_path, shipped, capsys):
    """Break test (turn 16): a constant prediction (a transfer from a constant target) printed 'SRCC nan'."""
    archs = shipped.archs[:5]
    write_table(tmp_path / "pred.csv", LatencyTable(archs, ["t"], np.full((5, 1), 2.0), "pred"))
    write_table(tmp_path / "truth.csv", LatencyTable(archs, ["t"], np.arange(1.0, 6.0)[:, None], "truth"))
    assert main(["latency", "compare", "--pred", str(tmp_path / "pred.csv"),
                 "--truth", str(tmp_path / "truth.csv")]) == 0
    assert "t: 5 architectures, SRCC undefined (a constant column, or fewer than 3 architectures)" in \
        capsys.readouterr().out
