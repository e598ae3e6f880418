"""MLflow records in a SQLite store under tmp_path: parent and nested runs, resume marks RUNNING as KILLED."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.tracking import DEVICE_TAG, RUN_DIR_TAG, Tracker, resolve_uri

pytest.importorskip("mlflow")


def test_default_uri_is_an_absolute_sqlite_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:///rel/m.db") == f"sqlite:///{tmp_path.resolve()}/rel/m.db"
    assert resolve_uri("http://host:5000") == "http://host:5000"


def test_parent_child_records_and_resume(tmp_path):
    uri = resolve_uri(None, tmp_path)
    run_dir = tmp_path / "runs" / "r"
    tr = Tracker(uri, "exp")
    tr.start(run_dir, "r", resume=False)
    tr.params(tr.parent_id, {"config": {"search": {"n_trials": 10}, "seed": 3}})
    tr.metrics(tr.parent_id, {"hv": 0.5, "skip": float("nan")})
    done = tr.child("pixel3")
    tr.metrics(done, {"srcc_k": 0.95})
    tr.tags(done, {"decision": "reuse"})
    tr.json(done, {"front": [1, 2]}, "front.json")
    tr.finish(done)
    dangling = tr.child("edgegpu")  # the driver is killed while this one is open

    c = tr.client
    parent = c.get_run(tr.parent_id)
    assert parent.data.params["config.search.n_trials"] == "10"
    assert parent.data.metrics == {"hv": 0.5}
    assert parent.data.tags[RUN_DIR_TAG] == str(run_dir)
    child = c.get_run(done)
    assert child.data.tags["mlflow.parentRunId"] == tr.parent_id and child.data.tags[DEVICE_TAG] == "pixel3"
    art = c.download_artifacts(done, "front.json", str(tmp_path))
    assert json.loads(Path(art).read_text()) == {"front": [1, 2]}
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the database

    again = Tracker(uri, "exp")
    again.start(run_dir, "r", resume=True)
    assert again.parent_id == tr.parent_id  # the same parent run continues
    assert c.get_run(dangling).info.status == "KILLED"
    assert c.get_run(tr.parent_id).info.status == "RUNNING"
    assert again.children == {"pixel3": done}
    redo = again.child("pixel3")  # redone after resume: the old record is superseded
    assert c.get_run(done).info.lifecycle_stage == "deleted" and redo != done
    assert again.stale == {"edgegpu": [dangling]}
    again.child("edgegpu")  # the half-written run of a target the kill interrupted goes too: one run per device
    assert c.get_run(dangling).info.lifecycle_stage == "deleted" and again.stale == {}
    # a fresh start of another run dir gets its own parent
    other = Tracker(uri, "exp")
    other.start(tmp_path / "runs" / "other", "other", resume=False)
    assert other.parent_id != tr.parent_id


def test_disabled_tracker_does_nothing(tmp_path):
    tr = Tracker(None, "exp", enabled=False)
    tr.start(tmp_path, "r", resume=False)
    assert tr.child("x") is None and tr.parent_id is None
    tr.metrics(None, {"a": 1.0})
    assert not (tmp_path / "mlflow.db").exists()


def test_the_sweeps_runs_view_opens_on_its_device_runs(tmp_path):
    """hwnas saves a runs view per sweep (an experiment tag the MLflow UI lists under "Views"): its filter
    selects exactly this sweep's device runs, its columns are the key figures, its link sets the UI's switch
    to "Model training" (MLflow 3.17 opens an experiment on GenAI views otherwise)."""
    from orchestrator.tracking import VIEW_TAG_PREFIX, save_runs_view

    uri = resolve_uri(None, tmp_path)
    run_dir = tmp_path / "runs" / "r"
    tr = Tracker(uri, "exp")
    tr.start(run_dir, "r", resume=False)
    kids = {d: tr.child(d) for d in ("pixel3", "sim:0")}
    other = Tracker(uri, "exp")  # another sweep in the same experiment
    other.start(tmp_path / "runs" / "o", "o", resume=False)
    other.child("pixel3")
    link = save_runs_view(tr, run_dir, "r")
    tags = tr.client.get_experiment(tr.experiment_id).tags
    (key,) = [k for k in tags if k.startswith(VIEW_TAG_PREFIX)]
    envelope = json.loads(tags[key])
    assert envelope["name"] == "hwnas r: devices" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    for col in ("metrics.`hv_ratio`", "tags.`decision`", "metrics.`srcc_k`", "metrics.`unserved_budgets`"):
        assert col in state["selectedColumns"]
    assert state["columnOrder"][:2] == ["tags.`decision`", "metrics.`hv_ratio`"]
    found = tr.client.search_runs([tr.experiment_id], filter_string=state["searchFilter"])
    assert sorted(r.info.run_id for r in found) == sorted(kids.values())  # this sweep's devices, no parent
    assert link == (f"#/experiments/{tr.experiment_id}/runs?viewStateShareKey={key[len(VIEW_TAG_PREFIX):]}"
                    f"&workflowType=machine_learning") == tr.view_link
    assert save_runs_view(tr, run_dir, "r") == link  # saved again (a resume): the same view, not a second one
    assert sum(k.startswith(VIEW_TAG_PREFIX) for k in tr.client.get_experiment(tr.experiment_id).tags) == 1
    assert save_runs_view(Tracker(None, "exp", enabled=False), run_dir, "r") is None


def test_a_finished_sweeps_runs_found_again_without_a_new_run(tmp_path):
    """``recorded_sweep`` (``hwnas int8``'s way into a finished sweep's runs): the parent and its finished device
    runs, no run created and no status changed; a clear error where the store, the experiment or the sweep's
    runs are gone, and no store made in their place."""
    from orchestrator.errors import ConfigError
    from orchestrator.tracking import recorded_sweep

    uri = resolve_uri(None, tmp_path)
    run_dir = tmp_path / "runs" / "r"
    tr = Tracker(uri, "exp")
    tr.start(run_dir, "r", resume=False)
    done = tr.child("pixel3")
    tr.finish(done)
    tr.child("edgegpu")  # left open: not a finished device run
    tr.finish(tr.parent_id)
    n_runs = len(tr.client.search_runs([tr.experiment_id]))
    for _ in range(2):
        found = recorded_sweep(run_dir, uri, "exp")
        assert found.parent_id == tr.parent_id and found.children == {"pixel3": done}
    assert len(tr.client.search_runs([tr.experiment_id])) == n_runs
    assert tr.client.get_run(tr.parent_id).info.status == "FINISHED"
    with pytest.raises(ConfigError, match=r"holds no run of .*other in experiment 'exp' .*--no-tracking"):
        recorded_sweep(tmp_path / "runs" / "other", uri, "exp")
    with pytest.raises(ConfigError, match=r"has no experiment 'gone' .*--no-tracking"):
        recorded_sweep(run_dir, uri, "gone")
    assert tr.client.get_experiment_by_name("gone") is None
    db = tmp_path / "mlflow.db"
    db.rename(tmp_path / "elsewhere.db")
    with pytest.raises(ConfigError, match=rf"the MLflow store {db} that run {run_dir} recorded to is gone; restore "
                                          r"it, or pass --no-tracking"):
        recorded_sweep(run_dir, uri, "exp")
    assert not db.exists()


def test_a_resume_whose_records_are_gone_says_so(tmp_path, caplog):
    """``start(resume=True)`` where the store holds no run of the run dir (a replaced or moved store, deleted
    runs) makes a new parent, with a warning naming the store and the run dir; a resume that finds its parent
    and a fresh start say nothing."""
    import logging

    uri = resolve_uri(None, tmp_path)
    run_dir = tmp_path / "runs" / "r"
    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking"):
        tr = Tracker(uri, "exp")
        tr.start(run_dir, "r", resume=False)
        tr.finish(tr.parent_id)
        again = Tracker(uri, "exp")
        again.start(run_dir, "r", resume=True)
        assert again.parent_id == tr.parent_id and not caplog.records
        moved = Tracker(resolve_uri(None, tmp_path / "elsewhere"), "exp")
        moved.start(run_dir, "r", resume=True)
    assert moved.parent_id not in (None, tr.parent_id)
    (rec,) = caplog.records
    assert f"{tmp_path}/elsewhere/mlflow.db holds no run of {run_dir} to continue" in rec.getMessage()
    assert "a new parent run is made" in rec.getMessage()


def test_a_tracking_server_that_is_not_there_is_one_error_at_once(tmp_path):
    """`tracking.uri: http://127.0.0.1:<closed port>`: a break test saw the run sit silent for minutes (MLflow's
    retries) before any record; now one ConfigError naming the server, before any work."""
    import socket
    import time

    from orchestrator.errors import ConfigError
    from orchestrator.tracking import Tracker

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"cannot reach the MLflow tracking server http://user:\*\*\*@127.0.0.1:"
                                          rf"{port} \(ConnectionRefusedError.*tracking.enabled: false"):
        Tracker(f"http://user:secret@127.0.0.1:{port}", "e")
    assert time.perf_counter() - t0 < 30  # MLflow's own retries took minutes
