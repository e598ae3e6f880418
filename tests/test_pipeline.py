"""The whole pipeline on the shipped tables (no training): files, MLflow records, resume, report."""

from __future__ import annotations

import json

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.pipeline import run_pipeline
from orchestrator.report import report

pytestmark = pytest.mark.ray


def _cfg(tmp_path, **over):
    data = {
        "name": "t", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "accuracy": {"source": "table"},
        "latency": {"table": "shipped", "proxy": "auto"},
        "search": {"algorithm": "nsga2", "n_trials": 60, "population": 20, "domain": "table"},
        "sweep": {"targets": ["tabulated"], "simulated": 3, "k": 10},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test"},
    }
    for k, v in over.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) else v
    return parse_config(data)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_cluster):
    tmp_path = tmp_path_factory.mktemp("pipe")
    cfg = _cfg(tmp_path)
    summary = run_pipeline(cfg, progress=False)
    return tmp_path, cfg, summary


def test_files_and_summary(finished):
    tmp_path, cfg, summary = finished
    run_dir = cfg.run_dir()
    assert summary["proxy"] == "fpga"
    names = [r["target"] for r in summary["targets"]]
    assert names == ["edgegpu", "edgetpu", "eyeriss", "pixel3", "raspi4", "sim:0", "sim:1", "sim:2"]
    assert summary["n_reuse"] + summary["n_adapt"] == 8
    assert summary["target_measurements"] == 8 * 10
    for r in summary["targets"]:
        assert 0 < r["hv_ratio"] <= 1.0 + 1e-9 and r["decision"] in {"reuse", "adapt"}
        assert (r["decision"] == "reuse") == (r["srcc_k"] >= 0.9)
    assert 0.8 < summary["mean_hv_ratio"] <= 1.0
    for f in ["summary.json", "candidates.csv", "optuna.journal", "evaluations.jsonl", "srcc_heatmap.png",
              "hv_history.png", "run.log", "fronts/proxy.csv", "fronts/edgegpu.csv", "fronts/edgegpu.json",
              "fronts/edgegpu.png", "fronts/sim_0.png", "targets/sim_2.json"]:
        assert (run_dir / f).is_file(), f
    front = json.loads((run_dir / "fronts" / "edgegpu.json").read_text())
    assert front and {"arch", "accuracy", "predicted_ms", "true_ms", "proxy_ms"} <= set(front[0])
    lat = [row["predicted_ms"] for row in front]
    acc = [row["accuracy"] for row in front]
    assert lat == sorted(lat) and acc == sorted(acc)  # a front: faster is less accurate


