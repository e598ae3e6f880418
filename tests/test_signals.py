"""Stop a real `hwnas run` with SIGTERM (mid-search), then its resume with Ctrl-C (SIGINT to its process group,
mid-sweep): each time one line that says the run stopped and how to resume, exit 128 + the signal, the MLflow run
KILLED, every file whole; then `--resume` finishes the run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_resume import _config, _hwnas, _lines, ray_tmp  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _stop_when(proc: subprocess.Popen, ready, sig: int, group: bool) -> str:
    deadline = time.monotonic() + 300
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be stopped:\n{proc.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the run made no progress in 300 s")
            time.sleep(0.05)
        if group:  # what a terminal does on Ctrl-C
            os.killpg(proc.pid, sig)
        else:  # what `kill PID`, systemd or a batch scheduler does
            os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return out


def _runs(tmp_path: Path) -> list:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return c.search_runs([c.get_experiment_by_name("resume").experiment_id])


def _check_stopped(out: str, rc: int, sig: int, tmp_path: Path, run_dir: Path) -> None:
    assert rc == 128 + sig, out
    assert "Traceback" not in out and "SIGABRT" not in out and "Aborted" not in out, out
    ours = [x for x in out.splitlines() if x.startswith("hwnas:")]
    assert len(ours) == 1, out
    assert signal.Signals(sig).name in ours[0] and "--resume" in ours[0] and str(run_dir) in ours[0]
    runs = _runs(tmp_path)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parents] == ["KILLED"]
    # nothing half-written: every JSON file and JSONL line of the run dir parses, no temp file is left
    for f in run_dir.rglob("*"):
        assert not f.name.endswith(".tmp"), f
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix in (".jsonl", ".journal"):
            for line in _lines(f):
                json.loads(line)


def test_sigterm_mid_search_then_ctrl_c_mid_sweep_then_resume(tmp_path, ray_tmp):  # noqa: F811
    """One run stopped twice: SIGTERM to the driver mid-search, then its resume stopped by Ctrl-C mid-sweep, then
    resumed to the end (one run and its resumes: a second fresh run to stop mid-sweep repeated the whole search)."""
    cfg = _config(tmp_path)
    run_dir = tmp_path / "runs" / "kr"
    evals = run_dir / "evaluations.jsonl"
    proc = _hwnas(["run", str(cfg)], tmp_path, ray_tmp)
    out = _stop_when(proc, lambda: len(_lines(evals)) >= 8, signal.SIGTERM, group=False)
    _check_stopped(out, proc.returncode, signal.SIGTERM, tmp_path, run_dir)
    assert not (run_dir / "summary.json").exists() and not (run_dir / "candidates.csv").exists()

    proc = _hwnas(["run", str(cfg), "--resume"], tmp_path, ray_tmp)
    out = _stop_when(proc, lambda: (run_dir / "candidates.csv").is_file(), signal.SIGINT, group=True)
    _check_stopped(out, proc.returncode, signal.SIGINT, tmp_path, run_dir)

    res = _hwnas(["run", str(cfg), "--resume"], tmp_path, ray_tmp)
    try:
        out, _ = res.communicate(timeout=420)
    finally:
        if res.poll() is None:
            os.killpg(res.pid, signal.SIGKILL)
    assert res.returncode == 0, out
    assert json.loads((run_dir / "summary.json").read_text())["targets"][0]["target"] == "sim:0"
    parents = [r for r in _runs(tmp_path) if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parents] == ["FINISHED"]
