"""Soak at scale: a sweep over many SIMULATED targets and a long search, as `hwnas run` runs them.

Part 1: sweeps of N simulated targets (``--targets``, ascending), each a fresh `hwnas run` process (NB201,
shipped tables, table accuracy, MLflow on, one store for all). Reported per N: wall time, the driver's peak
RSS (from /proc, sampled), and whether the MLflow store still answers: the experiment's runs listed through
MLflow's REST API of an `mlflow server` bound to 127.0.0.1 (what the UI loads).

Part 2: a search of ``--trials`` trials on the table domain, the driver SIGKILLed when 90 % of the trials are
in the journal, then `--resume`: completed trials == budget, no architecture evaluated twice, no MLflow run
left RUNNING.

    python bench/soak.py [--targets 250 1000] [--trials 10000]
"""

from __future__ import annotations

import argparse
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

import yaml
from mlflow_server import call, loopback_server, search_runs


def peak_rss_mb(proc: subprocess.Popen) -> float:
    """Sample the process's resident set until it exits; the peak in MB."""
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.2)
    return peak / 1024


def config(work: Path, name: str, **over: object) -> Path:
    cfg = {"name": name, "output_dir": str(work / "runs"),
           "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep"},
           "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},  # the 1,999-cell table (issue 18)
           "search": {"n_trials": 200, "population": 40, "domain": "table"},
           "sweep": {"targets": [], "k": 10}, "tracking": {"uri": f"sqlite:///{work}/mlflow.db",
                                                          "experiment": "soak"}}
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v}
    p = work / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def rest_runs(work: Path) -> tuple[int, float]:
    """Runs of experiment 'soak' through the REST API of an mlflow server on loopback; (count, seconds)."""
    with loopback_server(f"sqlite:///{work}/mlflow.db") as base:
        if base is None:
            return -1, float("nan")
        t0 = time.perf_counter()
        exp = call(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=soak")["experiment"]
        return len(search_runs(base, exp["experiment_id"])), time.perf_counter() - t0


def sweep_part(work: Path, sizes: list[int]) -> None:
    if not sizes:
        return
    print(f"{'targets':>8} {'wall s':>8} {'peak RSS MB':>12} {'runs via REST':>14} {'REST s':>7}")
    total = 0
    for n in sizes:
        cfg = config(work, f"sims{n}", sweep={"simulated": n})
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--no-progress"], cwd=work,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak = peak_rss_mb(p)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            print(f"{n:>8} failed: {p.stderr.read()[-500:]}")
            return
        total += n + 1
        runs, secs = rest_runs(work)
        print(f"{n:>8} {wall:8.1f} {peak:12.0f} {runs:>8}/{total:<5} {secs:7.2f}", flush=True)


def search_part(work: Path, trials: int) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    cfg = config(work, "long", search={"n_trials": trials, "population": 50}, sweep={"targets": ["pixel3"]})
    journal = work / "runs" / "long" / "optuna.journal"
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--no-progress"], cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.perf_counter()
    while p.poll() is None:
        told = journal.read_bytes().count(b'"state":1') if journal.is_file() else 0
        if told >= 0.9 * trials:
            break
        time.sleep(0.5)
    killed = p.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--resume", "--no-progress"],
                       cwd=work, capture_output=True, text=True)
    study = optuna.load_study(study_name="long", storage=JournalStorage(JournalFileBackend(str(journal))))
    complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
    evals = [json.loads(x)["arch"] for x in (work / "runs" / "long" / "evaluations.jsonl").read_text().splitlines()]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    running = sum(x.info.status == "RUNNING" for x in client.search_runs(
        [client.get_experiment_by_name("soak").experiment_id], max_results=5000))
    print(f"\nsearch of {trials} trials: {'killed' if killed else 'NOT killed'} after {first:.0f}s; resume rc "
          f"{r.returncode} in {time.perf_counter() - t1:.0f}s; completed {complete}/{trials}; duplicate "
          f"evaluations {len(evals) - len(set(evals))}; MLflow runs left RUNNING {running}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, nargs="*", default=[250, 1000])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwnas-soak-"))
    try:
        sweep_part(work, sorted(args.targets))
        if args.trials:
            search_part(work, args.trials)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
