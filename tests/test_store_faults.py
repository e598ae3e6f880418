"""The MLflow store under faults a user meets: two runs opening one new SQLite store at once (both work), and a
store whose directory cannot be written (one clear error, at once, naming the path and the fix)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

OPEN_AND_RECORD = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from orchestrator.tracking import Tracker
t = Tracker(sys.argv[1], "shared")
t.start(Path(sys.argv[3]), sys.argv[3], False)
t.finish(t.parent_id)
"""


def test_two_processes_create_one_new_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_LOGGING_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_RECORD, uri, str(go), f"run{i}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    time.sleep(3)  # all three imported and waiting: they start on the store together
    go.touch()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outs)
    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("shared").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["run0", "run1", "run2"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_unwritable_store_fails_at_once_with_one_line(tmp_path):
    """`hwnas run` from a read-only working directory (the default store is ./mlflow.db there). Root writes
    through permission bits, so as root the directory is a read-only mount (a private mount namespace)."""
    import shutil

    work = tmp_path / "ro"
    work.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: ro\noutput_dir: {tmp_path}/runs\naccuracy: {{source: table}}\n"
                   "latency: {proxy: fpga}\nsearch: {n_trials: 40, population: 10, domain: table}\n"
                   "sweep: {targets: [pixel3], k: 5}\n")
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--no-progress"]
    if os.geteuid() == 0:
        if not shutil.which("unshare") or subprocess.run(["unshare", "-Urm", "true"]).returncode:
            pytest.skip("root without mount namespaces: cannot make a directory read-only for root")
        cmd = ["unshare", "-Urm", "sh", "-c", f'mount -t tmpfs -o ro tmpfs "{work}" && cd "{work}" && exec "$@"',
               "sh", *cmd]
    else:
        work.chmod(0o555)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    finally:
        work.chmod(0o755)
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert "Traceback" not in out and "WARNING" not in out, out
    ours = [x for x in out.splitlines() if x.startswith("hwnas:")]
    assert len(ours) == 1, out
    assert f"{work}/mlflow.db" in ours[0] and "tracking.uri" in ours[0] and "not writable" in ours[0]
    assert not (tmp_path / "runs" / "ro").exists()  # refused before the run dir was claimed


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
