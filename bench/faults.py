"""The fault matrix: bad input and crashes, each a row, run the way a user meets them (the `hwnas` command in a
fresh process). For each row: what should happen, what did, how long until a clear error, and after a kill and
`--resume`, whether completed trials == budget, no architecture was evaluated twice and no MLflow run is left
RUNNING. The goal: every row passes, no traceback reaches the user, no refusal takes over 10 s.

    python bench/faults.py [--quick]

``--quick`` runs the rows that need no kill (the tests run those too: tests/test_faults.py).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REFUSE_S = 10.0  # a refusal should take less (a bench figure: the rows' seconds; tests assert behaviour only)
NB201_CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
OTHER_CELL = "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"

# name -> (CSV text, a fragment the error must hold)
BAD_CSVS: dict[str, tuple[str, str]] = {
    "csv: NaN latency": (f"arch,lat_ms_a\n{NB201_CELL},nan\n", "must be a positive, finite number"),
    "csv: negative latency": (f"arch,lat_ms_a\n{NB201_CELL},-2\n", "must be a positive, finite number"),
    "csv: zero latency": (f"arch,lat_ms_a\n{NB201_CELL},0\n", "must be a positive, finite number"),
    "csv: duplicate arch": (f"arch,lat_ms_a\n{NB201_CELL},1\n{NB201_CELL},2\n", "duplicate architecture"),
    "csv: non-numeric latency": (f"arch,lat_ms_a\n{NB201_CELL},fast\n", "is not a number"),
    "csv: empty file": ("", "file is empty"),
    "csv: header only": ("arch,lat_ms_a\n", "no architectures"),
    "csv: invalid arch": ("arch,lat_ms_a\n|conv~0|+|none~0|,1\n", "malformed NB201 arch"),
    "csv: another space's arch": ("arch,lat_ms_a\nk3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4,1\n",
                                  "malformed NB201 arch"),
    "csv: no arch column": (f"name,lat_ms_a\n{NB201_CELL},1\n", "no column 'arch'"),
    # issue 24.6: hostile or huge tables
    "csv: a cell of 140,000 characters": (f"arch,lat_ms_a\n{NB201_CELL},{'1' * 140_000}\n",
                                          "not a readable CSV row"),
    "csv: 1,025 device columns": ("arch," + ",".join(f"d{i}" for i in range(1025)) + f"\n{NB201_CELL}"
                                  + ",1" * 1025 + "\n", "a table holds at most 1,024 devices"),
}

BASE = {"accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep"},
        "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},  # the 1,999-cell table (issue 18)
        "search": {"n_trials": 40, "population": 10, "domain": "table"},
        "sweep": {"targets": ["pixel3", "sim:0"], "k": 5}}

# name -> (config overrides, a fragment the error must hold)
BAD_CONFIGS: dict[str, tuple[dict, str]] = {
    "config: unknown device option": ({"sweep": {"targets": [{"name": "remote:box", "options": {"runtime": "x"}}]}},
                                      "option 'runtime': unknown option (valid options:"),
    "config: unknown device": ({"sweep": {"targets": ["pixel9"]}}, "unknown device 'pixel9'"),
    "config: k beyond the table": ({"sweep": {"targets": ["edgetpu"], "k": 5000}},
                                   "can be measured on 1,740 architectures"),
    "config: predictor samples beyond the space": (
        {"accuracy": {"source": "predictor", "predictor_samples": 20000}}, "which has 15,625"),
    "config: absurd n_trials": ({"search": {"n_trials": 10**12}}, "trials would take over"),
    "config: unknown key": ({"serach": {}}, "serach: Extra inputs are not permitted"),
    "config: storage URL with a password, no driver": (  # the password redacted, the extra named
        {"search": {"storage": "postgresql://user:PASSWORD@127.0.0.1:1/db"}}, "user:***@127.0.0.1:1/db' is not "
                                                                                "installed (no module 'psycopg'); "
                                                                                "pip install 'hwnas[postgres]'"),
    "config: budget below the proxy's fastest": ({"search": {"latency_budget_ms": 0.5}},
                                                 "set it to at least 2.906"),

    # issue 24.6: every count bounded at validation
    "config: ray.num_cpus 1e14": ({"ray": {"num_cpus": 10**14}}, "ray.num_cpus: Input should be less than or equal"),
    "config: sweep.refine_trials 1.0e308": ({"sweep": {"refine_trials": 1e308}}, "sweep.refine_trials: "),
    "config: epochs 1e300": ({"accuracy": {"supernet": {"train": {"epochs": 10**300}}}},
                             "accuracy.supernet.train.epochs: "),
    "config: a user's table with a bad cell": (None, "line 3, column 'lat_ms_a'"),
}


@dataclass
class Row:
    name: str
    expected: str
    observed: str = ""
    seconds: float = 0.0
    ok: bool = False


def hwnas(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
          ) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0


def write_config(path: Path, name: str, over: dict | None = None, **extra: object) -> Path:
    import yaml

    cfg = json.loads(json.dumps(BASE))
    for k, v in (over or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    cfg.update(name=name, output_dir=str(path.parent / "runs"),
               tracking={"uri": f"sqlite:///{path.parent}/mlflow.db", "experiment": "faults"}, **extra)
    path.write_text(yaml.safe_dump(cfg))
    return path


def refused(row: Row, rc: int, out: str, secs: float, fragment: str) -> Row:
    row.seconds = secs
    clean = "Traceback" not in out
    row.ok = rc == 2 and fragment in out and clean  # the behaviour; its time is a figure (see main)
    lines = out.splitlines()
    first = next((x for x in lines if fragment in x), next((x for x in lines if "error" in x.lower()), out[:120]))
    row.observed = f"rc {rc}, {'no traceback' if clean else 'TRACEBACK'}: {first.strip()[:150]}"
    return row


def csv_row(work: Path, i: int, name: str) -> Row:
    """The ``i``-th bad CSV (``name`` in BAD_CSVS) given to `hwnas latency srcc`, in ``work/{i}.csv``."""
    text, frag = BAD_CSVS[name]
    p = work / f"{i}.csv"
    p.write_text(text)
    rc, out, secs = hwnas(["latency", "srcc", "--table", str(p)], work)
    return refused(Row(name, f"refused naming the file and line: '{frag}'"), rc, out, secs, frag)


def config_row(work: Path, i: int, name: str) -> Row:
    """The ``i``-th bad config (``name`` in BAD_CONFIGS) given to `hwnas validate`, in ``work/c{i}.yaml``."""
    over, frag = BAD_CONFIGS[name]
    if over is None:  # a user's CSV as latency.table, with a bad cell: refused by validate
        table = work / "mine.csv"
        table.write_text(f"arch,lat_ms_a\n{NB201_CELL},1.0\n{OTHER_CELL},x\n")
        over = {"latency": {"table": str(table), "proxy": "a"}, "sweep": {"targets": ["sim:0"]},
                "search": {"domain": "table"}}
    cfg = write_config(work / f"c{i}.yaml", f"c{i}", over)
    rc, out, secs = hwnas(["validate", str(cfg)], work)
    return refused(Row(name, f"validate refuses it, with its path: '{frag}'"), rc, out, secs, frag)


def output_dir_row(work: Path) -> Row:
    blocker = work / "not_a_dir"
    blocker.write_text("a file where the output dir should be")
    cfg = write_config(work / "od.yaml", "od")
    rc, out, secs = hwnas(["run", str(cfg), "--output-dir", str(blocker / "runs"), "--no-progress"], work)
    return refused(Row("output dir is a file", "refused before any work: 'cannot use the output directory'"),
                   rc, out, secs, "cannot use the output directory")


def corrupt_mlflow_row(work: Path) -> Row:
    d = work / "corrupt"
    d.mkdir()
    (d / "mlflow.db").write_bytes(os.urandom(4096))
    cfg = write_config(d / "cm.yaml", "cm")
    rc, out, secs = hwnas(["run", str(cfg), "--no-progress"], d)
    row = refused(Row("corrupt mlflow.db", "refused before any work: 'MLflow store ... cannot be used'"),
                  rc, out, secs, "cannot be used")
    row.ok = row.ok and not (d / "runs" / "cm" / "pipeline.json").exists()
    return row


def locked_mlflow_row(work: Path) -> Row:
    """Another process holds an exclusive lock on the store for the whole attempt."""
    d = work / "locked"
    d.mkdir()
    cfg = write_config(d / "lk.yaml", "lk")
    from orchestrator.tracking import Tracker

    Tracker(f"sqlite:///{d}/mlflow.db", "faults")  # the store exists, with its tables
    marker = d / "locked.flag"
    locker = subprocess.Popen([sys.executable, "-c", (
        f"import sqlite3, time, pathlib; c = sqlite3.connect(r'{d / 'mlflow.db'}', isolation_level=None, "
        f"timeout=30); c.execute('BEGIN EXCLUSIVE'); pathlib.Path(r'{marker}').write_text('1'); time.sleep(120)")])
    try:
        while not marker.exists() and locker.poll() is None:
            time.sleep(0.05)
        rc, out, secs = hwnas(["run", str(cfg), "--no-progress"], d)
    finally:
        locker.kill()
        locker.wait()
    return refused(Row("locked mlflow.db", "refused, naming the lock: 'another process holds a lock'"), rc, out,
                   secs, "another process holds a lock")


def truncated_checkpoint_row(work: Path) -> Row:
    """A supernet run dir whose checkpoint was cut short (a disk filled up, a copy interrupted)."""
    d = work / "sn"
    rc, out, _ = hwnas(["supernet", "train", "--space", "nb201", "--option", "channels=4", "--option",
                        "cells_per_stage=1", "--epochs", "1", "--max-train", "64", "--out", str(d)], work)
    ck = d / "last.pt"
    if rc != 0 or not ck.is_file():
        return Row("truncated supernet checkpoint", "", f"could not train the run to break: {out[-200:]}")
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    rc, out, secs = hwnas(["supernet", "evaluate", "--run", str(d), "--n", "2", "--out", str(work / "e.csv")], work)
    return refused(Row("truncated supernet checkpoint", f"refused naming the file: '{ck.name}'"), rc, out, secs,
                   str(ck))


def concurrent_row(work: Path) -> Row:
    d = work / "twice"
    d.mkdir()
    cfg = write_config(d / "tw.yaml", "tw", {"search": {"n_trials": 200, "population": 20}})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--no-progress"], cwd=d,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    lock = d / "runs" / ".tw.lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().startswith("pid")) and first.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    rc, out, secs = hwnas(["run", str(cfg), "--no-progress"], d)
    row = refused(Row("two runs on one run dir", "the second refused by the lock; the first finishes"), rc, out,
                  secs, "in use by another hwnas run")
    first_out, _ = first.communicate(timeout=600)
    row.ok = row.ok and first.returncode == 0 and "run tw:" in first_out
    row.observed += f"; first run rc {first.returncode}"
    return row


def _lines(p: Path) -> list[str]:
    return [x for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []


# Fault injection for the row "kill inside an MLflow write": the driver, started as `hwnas run`, SIGKILLs its
# own process group inside the third target's MLflow record: its nested run exists, its data is not written.
KILL_IN_MLFLOW_WRITE = """
import os, signal, sys
import orchestrator.tracking as t
_record, _calls = t.Tracker.record, [0]
def record(self, run_id, params, metrics):
    _calls[0] += 1
    if _calls[0] == 3:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    return _record(self, run_id, params, metrics)
