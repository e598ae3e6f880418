"""`hwnas accuracy estimate` (issue 20): the pipeline's sources on a CSV of architectures."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from orchestrator.cli import main

CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
         "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]


@pytest.fixture
def archs(tmp_path):
    p = tmp_path / "archs.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "note"])
        w.writerows([[a, i] for i, a in enumerate(CELLS)])
    return p


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_zero_cost_estimate_is_the_sources_value(tmp_path, archs):
    from orchestrator.search.zero_cost import make_scorer
    from orchestrator.supernet.data import DataConfig
    from search_spaces.nb201 import NB201Space

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "est.csv"
        assert main(["accuracy", "estimate", "--source", "zero_cost", "--proxy", "params", "--data", "digits",
                     "--reference", "8", "--archs", str(archs), "--out", str(out)]) == 0
        rows = read(out)
        assert [r["arch"] for r in rows] == CELLS and list(rows[0]) == ["arch", "zero_cost_params"]
        scorer = make_scorer(NB201Space(), "params", DataConfig(), 64, 8, 0)
        assert [float(r["zero_cost_params"]) for r in rows] == pytest.approx(scorer.scores(CELLS), rel=1e-5)
        # the all-none cell has the fewest parameters of the three
        assert np.argmin([float(r["zero_cost_params"]) for r in rows]) == 2
    finally:
        torch.set_num_threads(before)


def test_table_estimate(tmp_path):
    from orchestrator.latency.table import shipped_accuracy

    table = shipped_accuracy()
    ids = list(table)[:3]  # cells the table holds (others would need its fallback model fit first)
    p = tmp_path / "in_table.csv"
    p.write_text("arch\n" + "\n".join(ids) + "\n")
    out = tmp_path / "est.csv"
    assert main(["accuracy", "estimate", "--source", "table", "--archs", str(p), "--out", str(out)]) == 0
    rows = read(out)
    assert [r["arch"] for r in rows] == ids
    assert [float(r["accuracy"]) for r in rows] == pytest.approx([table[a] for a in ids], abs=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--source", "zero_cost"], "needs --data"),
    (["--source", "supernet"], "needs --run"),
    (["--source", "zero_cost", "--data", "/nonexistent/x.npz"], "no such file or folder"),
    (["--source", "table", "--proxy", "synflow"], "--proxy is for --source zero_cost"),
    (["--source", "tabel"], "--source 'tabel': not one of default, predictor, supernet, table, zero_cost"),
    (["--source", "zero_cost", "--proxy", "synflw"], "--proxy 'synflw': not one of "),
])
def test_estimate_errors_exit_2(tmp_path, archs, capsys, extra, message):
    assert main(["accuracy", "estimate", *extra, "--archs", str(archs), "--out", str(tmp_path / "o.csv")]) == 2
    assert message in capsys.readouterr().err


def test_the_command_builds_every_registered_accuracy_source():
    """One estimator per registered source (pipeline.accuracy.SOURCES), and --source offers exactly those."""
    from orchestrator.cli_accuracy import DEFAULT, ESTIMATORS, source_choices
    from orchestrator.pipeline.accuracy import SOURCES

    assert set(ESTIMATORS) == set(SOURCES.names())
    assert source_choices() == [DEFAULT, *SOURCES.names()]


def test_a_bad_out_is_refused_before_any_work(tmp_path, archs, capsys):
    """--out a directory, the --archs file itself, or a place no file can be written: exit 2 naming --out, before
    the source is built (the zero_cost data below does not exist: its error would come first otherwise); before,
    the estimates were computed and then lost in a traceback (found by a break test)."""
    bad_source = ["--source", "zero_cost", "--data", "/nonexistent/x.npz"]
    (tmp_path / "adir").mkdir()
    for out, message in [(tmp_path / "adir", "is a directory"), (archs, "is the --archs file"),
                         ("/proc/hwnas-test/x.csv", "cannot write a file in /proc/hwnas-test")]:
        assert main(["accuracy", "estimate", *bad_source, "--archs", str(archs), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and "no such file or folder" not in err
    assert archs.read_text().startswith("arch,note")  # the input untouched


@pytest.mark.parametrize("flag, value, message", [
    ("--chunk", "0", "must be 1 or more, got 0"), ("--batch-size", "-3", "must be 1 or more, got -3"),
    ("--reference", "2", "must be 4 or more, got 2"), ("--actors", "x", "'x' is not an integer")])
def test_counts_below_their_minimum_are_argument_errors(tmp_path, archs, capsys, flag, value, message):
    """--chunk 0 was a range() traceback, --batch-size 0 a bare StopIteration, --reference 0 scores left
    unstandardised."""
    with pytest.raises(SystemExit) as info:
        main(["accuracy", "estimate", "--source", "table", flag, value, "--archs", str(archs), "--out",
              str(tmp_path / "o.csv")])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_an_archs_csv_that_is_not_utf8_or_names_arch_twice_is_refused(tmp_path, capsys):
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"arch,note\n" + CELLS[0].encode() + ",caf\xe9\n".encode("latin-1"))
    twice = tmp_path / "twice.csv"
    twice.write_text(f"arch,arch\n{CELLS[0]},{CELLS[1]}\n")
    for path, message in [(latin, "latin1.csv is not UTF-8 text"), (twice, "2 columns named 'arch'; keep one"),
                          (tmp_path, "is a directory; pass a CSV file")]:
        assert main(["accuracy", "estimate", "--source", "table", "--archs", str(path), "--out",
                     str(tmp_path / "o.csv")]) == 2
        assert message in capsys.readouterr().err


def test_space_options_reach_the_estimate_for_data_with_more_classes(tmp_path, archs, capsys):
    """12-class images: without --space-option the error names the flag that fixes it (it named a config option
    the command did not have); with num_classes=12 the networks scored have 12 outputs."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    y = np.arange(48) % 12
    np.savez(tmp_path / "c12.npz", x_train=x, y_train=y, x_test=x[:12], y_test=y[:12])
    base = ["accuracy", "estimate", "--source", "zero_cost", "--proxy", "params", "--reference", "4",
            "--data", str(tmp_path / "c12.npz"), "--archs", str(archs)]
    assert main([*base, "--out", str(tmp_path / "a.csv")]) == 2
    assert "--space-option num_classes=12" in capsys.readouterr().err
    assert main([*base, "--space-option", "num_classes=12", "--out", str(tmp_path / "b.csv")]) == 0
    from orchestrator.cli_accuracy import data_config
    from orchestrator.search.zero_cost import make_scorer
    from search_spaces.nb201 import NB201Space

    got = [float(r["zero_cost_params"]) for r in read(tmp_path / "b.csv")]
    scorer = make_scorer(NB201Space(num_classes=12), "params", data_config(str(tmp_path / "c12.npz")), 64, 4, 0)
    assert got == pytest.approx(scorer.scores(CELLS), rel=1e-5)  # the 12-output networks were scored


def test_a_failed_write_leaves_no_partial_file_and_says_so(tmp_path, capsys, monkeypatch):
    """A disk that fills while the CSV is written (simulated: the final rename fails as a full disk would fail a
    write): exit 2 with one line naming --out and the cause, and neither the target nor its .partial left."""
    from orchestrator.latency.table import shipped_accuracy

    ids = list(shipped_accuracy())[:3]
    p = tmp_path / "in_table.csv"
    p.write_text("arch\n" + "\n".join(ids) + "\n")
    out = tmp_path / "est.csv"

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full)
    assert main(["accuracy", "estimate", "--source", "table", "--archs", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: writing the 3 estimates failed (No space left on device)" in err and "Traceback" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in_table.csv"]
