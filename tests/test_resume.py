"""Kill a real `hwnas run` with SIGKILL mid-search, tear the journal's last line, resume, and check the
resumed study: completed trials == budget, no architecture evaluated twice, RUNNING trials re-queued."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.ray]

N_TRIALS = 20  # the kill comes at 8 evaluations: well into the search, with most of it left to resume


def _config(tmp_path: Path) -> Path:
    cfg = {
        "name": "kr", "seed": 1, "output_dir": str(tmp_path / "runs"),
        "ray": {"num_cpus": 2},
        "accuracy": {"source": "supernet", "supernet": {
            "options": {"channels": 4, "cells_per_stage": 1}, "data": {"name": "digits"},
            "train": {"epochs": 1, "batch_size": 64}, "eval": {"calib_batches": 1, "max_val": 90}, "actors": 1}},
        "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
        "search": {"algorithm": "nsga2", "n_trials": N_TRIALS, "population": 4, "domain": "space"},
        "sweep": {"targets": ["sim:0"], "k": 5},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "resume"},
    }
    p = tmp_path / "kr.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture
def ray_tmp():
    """Ray's own temp dir for the runs, short: its socket paths must stay under 107 bytes."""
    d = tempfile.mkdtemp(prefix="hwr", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _hwnas(args: list[str], tmp_path: Path, ray_tmp: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args, "--no-progress"], env=env,
                            cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _lines(p: Path) -> list[str]:
    return [x for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []


def test_sigkill_then_resume(tmp_path, ray_tmp):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    from orchestrator.search.storage import REQUEUED_FROM, repair_jsonl_tail

    cfg = _config(tmp_path)
    run_dir = tmp_path / "runs" / "kr"
    evals = run_dir / "evaluations.jsonl"
    proc = _hwnas(["run", str(cfg)], tmp_path, ray_tmp)
    deadline = time.monotonic() + 300
    try:
        while len(_lines(evals)) < 8:  # well into the search: some trials told, a batch in flight
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed:\n{proc.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the run made no progress in 300 s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-search
        proc.wait(30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # and the local Ray it started (its own session)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    assert len(_lines(evals)) < N_TRIALS
    journal = run_dir / "optuna.journal"
    with open(journal, "ab") as f:  # a write torn by the kill
        f.write(b'{"op_code": 6, "worker_id": "dead", "trial_id": 3, "state"')

    res = _hwnas(["run", str(cfg), "--resume"], tmp_path, ray_tmp)
    try:
        out, _ = res.communicate(timeout=420)
    finally:
        if res.poll() is None:
            os.killpg(res.pid, signal.SIGKILL)
    assert res.returncode == 0, out
    assert repair_jsonl_tail(journal) == 0  # the resumed run left an intact journal

    study = optuna.load_study(study_name="kr", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    requeued = [t for t in complete if REQUEUED_FROM in t.user_attrs]
    assert sorted(t.user_attrs[REQUEUED_FROM] for t in requeued) == sorted(t.number for t in failed)
    for t in requeued:  # the re-queued trial ran the dead trial's parameters (a kill between two parameter
        # writes leaves the dead trial some of them, one between creating the trial and its first parameter
        # none: the re-queued one draws the rest)
        dead = next(f.params for f in failed if f.number == t.user_attrs[REQUEUED_FROM])
        assert t.params.items() >= dead.items()
        assert set(t.params) == set(complete[0].params), t.params  # and it is a whole architecture

    rows = [json.loads(x) for x in _lines(evals)]
    archs = [r["arch"] for r in rows]
    assert len(archs) == len(set(archs))  # no architecture evaluated twice, across the kill
    # every trial's architecture was evaluated once; the sweep evaluated a few more (front members it chose on
    # a predicted accuracy)
    assert {t.user_attrs["arch"] for t in complete} <= set(archs)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["target"] for r in summary["targets"]] == ["sim:0"]
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = c.search_runs([c.get_experiment_by_name("resume").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
