"""The hwnas command line, end to end on real data."""

import csv

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.latency.table import LatencyTable, read_table, write_table


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("nb201", "torch-cpu", "onnxrt-cpu", "cuda", "pixel3", "additive", "mlp", "multi", "adaproxy"):
        assert name in out


def test_srcc_with_plot(tmp_path, capsys):
    assert main(["latency", "srcc", "--table", "nb201-hwnasbench", "--plot", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out
    assert "proxy by mean SRCC to the others: fpga" in out and (tmp_path / "h.png").exists()


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