t.Tracker.record = record
from orchestrator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def kill_row(work: Path, name: str, phase: str, until: Callable[[Path], bool], supernet: bool = False,
             inject: str | None = None) -> Row:
    """Start a run, SIGKILL the driver once ``until(run_dir)`` holds (or let ``inject``, code run in the driver
    before `hwnas`, kill it), tear the journal's last line, resume."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    d = work / name.replace(" ", "_")
    d.mkdir()
    over = {"sweep": {"targets": ["pixel3", "edgegpu", *(f"sim:{i}" for i in range(12))], "k": 5}}
    if supernet:
        over["accuracy"] = {"source": "supernet", "supernet": {
            "options": {"channels": 4, "cells_per_stage": 1}, "data": {"name": "digits"},
            "train": {"epochs": 3, "batch_size": 64}, "eval": {"calib_batches": 1, "max_val": 90}, "actors": 1}}
        over["search"] = {"n_trials": 24, "population": 6, "domain": "table"}
    cfg = write_config(d / "k.yaml", "k", over, ray={"num_cpus": 2})
    run_dir = d / "runs" / "k"
    ray_tmp = tempfile.mkdtemp(prefix="hwf", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    row = Row(name, f"SIGKILL {phase}; --resume completes: trials == budget, 0 duplicate evaluations, "
                    f"0 MLflow runs RUNNING")
    try:
        start = ["-c", inject] if inject else ["-m", "orchestrator.cli"]
        p = subprocess.Popen([sys.executable, *start, "run", str(cfg), "--no-progress"], cwd=d,
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not until(run_dir) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = p.poll() is None or (inject is not None and p.returncode == -signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the driver and the local Ray it started
        p.wait(30)
        journal = run_dir / "optuna.journal"
        if journal.is_file():
            with open(journal, "ab") as f:
                f.write(b'{"op_code": 6, "worker_id": "dead", "trial_')  # a write torn by the kill
        rc, out, secs = hwnas(["run", str(cfg), "--resume", "--no-progress"], d, env=env)
        row.seconds = secs
        study = optuna.load_study(study_name="k", storage=JournalStorage(JournalFileBackend(str(journal))))
        complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
        evals = [json.loads(x)["arch"] for x in _lines(run_dir / "evaluations.jsonl")]
        client = MlflowClient(f"sqlite:///{d}/mlflow.db")
        runs = client.search_runs([client.get_experiment_by_name("faults").experiment_id])
        running = sum(r.info.status == "RUNNING" for r in runs)
        kids = [r.data.tags.get("hwnas.device") for r in runs if "mlflow.parentRunId" in r.data.tags]
        dup_runs = len(kids) - len(set(kids))  # a half-written target run must be superseded, not kept beside
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
        budget = BASE["search"]["n_trials"] if not supernet else 24
        row.ok = (killed and rc == 0 and "Traceback" not in out and complete == budget
                  and len(evals) == len(set(evals)) and running == 0 and len(summary.get("targets", [])) == 14
                  and dup_runs == 0 and len(kids) == 14)
        row.observed = (f"{'killed' if killed else 'NOT KILLED (finished first)'}; resume rc {rc}, trials "
                        f"{complete}/{budget}, duplicate evaluations {len(evals) - len(set(evals))}, RUNNING runs "
                        f"{running}, targets {len(summary.get('targets', []))}/14, MLflow target runs {len(kids)} "
                        f"({dup_runs} duplicated)")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return row


def _ray_processes(pgid: int, title: str) -> list[int]:
    """Ray workers of the run (children of a process in its process group: Ray's workers start sessions of
    their own) whose title holds ``title`` (Ray names them ray::<task or actor.method>)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines()]
    rows = [r for r in rows if len(r) == 4]
    ours = {int(r[0]) for r in rows if int(r[2]) == pgid}
    return [int(r[0]) for r in rows if int(r[1]) in ours and title in r[3]]


