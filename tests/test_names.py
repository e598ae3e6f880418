"""Names from the field (issues 17, 23, 24): device names MLflow refuses as keys, names that are not file names,
clashes between device names, run names that are paths, quotes in paths used in MLflow filters, and passwords
in URLs. Through the CLI where a user meets them."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.cli import main
from orchestrator.names import file_stem, redact, stem_clashes, tag_filter

# the 1,999-cell table (pinned by name) and its 12-epoch accuracies: what these tests were written on
OLD_ACC = {"source": "table", "table": "nb201-hwnasbench", "table_column": "test_acc_cifar10_12ep"}
ODD = ["fpga", "jetson(fp16)", "v1.5", "v1.7", ".", "../../x"]


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def odd_table(tmp_path_factory, shipped):
    from orchestrator.latency.table import LatencyTable, write_table

    path = tmp_path_factory.mktemp("odd") / "odd.csv"
    sub = shipped.select(["fpga", "pixel3", "raspi4", "edgegpu", "eyeriss", "edgetpu"])
    vals = sub.values.copy()
    vals[np.isnan(vals)] = 9.0  # edgetpu's gaps: this table is complete
    write_table(path, LatencyTable(sub.archs, [f"lat_ms_{n}" for n in ODD], vals))
    return path


def _cfg(tmp_path, table, **over):
    data = {"name": "odd", "seed": 0, "output_dir": str(tmp_path / "o'ne\"il" / "runs"),
            "accuracy": OLD_ACC,
            "latency": {"table": str(table), "proxy": "fpga"},
            "search": {"algorithm": "nsga2", "n_trials": 40, "population": 20, "domain": "table"},
            "sweep": {"targets": ["tabulated"], "simulated": 0, "k": 5, "memory_mb": {"jetson(fp16)": 10_000}},
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "odd"}}
    for k, v in over.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) else v
    return data


def test_file_stems_are_one_safe_component():
    assert file_stem("v1.5") == "v1.5" and file_stem("sim:0") == "sim_0"  # a run dir's existing names unchanged
    for name in [".", "..", "../../x", "/etc/passwd", "a\\b", ".hidden", "x" * 300, ""]:
        s = file_stem(name)
        assert s and "/" not in s and "\\" not in s and not s.startswith(".") and len(s) <= 100, (name, s)
    assert file_stem("x" * 300) != file_stem("x" * 299 + "y")  # cut long names stay distinct
    assert len(stem_clashes(["a:b", "a_b"])) == 1 and len(stem_clashes(["A", "a"])) == 1
    assert len(stem_clashes(["proxy"])) == 1 and len(stem_clashes(["x", "x_refined"])) == 1
    assert stem_clashes(["v1.5", "v1.7", ".", "../../x", "jetson(fp16)"]) == []


def test_tag_filters_find_paths_with_any_quotes(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/f.db")
    exp = client.create_experiment("f")
    values = ["/r/o'neil", '/r/say "x"', "/r/b'o\"th", "/r/b_o_th", "/r/100%_x", "/r/back\\slash"]
    for v in values:
        client.create_run(exp, tags={"hwnas.run_dir": v})
    for v in values:
        found = [r.data.tags["hwnas.run_dir"] for r in client.search_runs([exp], tag_filter("hwnas.run_dir", v))]
        assert v in found


@pytest.mark.slow
def test_odd_device_names_run_resume_and_report(tmp_path, odd_table, ray_cluster, capsys):
    """Device columns MLflow refuses as keys or that are not file names (issue 17 kind 1, issue 24 item 7),
    jetson(fp16) in sweep.memory_mb, an output_dir with both quotes: the run finishes, every device has its
    own files inside the run dir, MLflow holds every run, and --resume and report work."""
    from mlflow.tracking import MlflowClient

    cfg = _write(tmp_path / "odd.yaml", _cfg(tmp_path, odd_table))
    assert main(["run", cfg, "--no-progress"]) == 0
    run_dir = tmp_path / "o'ne\"il" / "runs" / "odd"
    summary = json.loads((run_dir / "summary.json").read_text())
    targets = [r["target"] for r in summary["targets"]]
    assert targets == ODD[1:]
    stems = {"jetson(fp16)": "jetson_fp16_", "v1.5": "v1.5", "v1.7": "v1.7", ".": "_", "../../x": "___.._x"}
    for name, stem in stems.items():
        front = json.loads((run_dir / "fronts" / f"{stem}.json").read_text())
        row = next(r for r in summary["targets"] if r["target"] == name)
        assert len(front) == row["front_size"] > 0, name  # its own front, not another device's
        assert (run_dir / "fronts" / f"{stem}.png").is_file() and (run_dir / "targets" / f"{stem}.json").is_file()
    assert json.loads((run_dir / "fronts" / "v1.5.json").read_text()) != json.loads(
        (run_dir / "fronts" / "v1.7.json").read_text())
    outside = {p.name for p in (tmp_path / "o'ne\"il").iterdir()}
    assert outside == {"runs"} and {p.name for p in (tmp_path / "o'ne\"il" / "runs").iterdir()} == {"odd", ".odd.lock"}

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("odd").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED"
    assert json.loads(parent.data.params["config.sweep.memory_mb"]) == {"jetson(fp16)": 10_000}
    children = {r.data.tags["hwnas.device"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == set(ODD[1:]) and all(r.info.status == "FINISHED" for r in children.values())
    capsys.readouterr()

    assert main(["run", cfg, "--resume", "--no-progress"]) == 0  # found again through the quoted path
    again = json.loads((run_dir / "summary.json").read_text())
    assert [r["hv_ratio"] for r in again["targets"]] == [r["hv_ratio"] for r in summary["targets"]]
    runs = client.search_runs([client.get_experiment_by_name("odd").experiment_id])
    assert sum("mlflow.parentRunId" not in r.data.tags for r in runs) == 1  # the same parent, not a second
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    for name in ODD[1:]:
        assert f"\n{name}: " in out  # every device's front in the report
    assert main(["run", cfg, "--no-progress"]) == 2  # a re-run without --resume: refused, saying what to delete
    err = capsys.readouterr().err
    assert f"rm -r {shlex.quote(str(run_dir))}" in err


def test_a_device_name_mlflow_refuses_as_a_key_is_recorded(tmp_path):
    """The config of a run with sweep.memory_mb on jetson(fp16): recorded as MLflow params (the write that
    failed after the search), the mapping as one JSON value; recorded again on resume without a conflict."""
    from orchestrator.config import PipelineConfig
    from orchestrator.pipeline.context import public_config
    from orchestrator.tracking import Tracker

    cfg = PipelineConfig.model_validate({"name": "j", "sweep": {"memory_mb": {"jetson(fp16)": 64, "v1.5": 32}}})
    t = Tracker(f"sqlite:///{tmp_path}/m.db", "j")
    t.start(tmp_path / "j", "j", resume=False)
    t.params(t.parent_id, {"config": public_config(cfg)})
    t.params(t.parent_id, {"config": public_config(cfg)})  # a resume logs the same params again
    t.metrics(t.parent_id, {"hv.jetson(fp16)": 0.5})
    t.tags(t.parent_id, {"model_uri.jetson(fp16)": "x"})
    run = t.client.get_run(t.parent_id)
    assert json.loads(run.data.params["config.sweep.memory_mb"]) == {"jetson(fp16)": 64, "v1.5": 32}
    assert run.data.params["config.search.n_trials"] == "200"  # safe keys still flattened
    assert len(run.data.metrics) == 1 and list(run.data.metrics.values()) == [0.5]
    assert any(k.startswith("model_uri.jetson") for k in run.data.tags)


def test_device_name_clashes_are_refused(tmp_path, shipped, capsys):
    """Two columns with one file name, and a column named like a simulated device of the same sweep."""
    from orchestrator.latency.table import LatencyTable, write_table

    sub = shipped.select(["fpga", "pixel3", "raspi4"])
    path = tmp_path / "clash.csv"
    write_table(path, LatencyTable(sub.archs, ["lat_ms_fpga", "lat_ms_a:b", "lat_ms_a_b"], sub.values))
    cfg = _write(tmp_path / "c.yaml", _cfg(tmp_path, path, sweep={"memory_mb": {}}))
    assert main(["validate", cfg]) == 2
    out = capsys.readouterr().out
    assert "devices ['a:b', 'a_b'] would all write the files fronts/a_b.*" in out

    write_table(path, LatencyTable(sub.archs, ["lat_ms_fpga", "lat_ms_sim:3", "lat_ms_pixel3"], sub.values))
    cfg = _write(tmp_path / "s.yaml", _cfg(tmp_path, path, sweep={"memory_mb": {}, "simulated": 4}))
    assert main(["validate", cfg]) == 2
    assert "column 'sim:3' has the name of simulated device sim:3" in capsys.readouterr().out
    cfg = _write(tmp_path / "s3.yaml", _cfg(tmp_path, path, sweep={"memory_mb": {}, "simulated": 3}))
    assert main(["validate", cfg]) == 0  # sim:0..sim:2 do not meet the column


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../up", "has space", ""])
def test_run_names_that_are_not_one_file_name_are_refused(tmp_path, name, capsys):
    cfg = _write(tmp_path / "n.yaml", {"name": name, "output_dir": str(tmp_path / "runs"),
                                       "accuracy": OLD_ACC, "tracking": {"enabled": False}})
    assert main(["validate", cfg]) == 2
    out = capsys.readouterr().out
    assert f"name: {name!r} is not a run name" in out and "Value error" not in out and "pattern" not in out
    assert main(["run", cfg]) == 2
    assert not (tmp_path / "runs").exists() and {p.name for p in tmp_path.iterdir()} == {"n.yaml"}


# -- secrets in URLs ---------------------------------------------------------------


def test_redact():
    assert redact("postgresql://user:PASSWORD@host/db") == "postgresql://user:***@host/db"
    assert redact("mysql+pymysql://u:p@ss:w0rd@h:3306/x") == "mysql+pymysql://u:***@h:3306/x"
    assert redact("http://h/x?token=abc&y=1") == "http://h/x?token=***&y=1"
    for plain in ["sqlite:////tmp/a.db", "postgresql://user@host/db", "file:///a/b", "user@example.org"]:
        assert redact(plain) == plain


def test_database_password_never_written_or_printed(tmp_path, capsys):
    """search.storage / tracking.uri with a password and no driver installed: refused before any work, with the
    extra to install; the password appears nowhere."""
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg  # noqa: F401
        pytest.skip("psycopg is installed: the refusal under test is for a missing driver")
    except ImportError:
        pass
    out_dir = tmp_path / "runs"
    for section in ({"search": {"storage": "postgresql://user:PASSWORD@127.0.0.1:1/db"}},
                    {"tracking": {"uri": "postgresql://user:PASSWORD@127.0.0.1:1/db"}}):
        cfg = _write(tmp_path / "p.yaml", {"name": "pw", "output_dir": str(out_dir), "accuracy": OLD_ACC,
                                           **section})
        assert main(["validate", cfg]) == 2
        out = capsys.readouterr().out
        assert "hwnas[postgres]" in out and "postgresql://user:***@127.0.0.1:1/db" in out and "PASSWORD" not in out
        assert main(["run", cfg]) == 2
        err = capsys.readouterr().err
        assert "hwnas[postgres]" in err and "PASSWORD" not in err
        assert not out_dir.exists()


def test_passwords_redacted_in_run_files_and_mlflow(tmp_path, monkeypatch):
    """What a run writes (pipeline.json, its MLflow params and artifact) holds the config without passwords;
    resume compares the redacted configs; confirm / compare reconnect with the password from the environment."""
    from orchestrator.config import PipelineConfig
    from orchestrator.pipeline.context import check_run_dir, claim_run_dir, public_config
    from orchestrator.tracking import Tracker, run_tracking_uri

    store = f"sqlite:///{tmp_path}/m.db"
    cfg = PipelineConfig.model_validate({"name": "pw", "output_dir": str(tmp_path / "runs"),
                                         "search": {"storage": "postgresql://user:PASSWORD@host/db"},
                                         "tracking": {"uri": "http://user:PASSWORD@mlflow.example:5000"}})
    d = cfg.run_dir()
    claim_run_dir(cfg, d)
    text = (d / "pipeline.json").read_text()
    assert "PASSWORD" not in text and "postgresql://user:***@host/db" in text
    assert json.loads(text)["tracking_uri"] == "http://user:***@mlflow.example:5000"
    check_run_dir(cfg, True, d)  # the same config resumes: compared redacted
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:PASSWORD@mlflow.example:5000")
    assert run_tracking_uri(d, "http://user:***@mlflow.example:5000") == "http://user:PASSWORD@mlflow.example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:PASSWORD@mlflow.example:5000")
    assert run_tracking_uri(d, None) == "http://user:***@mlflow.example:5000"  # another URI: not substituted

    t = Tracker(store, "pw")
    t.start(d, "pw", resume=False)
    t.params(t.parent_id, {"config": public_config(cfg)})
    t.artifact(t.parent_id, d / "pipeline.json")
    params = t.client.get_run(t.parent_id).data.params
    assert params["config.search.storage"] == "postgresql://user:***@host/db"
    assert not any("PASSWORD" in v for v in params.values())
    art = t.client.download_artifacts(t.parent_id, "pipeline.json", str(tmp_path))
    assert "PASSWORD" not in Path(art).read_text()


def test_unreachable_store_error_is_redacted():
    from orchestrator.errors import ConfigError
    from orchestrator.search.storage import make_storage
    from orchestrator.tracking import Tracker

    with pytest.raises(ConfigError) as e:
        Tracker("postgresql://user:PASSWORD@127.0.0.1:1/db", "x")
    assert "PASSWORD" not in str(e.value) and "user:***@127.0.0.1" in str(e.value)
    with pytest.raises(ConfigError) as e:
        make_storage("postgresql://user:PASSWORD@127.0.0.1:1/db", None)
    assert "PASSWORD" not in str(e.value) and "search.storage" in str(e.value)


def test_budget_below_the_proxys_fastest_is_refused_by_validate(tmp_path, capsys):
    """issue 17 kind 3: refused before any work, naming the smallest value that can work."""
    data = {"name": "b", "output_dir": str(tmp_path / "runs"), "accuracy": OLD_ACC,
            "latency": {"table": "nb201-hwnasbench"},
            "search": {"latency_budget_ms": 0.5, "domain": "table"}, "tracking": {"enabled": False}}
    assert main(["validate", _write(tmp_path / "b.yaml", data)]) == 2
    out = capsys.readouterr().out
    assert "search.latency_budget_ms: 0.5 ms, but proxy fpga's predicted latency is within it for only 0" in out
    least = float(out.split("set it to at least ")[1].split()[0])
    data["search"]["latency_budget_ms"] = least
    assert main(["validate", _write(tmp_path / "b.yaml", data)]) == 0  # the named value passes
    data["search"]["latency_budget_ms"] = least * 0.999
    assert main(["validate", _write(tmp_path / "b.yaml", data)]) == 2
    assert main(["run", _write(tmp_path / "b.yaml", data)]) == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_late_refusal_says_what_to_delete_and_the_corrected_config_runs(tmp_path, ray_cluster, capsys):
    """A measured proxy: its latency is unknown at validation, so an impossible budget is refused only once the
    proxy is measured (before the search where its predictor shows it, else after it); the refusal names what
    to delete, and after that the corrected config runs under the same name."""
    data = {"name": "late", "output_dir": str(tmp_path / "runs"),
            "space": {"name": "nb201", "options": {"channels": 4, "cells_per_stage": 1}},
            "accuracy": {"source": "table", "predictor": "additive"},
            "latency": {"proxy": "torch-cpu", "proxy_samples": 8,
                        "protocol": {"warmup": 1, "repeats": 3, "min_repeat_ms": 0.0}},
            "search": {"latency_budget_ms": 1e-6, "n_trials": 10, "population": 5, "domain": "table"},
            "sweep": {"targets": ["sim:0"], "k": 3, "target_search": {"algorithm": "none"}},
            "tracking": {"enabled": False}}
    cfg = _write(tmp_path / "late.yaml", data)
    assert main(["validate", cfg]) == 0  # nothing known yet
    assert main(["run", cfg, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "search.latency_budget_ms" in err
    cmd = err.split("delete its state: ")[1].strip()
    assert cmd == f"rm -r {shlex.quote(str(tmp_path / 'runs' / 'late'))}"
    data["search"].pop("latency_budget_ms")
    cfg = _write(tmp_path / "late.yaml", data)
    for resume in ([], ["--resume"]):  # the corrected config: refused, each refusal saying what to delete
        assert main(["run", cfg, "--no-progress", *resume]) == 2
        err = capsys.readouterr().err
        assert ("another config" in err) == bool(resume) and err.strip().endswith(f"delete its state: {cmd}")
    subprocess.run(shlex.split(cmd), check=True)
    assert main(["run", cfg, "--no-progress"]) == 0
