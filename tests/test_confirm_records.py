"""`hwnas confirm`'s MLflow records go into the run's own runs (``recorded_sweep``): a store or parent run that
is gone is refused before any training, with no store or parent run made in its place; a second recording of
the same results adds nothing. No training here: the run dir and its sweep's runs are made as a sweep makes
them (``claim_run_dir``, ``Tracker``), the confirm results written as ``confirm`` writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config import PipelineConfig, parse_config
from orchestrator.errors import ConfigError
from orchestrator.tracking import Tracker

pytest.importorskip("mlflow")

ARCHS = ["|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
         "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|skip_connect~1|avg_pool_3x3~2|",
         "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"]


def _finished_run(tmp_path: Path) -> tuple[Path, PipelineConfig, Tracker]:
    """A finished tracked run dir: its state file, summary and fronts, and its sweep's MLflow runs (a finished
    parent, a finished device run for pixel3) in ``tmp_path/mlflow.db``."""
    from orchestrator.pipeline.context import claim_run_dir

    cfg = parse_config({
        "name": "cf", "output_dir": str(tmp_path / "runs"),
        "space": {"name": "nb201", "options": {"channels": 4, "cells_per_stage": 1}},
        "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep",
                     "supernet": {"data": {"name": "digits", "max_train": 64}}},
        "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},
        "sweep": {"targets": ["pixel3"], "k": 4},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "cf"},
        "confirm": {"top": 3, "epochs": 1, "grace_period": 1, "batch_size": 32}})
    run = cfg.run_dir().resolve()
    claim_run_dir(cfg, run)
    (run / "summary.json").write_text(json.dumps({"targets": [{"target": "pixel3"}]}))
    for name, archs in (("proxy", ARCHS[:2]), ("pixel3", ARCHS[1:])):
        rows = [{"arch": a, "accuracy": 90.0 - i} for i, a in enumerate(archs)]
        (run / "fronts" / f"{name}.json").write_text(json.dumps(rows))
    tr = Tracker(cfg.tracking.uri, "cf")
    tr.start(run, "cf", resume=False)
    tr.finish(tr.child("pixel3"))
    tr.finish(tr.parent_id)
    pcfg = PipelineConfig.model_validate(json.loads((run / "pipeline.json").read_text())["config"])
    return run, pcfg, tr


def _results(run: Path) -> tuple[dict, Path]:
    """Confirm results as ``confirm`` writes them before recording: confirm.json and confirm.png."""
    storage = run / "confirm"
    storage.mkdir()
    rows = [{"arch": ARCHS[0], "one_shot": 90.0, "devices": ["proxy"], "confirmed": 61.0, "epochs": 1,
             "status": "trained", "error": None},
            {"arch": ARCHS[1], "one_shot": 89.0, "devices": ["proxy", "pixel3"], "confirmed": 64.0, "epochs": 1,
             "status": "trained", "error": None},
            {"arch": ARCHS[2], "one_shot": 89.0, "devices": ["pixel3"], "confirmed": 58.0, "epochs": 1,
             "status": "trained", "error": None}]
    out = {"n": 3, "seconds": 12.5, "epochs": 1, "kendall_tau": 0.8, "kendall_tau_fully_trained": 0.8,
           "n_errors": 0, "architectures": rows}
    (storage / "confirm.json").write_text(json.dumps(out))
    (storage / "confirm.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return out, storage


def _parents(tr: Tracker, view: str = "active_only") -> list:
    from mlflow.entities import ViewType

    runs = tr.client.search_runs([tr.experiment_id], run_view_type=ViewType.from_string(view))
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_a_gone_store_is_refused_before_any_training_and_not_recreated(tmp_path, monkeypatch):
    import ray

    import orchestrator.ray_connect
    from orchestrator.cli import main
    from orchestrator.confirm import confirm

    run, _, _ = _finished_run(tmp_path)
    ray_before = ray.is_initialized()
    connects = []
    real_connect = orchestrator.ray_connect.connect
    monkeypatch.setattr(orchestrator.ray_connect, "connect",
                        lambda *a, **k: connects.append(a) or real_connect(*a, **k))
    db = tmp_path / "mlflow.db"
    db.rename(tmp_path / "elsewhere.db")
    with pytest.raises(ConfigError, match=rf"the MLflow store {db} that run {run} recorded to is gone; restore it, "
                                          r"or pass --no-tracking"):
        confirm(run)
    assert main(["confirm", str(run), "--no-progress"]) == 2
    assert not db.exists() and sorted(p.name for p in tmp_path.glob("*.db")) == ["elsewhere.db"]
    assert not (run / "confirm").exists()  # refused before the Tune experiment was made
    assert connects == [] and ray.is_initialized() == ray_before  # and before Ray was joined or started (the
    # test session's Ray may run already)


def test_a_gone_parent_run_is_refused_before_any_training_and_no_parent_made(tmp_path):
    from orchestrator.confirm import confirm

    run, _, tr = _finished_run(tmp_path)
    tr.client.delete_run(tr.parent_id)
    with pytest.raises(ConfigError, match=r"holds no run of .* in experiment 'cf' .*--no-tracking"):
        confirm(run)
    assert _parents(tr) == [] and len(_parents(tr, "all")) == 1
    assert not (run / "confirm").exists()


def test_records_land_on_the_runs_own_parent_and_device_run_and_a_second_time_adds_nothing(tmp_path):
    from orchestrator.confirm import record_confirm

    run, pcfg, tr = _finished_run(tmp_path)
    out, storage = _results(run)
    before = _parents(tr)
    n_runs = len(tr.client.search_runs([tr.experiment_id]))
    for _ in range(2):
        record_confirm(run, pcfg, out, storage)
    c = tr.client
    assert [p.info.run_id for p in _parents(tr)] == [p.info.run_id for p in before] == [tr.parent_id]
    assert len(c.search_runs([tr.experiment_id])) == n_runs
    parent = c.get_run(tr.parent_id)
    assert parent.info.status == "FINISHED"  # its status is the sweep's, not changed by recording
    assert parent.data.metrics == {"confirm_kendall_tau": 0.8, "confirm_n": 3, "confirm_seconds": 12.5,
                                   "confirm_errors": 0}
    child = tr.children["pixel3"]
    assert c.get_run(child).data.metrics == {"confirmed_accuracy_best": 64.0}
    for run_id, key in ((tr.parent_id, "confirm_kendall_tau"), (tr.parent_id, "confirm_n"),
                        (child, "confirmed_accuracy_best")):
        assert len(c.get_metric_history(run_id, key)) == 1, key  # recorded once, not once per call
    assert sorted(a.path for a in c.list_artifacts(tr.parent_id, "confirm")) == ["confirm/confirm.json",
                                                                                   "confirm/confirm.png"]


def test_a_store_gone_during_training_loses_no_results_and_makes_no_store(tmp_path):
    """The results are on disk before MLflow is written; recording into a store removed meanwhile is an error
    naming the results file and the fix, and no store or parent run is made in its place."""
    from orchestrator.confirm import record_confirm

    run, pcfg, tr = _finished_run(tmp_path)
    out, storage = _results(run)
    db = tmp_path / "mlflow.db"
    db.rename(tmp_path / "elsewhere.db")
    with pytest.raises(ConfigError, match=rf"is gone; restore it, or pass --no-tracking.*The results are in "
                                          rf"{storage / 'confirm.json'}"):
        record_confirm(run, pcfg, out, storage)
    assert not db.exists() and json.loads((storage / "confirm.json").read_text()) == out
    (tmp_path / "elsewhere.db").rename(db)
    tr.client.delete_run(tr.parent_id)
    with pytest.raises(ConfigError, match=r"holds no run of"):
        record_confirm(run, pcfg, out, storage)
    assert _parents(tr) == []