def test_mlflow_parent_and_nested_runs(finished):
    from mlflow.tracking import MlflowClient

    tmp_path, cfg, summary = finished
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.get_experiment_by_name("test")
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    p = parents[0]
    assert p.data.tags["proxy"] == "fpga" and "version.optuna" in p.data.tags
    assert p.data.params["config.search.n_trials"] == "60"
    assert p.data.metrics["mean_hv_ratio"] == pytest.approx(summary["mean_hv_ratio"])
    arts = {a.path for a in c.list_artifacts(p.info.run_id)}
    assert {"srcc_heatmap.png", "summary.json", "proxy_search"} <= arts
    kids = {r.data.tags["hwnas.device"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id}
    assert set(kids) == {r["target"] for r in summary["targets"]}
    k = kids["edgegpu"]
    assert {"srcc_k", "hv_ratio", "igd", "acc_loss_q50"} <= set(k.data.metrics)
    assert k.data.tags["decision"] in {"reuse", "adapt"} and kids["sim:1"].data.tags["simulated"] == "True"
    assert {"edgegpu.csv", "edgegpu.json", "edgegpu.png"} <= {a.path for a in c.list_artifacts(k.info.run_id)}


def test_report_prints_the_tables(finished):
    _, cfg, _ = finished
    text = report(cfg.run_dir())
    assert "edgegpu" in text and "sim:2" in text and "proxy" in text


def test_rerun_needs_resume_and_same_config(finished):
    tmp_path, cfg, summary = finished
    with pytest.raises(ConfigError, match="--resume"):
        run_pipeline(cfg, progress=False)
    other = _cfg(tmp_path, search={"n_trials": 80})
    with pytest.raises(ConfigError, match="another config.*search"):
        run_pipeline(other, resume=True, progress=False)


def test_resume_of_a_finished_run_redoes_nothing(finished):
    tmp_path, cfg, summary = finished
    run_dir = cfg.run_dir()
    before = (run_dir / "evaluations.jsonl").read_text()
    stamp = (run_dir / "targets" / "edgegpu.json").stat().st_mtime_ns
    again = run_pipeline(cfg, resume=True, progress=False)
    assert (run_dir / "evaluations.jsonl").read_text() == before
    assert (run_dir / "targets" / "edgegpu.json").stat().st_mtime_ns == stamp
    assert [r["target"] for r in again["targets"]] == [r["target"] for r in summary["targets"]]
    assert again["mean_hv_ratio"] == pytest.approx(summary["mean_hv_ratio"])
    assert "resume: 8 targets already done" in (run_dir / "run.log").read_text()


def test_milp_search_in_the_pipeline(tmp_path, ray_cluster):
    """search.algorithm milp: the exact front of additive models, evaluated like any candidates."""
    cfg = _cfg(tmp_path, name="m", search={"algorithm": "milp", "n_trials": 40},
               sweep={"targets": ["edgegpu", "pixel3"], "simulated": 0, "k": 10})
    summary = run_pipeline(cfg, progress=False)
    assert 3 <= summary["n_candidates"] <= 40
    assert summary["timings"]["milp_solves"] >= summary["n_candidates"]
    assert [r["target"] for r in summary["targets"]] == ["edgegpu", "pixel3"]
    assert all(0 < r["hv_ratio"] <= 1 + 1e-9 for r in summary["targets"])


def test_milp_config_needs_additive_models():
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "x", "search": {"algorithm": "milp"}, "latency": {"predictor": "mlp"},
                      "accuracy": {"source": "supernet"}})
    assert "latency.predictor: additive" in str(e.value) and "accuracy.predictor: additive" in str(e.value)


def test_refinement_search_on_adapted_targets(tmp_path, ray_cluster):
    cfg = _cfg(tmp_path, name="r", sweep={"targets": ["edgegpu"], "simulated": 1, "k": 10, "srcc_threshold": 1.0,
                                          "refine_trials": 20})
    summary = run_pipeline(cfg, progress=False)
    for r in summary["targets"]:
        assert r["decision"] == "adapt"  # threshold 1.0: every target adapts
        assert r["refine_evaluated"] >= 0 and r["refined_front_size"] >= 1 and r["refine_hv_gain"] > 0
        rows = json.loads((cfg.run_dir() / "fronts" / f"{r['target'].replace(':', '_')}_refined.json").read_text())
        assert rows and all(row["true_ms"] is not None for row in rows)


def test_csv_table_targets_need_the_table_domain(tmp_path, shipped):
    """A CSV table that covers part of the space: its devices as targets with a whole-space search is refused
    before any work (the shipped case is caught by the config already)."""
    from orchestrator.latency.table import LatencyTable, write_table

    sub = shipped.select(["fpga", "pixel3"])
    path = tmp_path / "t.csv"
    write_table(path, LatencyTable(sub.archs[:300], ["lat_ms_fpga", "lat_ms_pixel3"], sub.values[:300]))
    cfg = _cfg(tmp_path, name="csv", latency={"table": str(path), "proxy": "fpga"},
               search={"domain": "space"}, sweep={"targets": ["pixel3"], "simulated": 0})
    with pytest.raises(ConfigError, match=r"known only on the table's 300 architectures; set search.domain"):
        run_pipeline(cfg, progress=False)
    assert not cfg.run_dir().exists()
