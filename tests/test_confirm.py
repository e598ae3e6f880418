"""`hwnas confirm`: the chosen fronts trained from scratch as Ray Tune trials (ASHA, checkpoints), a bad trial
failing alone, a killed confirm continued by Tuner.restore, results in the run dir and MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from orchestrator.config import parse_config
from orchestrator.pipeline import run_pipeline

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_confirm_trains_the_fronts_and_survives_a_kill(tmp_path, ray_cluster):
    cfg = parse_config({
        "name": "cf", "output_dir": str(tmp_path / "runs"),
        "space": {"name": "nb201", "options": {"channels": 4, "cells_per_stage": 1}},
        "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep",
                     "supernet": {"data": {"name": "digits", "max_train": 192}}},
        "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},
        "search": {"n_trials": 20, "population": 10, "domain": "table"},
        "sweep": {"targets": ["pixel3"], "k": 4},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "cf"},
        "confirm": {"top": 3, "epochs": 3, "grace_period": 1, "batch_size": 32}})
    run_pipeline(cfg, progress=False)
    run = cfg.run_dir()
    front = run / "fronts" / "pixel3.json"
    rows = json.loads(front.read_text())
    rows.append({**rows[0], "arch": "|not_an_op~0|+|none~0|none~1|+|none~0|none~1|none~2|", "accuracy": 99.0})
    front.write_text(json.dumps(rows))  # a trial that must fail alone
    from orchestrator.confirm import front_archs

    archs = front_archs(run, 3)
    assert len(archs) >= 2 and any("not_an_op" in a for a in archs)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "orchestrator.cli", "confirm", str(run), "--no-progress", "--concurrent", "1"]
    p = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    tune_dir = run / "confirm" / "tune"
    while p.poll() is None and time.monotonic() < deadline:
        if any(tune_dir.glob("*/checkpoint_*")):  # a trial has checkpointed: kill the driver mid-confirm
            break
        time.sleep(0.1)
    killed = p.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    assert killed, "confirm finished before it could be killed"
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    out = json.loads((run / "confirm" / "confirm.json").read_text())
    assert out["n"] == len(archs) and out["n_errors"] == 1
    bad = next(r for r in out["architectures"] if "not_an_op" in r["arch"])
    assert bad["status"] == "error" and "not_an_op" in bad["error"]
    good = [r for r in out["architectures"] if r["status"] != "error"]
    assert good and all(0 < r["confirmed"] <= 100 and 1 <= r["epochs"] <= 3 for r in good)
    assert any(r["status"] == "trained" for r in good) and (run / "confirm" / "confirm.png").stat().st_size > 0
    reports = [f.read_text().splitlines() for f in tune_dir.glob("*/result.json")]
    last_pid = [json.loads(lines[-1])["pid"] for lines in reports if lines]
    assert len(last_pid) == len(archs) - 1  # every trial but the failing one reported
    assert len(set(last_pid)) < len(last_pid), last_pid  # trials reused a process (reuse_actors: 5-6 s each)
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = c.search_runs([c.get_experiment_by_name("cf").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert "confirm_kendall_tau" in parent.data.metrics and parent.info.status == "FINISHED"
    child = next(r for r in runs if r.data.tags.get("hwnas.device") == "pixel3")
    assert child.data.metrics["confirmed_accuracy_best"] == pytest.approx(
        max(r["confirmed"] for r in good if "pixel3" in r["devices"]))
