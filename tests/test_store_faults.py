"""The MLflow store under faults a user meets: two runs opening one new SQLite store at once (both work), and a
store whose directory cannot be written (one clear error, at once, naming the path and the fix)."""

from __future__ import annotations

import json
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
    cfg.write_text(f"name: ro\noutput_dir: {tmp_path}/runs\naccuracy: {{source: table, "
                   "table_column: test_acc_cifar10_12ep}\nlatency: {proxy: fpga, table: nb201-hwnasbench}\n"
                   "search: {n_trials: 40, population: 10, domain: table}\n"
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


FILL_MID_RUN = """
set -u
mount -t tmpfs -o size=40m tmpfs "$D" || exit 90
"$PY" -m orchestrator.cli run "$CFG" --no-progress > "$OUT/first.txt" 2>&1 &
P=$!
while [ "$(ls "$D/runs/full/targets" 2>/dev/null | wc -l)" -lt 1 ]; do kill -0 $P 2>/dev/null || break; sleep 0.1; done
cat /dev/zero > "$D/fill" 2>/dev/null
wait $P; echo $? > "$OUT/first.rc"
cp "$STORE" "$OUT/after_failure.db"
rm "$D/fill"
"$PY" -m orchestrator.cli run "$CFG" --no-progress --resume > "$OUT/resume.txt" 2>&1; echo $? > "$OUT/resume.rc"
cp "$D/runs/full/summary.json" "$OUT/" 2>/dev/null
exit 0
"""


@pytest.mark.slow
@pytest.mark.ray
def test_disk_full_mid_run_then_resume(tmp_path):
    """The run dir's file system fills up after the first target (a real tmpfs, in a private mount
    namespace): one error naming the run dir, the cause, the fix and --resume; no MLflow run left RUNNING; once
    space is freed, --resume finishes the run."""
    import shutil
    import tempfile

    from mlflow.tracking import MlflowClient

    if not shutil.which("unshare") or subprocess.run(["unshare", "-Urm", "true"]).returncode:
        pytest.skip("no mount namespaces here: cannot mount a small file system to fill")
    d, out = tmp_path / "small", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    store = tmp_path / "mlflow.db"
    cfg = tmp_path / "full.yaml"
    cfg.write_text(f"name: full\noutput_dir: {d}/runs\naccuracy: {{source: table, "
                   "table_column: test_acc_cifar10_12ep}\nlatency: {proxy: fpga, table: nb201-hwnasbench}\n"
                   "search: {n_trials: 60, population: 20, domain: table}\n"
                   "sweep: {targets: [edgegpu, edgetpu, pixel3, eyeriss], k: 5}\n"
                   f"tracking: {{uri: 'sqlite:///{store}', experiment: full}}\n")
    ray_tmp = tempfile.mkdtemp(prefix="hwr", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp, "D": str(d), "OUT": str(out),
           "CFG": str(cfg), "STORE": str(store), "PY": sys.executable}
    try:
        subprocess.run(["unshare", "-Urm", "sh", "-c", FILL_MID_RUN], cwd=tmp_path, env=env, timeout=1200,
                       check=True)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    first = (out / "first.txt").read_text()
    assert (out / "first.rc").read_text().strip() == "2", first
    assert "Traceback" not in first and "Logging error" not in first, first
    ours = [x for x in first.splitlines() if x.startswith("hwnas:")]
    assert len(ours) == 1, first
    assert str(d / "runs" / "full") in ours[0] and "no space left" in ours[0] and "--resume" in ours[0]
    c = MlflowClient(f"sqlite:///{out / 'after_failure.db'}")
    runs = c.search_runs([c.get_experiment_by_name("full").experiment_id])
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags] == ["FAILED"]

    assert (out / "resume.rc").read_text().strip() == "0", (out / "resume.txt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["target"] for r in summary["targets"]] == ["edgegpu", "edgetpu", "pixel3", "eyeriss"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