def worker_kill_row(work: Path, name: str, title: str, targets: list, when: Callable[[Path], bool]) -> Row:
    """Run to the end while a Ray worker whose title holds ``title`` is SIGKILLed once it runs."""
    d = work / name.replace(" ", "_")
    d.mkdir()
    cfg = write_config(d / "w.yaml", "w", {"sweep": {"targets": targets, "k": 5, "retest": 3}},
                       ray={"num_cpus": 2})
    ray_tmp = tempfile.mkdtemp(prefix="hww", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    row = Row(name, "Ray restarts or retries it; the run finishes with every target, rc 0")
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--no-progress"], cwd=d,
                             env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        killed: list[int] = []
        deadline = time.monotonic() + 300
        while p.poll() is None and not killed and time.monotonic() < deadline:
            if when(d / "runs" / "w"):
                killed = _ray_processes(p.pid, title)
                for pid in killed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        out, _ = p.communicate(timeout=600)
        row.seconds = time.perf_counter() - t0
        summary = json.loads((d / "runs" / "w" / "summary.json").read_text()) \
            if (d / "runs" / "w" / "summary.json").is_file() else {}
        n = len(summary.get("targets", []))
        row.ok = bool(killed) and p.returncode == 0 and n == len(targets) and "Traceback" not in out
        row.observed = (f"killed {len(killed)} {title} process(es); rc {p.returncode}, targets {n}/{len(targets)}"
                        f"{'' if 'Traceback' not in out else ', TRACEBACK'}")
    finally:
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return row


def alias_bomb_row(work: Path) -> Row:
    """Issue 24.6: a "billion laughs" YAML inside a section the config does not check (space options)."""
    p = work / "bomb.yaml"
    lines = ["name: bomb", "space:", "  name: nb201", "  options:", "    junk:",
             "      a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    p.write_text("\n".join(lines) + "\n")
    rc, out, secs = hwnas(["validate", str(p)], work)
    return refused(Row("config: YAML alias bomb", "refused before it expands: 'aliases (*name) expand to over'"), rc,
                   out, secs, "aliases (*name) expand to over")


def new_store_race_row(work: Path) -> Row:
    """Issue 24.3: three processes open one new MLflow SQLite store at once; all must work."""
    d = work / "race"
    d.mkdir()
    go = d / "go"
    code = ("import sys, time\nfrom pathlib import Path\nwhile not Path(sys.argv[2]).exists(): time.sleep(0.01)\n"
            "from orchestrator.tracking import Tracker\nt = Tracker(sys.argv[1], 'race')\n"
            "t.start(Path(sys.argv[3]), sys.argv[3], False)\nt.finish(t.parent_id)\n")
    uri = f"sqlite:///{d}/mlflow.db"
    ps = [subprocess.Popen([sys.executable, "-c", code, uri, str(go), f"r{i}"], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True) for i in range(3)]
    time.sleep(3)
    t0 = time.perf_counter()
    go.touch()
    outs = [p.communicate(timeout=300)[0] for p in ps]
    row = Row("three runs create one new MLflow store", "all three work (first use serialised by a lock)")
    row.seconds = time.perf_counter() - t0
    rcs = [p.returncode for p in ps]
    row.ok = rcs == [0, 0, 0]
    failed = [o for o, p in zip(outs, ps, strict=True) if p.returncode]
    row.observed = f"rc {rcs}" + (": " + failed[0].strip().splitlines()[-1][:150] if failed else "")
    return row


def local_ray_ports_row(work: Path) -> Row:
    """Issue 24.9: every TCP socket the local Ray of a run (ray_connect.connect(None)) listens on, per process."""
    ray_tmp = tempfile.mkdtemp(prefix="hwp", dir="/tmp")  # short: Ray's socket paths stay under 107 bytes
    code = ("import json, ray, psutil\nfrom orchestrator.ray_connect import connect\n"
            f"connect(None, 1, _temp_dir={ray_tmp!r})\nray.get(ray.remote(lambda: 1).remote())\n"
            "me = psutil.Process()\nprint(json.dumps(sorted({(p.name()[:24], c.laddr.ip, c.laddr.port) "
            "for p in [me, *me.children(recursive=True)] for c in p.net_connections('inet') "
            "if c.status == psutil.CONN_LISTEN})))\nray.shutdown()\n")
    row = Row("ports: a local run's Ray beyond loopback", "every listening socket on 127.0.0.1/::1")
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    row.seconds = time.perf_counter() - t0
    try:
        socks = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        row.observed = f"rc {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1][:150]}"
        return row
    outside = [s for s in socks if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    row.ok = bool(socks) and not outside
    row.observed = (f"{len(socks)} listening sockets, {len(outside)} beyond loopback"
                    + (f": {', '.join(f'{n} {ip}:{port}' for n, ip, port in outside[:4])}" if outside else ""))
    return row



def quick_rows(work: Path, workers: int = 1) -> list[Row]:
    """The rows without a kill, in a fixed order. ``workers`` > 1 runs that many rows at once (threads, each
    starting its own `hwnas` processes, each row in its own files under ``work``): the same checks in less wall
    time, for the tests; the bench keeps 1, so that each row's seconds is its own refusal time."""
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    jobs = [*(partial(csv_row, work, i, name) for i, name in enumerate(BAD_CSVS)),
            *(partial(config_row, work, i, name) for i, name in enumerate(BAD_CONFIGS)),
            *(partial(f, work) for f in (output_dir_row, corrupt_mlflow_row, locked_mlflow_row,
                                         truncated_checkpoint_row, concurrent_row, alias_bomb_row,
                                         new_store_race_row))]
    if workers <= 1:
        return [job() for job in jobs]
    n = len(jobs) - 7
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the last seven (the longest) first: the short ones fill in
        futures = {i: pool.submit(jobs[i]) for i in [*range(n, len(jobs)), *range(n)]}
        return [futures[i].result() for i in range(len(jobs))]


def signal_row(work: Path, name: str, sig: int, group: bool, until: Callable[[Path], bool]) -> Row:
    """Issue 24.1: stop the driver with ``sig`` (to its process group when ``group``: a terminal's Ctrl-C) once
    ``until(run_dir)`` holds: one line saying how to resume, exit 128 + sig, the MLflow parent KILLED, nothing
    RUNNING; then --resume finishes the run."""
    from mlflow.tracking import MlflowClient

    d = work / name.replace(" ", "_").replace("/", "_")
    d.mkdir()
    cfg = write_config(d / "s.yaml", "s", {"sweep": {"targets": ["pixel3", "edgegpu", *(f"sim:{i}" for i in range(8))],
                                                     "k": 5}}, ray={"num_cpus": 2})
    run_dir = d / "runs" / "s"
    ray_tmp = tempfile.mkdtemp(prefix="hwf", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    row = Row(name, f"one line with --resume, rc {128 + sig}, MLflow parent KILLED; --resume finishes")
    try:
        p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(cfg), "--no-progress"], cwd=d,
                             env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        deadline = time.monotonic() + 300
        while not until(run_dir) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.perf_counter()
        (os.killpg if group else os.kill)(p.pid, sig)
        out, _ = p.communicate(timeout=120)
        row.seconds = time.perf_counter() - t0
        ours = [x for x in out.splitlines() if x.startswith("hwnas:")]
        c = MlflowClient(f"sqlite:///{d}/mlflow.db")
        runs = c.search_runs([c.get_experiment_by_name("faults").experiment_id])
        parent = [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags]
        running = sum(r.info.status == "RUNNING" for r in runs)
        rc2, out2, _ = hwnas(["run", str(cfg), "--resume", "--no-progress"], d, env=env)
        row.ok = (p.returncode == 128 + sig and len(ours) == 1 and "--resume" in ours[0] and "Traceback" not in out
                  and parent == ["KILLED"] and running == 0 and rc2 == 0)
        row.observed = (f"rc {p.returncode} in {row.seconds:.1f}s, {len(ours)} hwnas line(s), parent {parent}, "
                        f"{running} RUNNING; resume rc {rc2}{', TRACEBACK' if 'Traceback' in out + out2 else ''}")
    finally:
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return row


def kill_rows(work: Path) -> list[Row]:
    return [
        kill_row(work, "kill during supernet training", "while the supernet trains",
                 lambda r: (r / "supernet" / "last.pt").is_file(), supernet=True),
        kill_row(work, "kill during search", "mid-search",
                 lambda r: len(_lines(r / "evaluations.jsonl")) >= 15),
        kill_row(work, "kill during sweep", "after some targets were recorded",
                 lambda r: len(list((r / "targets").glob("*.json"))) >= 3 if (r / "targets").is_dir() else False),
        kill_row(work, "kill inside an MLflow write", "inside a target's MLflow record (run created, data not)",
                 lambda r: False, inject=KILL_IN_MLFLOW_WRITE),
        worker_kill_row(work, "Ray worker killed in a per-target task", "ray::run_target",
                        [*(f"sim:{i}" for i in range(40))], lambda r: True),
        worker_kill_row(work, "measuring actor killed", "ray::LatencyService.measure",
                        ["torch-cpu", "sim:0"], lambda r: True),
        signal_row(work, "SIGTERM during search", signal.SIGTERM, False,
                   lambda r: len(_lines(r / "evaluations.jsonl")) >= 15),
        signal_row(work, "Ctrl-C during sweep", signal.SIGINT, True,
                   lambda r: (r / "targets").is_dir() and len(list((r / "targets").glob("*.json"))) >= 2),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the rows without a kill")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwnas-faults-"))
    t0 = time.perf_counter()
    try:
        rows = quick_rows(work) + ([] if args.quick else [*kill_rows(work), local_ray_ports_row(work)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'':2}{'fault':<44}{'s':>6}  observed")
    slow = [r.name for r in rows if "kill" not in r.name and r.seconds >= REFUSE_S]
    for r in rows:
        print(f"{'ok' if r.ok else 'NO':2} {r.name:<43}{r.seconds:6.1f}{' SLOW' if r.name in slow else ''}  "
              f"{r.observed}")
    print(f"\n{sum(r.ok for r in rows)}/{len(rows)} rows pass; slowest refusal "
          f"{max((r.seconds for r in rows if 'kill' not in r.name), default=0):.1f}s ({len(slow)} over "
          f"{REFUSE_S:.0f}s); {time.perf_counter() - t0:.0f}s")
    sys.exit(0 if all(r.ok for r in rows) and not slow else 1)


if __name__ == "__main__":
    main()
