"""cluster.yaml against Ray's own validator; resource checks; experiments/run.py on a real `ray start` head."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.config import load_config, parse_config
from orchestrator.errors import ConfigError
from orchestrator.pipeline.cluster import check_cluster, required_resources
from orchestrator.pipeline.plan import make_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster_cfg():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _ray_validator():
    """Ray's cluster-config validator (a private module: if Ray moves it, this fails and says so, rather than
    skipping the check)."""
    import importlib

    try:
        return importlib.import_module("ray.autoscaler._private.util")
    except ImportError as e:
        pytest.fail(f"Ray's cluster-config validator moved ({e}); point this test at its new module")


def test_cluster_yaml_passes_rays_validator(cluster_cfg):
    util = _ray_validator()
    full = util.prepare_config(copy.deepcopy(cluster_cfg))
    util.validate_config(full)  # raises on any schema error
    assert full["head_node_type"] in full["available_node_types"]


def test_validator_is_real(cluster_cfg):
    util = _ray_validator()
    import jsonschema

    bad = copy.deepcopy(cluster_cfg)
    bad["available_node_types"]["worker.cpu"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        util.validate_config(util.prepare_config(bad))


def test_cluster_yaml_ships_the_project_and_the_token(cluster_cfg):
    mounts = cluster_cfg["file_mounts"]
    assert mounts["~/hwnas"] == "."  # ray submit uploads only the script
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"
    setup = " ".join(cluster_cfg["setup_commands"])
    assert "pip install -q -e ~/hwnas" in setup and "torch>=2.4,<2.15" in setup
    for cmd in cluster_cfg["head_start_ray_commands"][1:] + cluster_cfg["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token ray start" in cmd


def test_gpu_experiment_fits_the_cluster(cluster_cfg):
    """Every resource the GPU experiment asks for is carried by some node type of cluster.yaml."""
    plan = make_plan(load_config(ROOT / "experiments" / "cifar10_mobilenet_gpu.yaml"))
    types = cluster_cfg["available_node_types"]
    carried: dict[str, float] = {}
    for t in types.values():
        for k, v in t["resources"].items():
            carried[k] = max(carried.get(k, 0.0), float(v))
    check_cluster(plan, carried)
    need = required_resources(plan)
    assert need["GPU"][0] == 1.0 and "device:sapphirerapids" in need and "device:epyc-milan" in need
    for name, t in types.items():  # device hosts must be up: nothing autoscales for a custom resource
        if any(k.startswith("device:") for k in t["resources"]):
            assert t.get("min_workers", 0) >= 1, name


def test_missing_resources_listed_together():
    plan = make_plan(parse_config({"name": "x", "sweep": {"targets": ["remote:pixel7", "cuda", "sim:0"]},
                                   "search": {"domain": "space"},
                                   "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"}}))
    with pytest.raises(ConfigError) as e:
        check_cluster(plan, {"CPU": 4.0, "device:jetson": 1.0})
    msg = str(e.value)
    assert "device:pixel7: device remote:pixel7 needs 1" in msg and "GPU: device cuda needs 1" in msg
    assert "device resources present: device:jetson" in msg
    check_cluster(plan, {"CPU": 4.0, "GPU": 1.0, "device:pixel7": 1.0})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_py_turns_token_auth_on_before_ray_is_imported(tmp_path, monkeypatch):
    """Ray reads RAY_AUTH_MODE at import: run.py sets it from the token file before anything imports ray."""
    import importlib.util

    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))  # loading it changes nothing
    spec = importlib.util.spec_from_file_location("hwnas_run_py", ROOT / "experiments" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    token = tmp_path / "token"
    token.write_text("x" * 64)
    env = {"RAY_AUTH_TOKEN_PATH": str(token)}
    assert mod.token_auth_env(env) and env["RAY_AUTH_MODE"] == "token"
    off = {"RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_MODE": "disabled"}
    assert not mod.token_auth_env(off) and off["RAY_AUTH_MODE"] == "disabled"  # an explicit choice stands
    none = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}
    assert not mod.token_auth_env(none) and "RAY_AUTH_MODE" not in none
    text = (ROOT / "experiments" / "run.py").read_text()
    assert text.index("token_auth_env()  #") < text.index("import ray")


def _stop_head(head: subprocess.Popen, ray_tmp: str) -> None:
    """End a `ray start --block` head this test started (its own process group) and remove its temp dir."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(2)  # it did not end in 30 s either (measured, turn 7): a longer wait only delays the
        # group's SIGKILL, which ends it
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
def test_run_py_against_a_started_head(tmp_path, token_head):
    """As `ray submit` runs it: a head started with token auth and a device resource, then run.py in a fresh
    process, from another cwd, with nothing exported by hand (only the token file, as cluster.yaml mounts)."""
    addr, _, _, home = token_head
    assert (home / ".ray" / "auth_token").is_file()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    base.update(HOME=str(home), PYTHONUNBUFFERED="1")
    env = base  # run.py: no RAY_AUTH_MODE exported
    cfg = {"name": "c", "output_dir": str(tmp_path / "runs"),
           "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep"},
           "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},
           "search": {"n_trials": 24, "population": 8, "domain": "table"},
           "sweep": {"targets": [{"name": "remote:testhost", "options": {"inner": "torch-cpu"}}, "pixel3"],
                     "k": 4, "measure_front": 2, "export_front": 0}}
    cfg["latency"]["protocol"] = {"warmup": 1, "repeats": 3, "min_repeat_ms": 1}
    cfg["tracking"] = {"uri": f"sqlite:///{tmp_path}/mlflow.db"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "name": "bad", "sweep": {"targets": ["remote:nothere"]}}))
    deadline = time.monotonic() + 60
    script = str(ROOT / "experiments" / "run.py")
    while True:  # the head is up once a client can connect
        probe = subprocess.run([sys.executable, script, str(bad), "--address", addr], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
        if "cannot run this config" in probe.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert probe.returncode == 2 and "device:nothere" in probe.stderr, probe.stderr
    assert not (tmp_path / "runs" / "bad").exists()  # refused before any work
    ok = subprocess.run([sys.executable, script, str(path), "--address", addr], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=400)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "\ndone in " in ok.stdout and "Pareto tables: hwnas report" in ok.stdout  # as `hwnas run` closes
    assert "INFO onnx_ir" not in ok.stderr and "INFO orchestrator" in ok.stderr
    assert "remote:testhost" in ok.stdout and "remote" in ok.stdout and "retest" in ok.stdout
    assert (tmp_path / "runs" / "c" / "fronts" / "remote_testhost.csv").is_file()
    summary = json.loads((tmp_path / "runs" / "c" / "summary.json").read_text())
    remote = next(r for r in summary["targets"] if r["target"] == "remote:testhost")
    # k = 3 in the first round + 1 along its own front, all 4 measured again (retest), 2 front members
    assert remote["k"] == 4 and remote["retest_n"] == 4 and remote["n_measurements"] == 4 + 4 + 2
    assert remote["front_mape_pct"] == remote["front_mape_pct"] and "retest_srcc" in remote  # not NaN


def test_run_py_logs_like_hwnas_run(monkeypatch):
    """run.py shows hwnas's INFO lines, not the libraries' (onnx_ir's INFO flood), and closes as `hwnas run`."""
    import importlib.util
    import logging

    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
    spec = importlib.util.spec_from_file_location("hwnas_run_py", ROOT / "experiments" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = logging.getLogger()
    names = ("orchestrator", "run.py", "onnx_ir", "alembic", "alembic.runtime.migration")
    saved = root.level, list(root.handlers), {n: logging.getLogger(n).level for n in names}
    try:
        root.handlers.clear()
        for n in names:  # as in a fresh process (a store created by an earlier test sets alembic's to INFO)
            logging.getLogger(n).setLevel(logging.NOTSET)
        mod.configure_logging()
        assert not logging.getLogger("onnx_ir").isEnabledFor(logging.INFO)
        assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
        assert logging.getLogger("onnx_ir").isEnabledFor(logging.WARNING)
        assert logging.getLogger("orchestrator.pipeline.proxy").isEnabledFor(logging.INFO)
        assert logging.getLogger("run.py").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for n, level in saved[2].items():
            logging.getLogger(n).setLevel(level)
    # (its closing lines, and no library INFO on stderr, in a real run: test_run_py_against_a_started_head)


def test_a_run_goes_to_ray_address_and_a_token_file_turns_token_auth_on(tmp_path):
    """Where a run connects (the config's ray.address, else RAY_ADDRESS, else a local Ray) and when token auth
    is turned on (a token at hand, RAY_AUTH_MODE unset); a token file Ray would abort on is refused by name."""
    from orchestrator.ray_connect import RayConnectError, check_token_file, cluster_address, token_auth_env

    assert cluster_address("10.0.0.1:6379", {"RAY_ADDRESS": "10.0.0.2:6379"}) == "10.0.0.1:6379"
    assert cluster_address(None, {"RAY_ADDRESS": "10.0.0.2:6379"}) == "10.0.0.2:6379"
    assert cluster_address(None, {}) is None and cluster_address(None, {"RAY_ADDRESS": ""}) is None
    env = {"RAY_AUTH_TOKEN": "x" * 32}
    assert token_auth_env(env) and env["RAY_AUTH_MODE"] == "token"
    missing = tmp_path / "none"
    with pytest.raises(RayConnectError, match=f"{missing} .RAY_AUTH_TOKEN_PATH. is missing"):
        check_token_file({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(missing)})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(RayConnectError, match="is empty"):
        check_token_file({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "empty")})
    check_token_file({"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN_PATH": str(missing)})  # not used: no error


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    """A `ray start` head with token auth on 127.0.0.1 and a ``device:testhost`` resource, its token in
    ``HOME/.ray/auth_token``; yields (address, its temp dir, an environment without RAY_AUTH* and RAY_ADDRESS,
    HOME) once its GCS listens. One head for this module's three cluster tests (each run is its own Ray job and
    finds its driver log by its pid): starting and stopping a head took about 15-20 s each."""
    ray_tmp = tempfile.mkdtemp(prefix="hwt", dir="/tmp")
    port = _free_port()
    home = tmp_path_factory.mktemp("token") / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    base.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
                   env={**base, "HOME": str(home)}, check=True, capture_output=True, timeout=120)
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={ray_tmp}",
         '--resources={"device:testhost": 1}'],
        env={**base, "HOME": str(home), "RAY_AUTH_MODE": "token"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # the head's GCS listens (connecting to a port nobody serves would retry for minutes)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and head.poll() is None, "the Ray head did not start"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", ray_tmp, base, home
    finally:
        _stop_head(head, ray_tmp)


@pytest.mark.slow
@pytest.mark.ray
def test_hwnas_run_on_a_token_cluster_from_ray_address(tmp_path, token_head):
    """Issue 23 item 5, as a user meets it: a head started with token auth, RAY_ADDRESS set, the token in
    ~/.ray/auth_token and RAY_AUTH_MODE unset: `hwnas run` connects to that cluster (its driver log is in the
    head's session) although the config sets ray.num_cpus (local Ray only). Without the token, or with another
    one, `hwnas run` and run.py end with one error line naming the fix, no traceback, and no run dir."""
    addr, ray_tmp, base, home = token_head
    bare, wrong = (tmp_path / n for n in ("bare", "wrong"))
    for h in (bare, wrong):
        h.mkdir()
    (wrong / ".ray").mkdir()
    (wrong / ".ray" / "auth_token").write_text("0" * 64)  # a token, not the cluster's
    cfg = {"name": "tok", "output_dir": str(tmp_path / "runs"), "ray": {"num_cpus": 1},
           "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep"},
           "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},
           "search": {"n_trials": 16, "population": 8, "domain": "table"},
           "sweep": {"targets": ["pixel3"], "k": 4, "measure_front": 0, "export_front": 0},
           "tracking": {"enabled": False}}
    path = tmp_path / "tok.yaml"
    path.write_text(yaml.safe_dump(cfg))
    hwnas = [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--no-progress"]
    run = subprocess.Popen(hwnas, env={**base, "HOME": str(home), "RAY_ADDRESS": addr}, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = run.communicate(timeout=400)
    assert run.returncode == 0, out + err
    assert "Traceback" not in err and "ray.num_cpus (1) applies to a local Ray only" in err
    assert (tmp_path / "runs" / "tok" / "summary.json").is_file() and "pixel3" in out
    drivers = list(Path(ray_tmp).glob(f"session_*/logs/python-core-driver-*_{run.pid}.log"))
    assert drivers, "hwnas run did not connect to the token cluster"  # not a local Ray of its own
    fast = {"RAY_gcs_server_port_wait_time_s": "2"}  # Ray's connect retries (default ~20 s): fewer here
    for h, entry, said in ((bare, hwnas, "needs a token and this machine has none"),
                           (wrong, hwnas, "refused the token from ~/.ray/auth_token"),
                           (bare, [sys.executable, str(ROOT / "experiments" / "run.py"), str(path), "--address",
                                   addr], "needs a token and this machine has none")):
        cfg_name = f"tok_{h.name}_{len(entry)}"
        p = tmp_path / f"{cfg_name}.yaml"
        p.write_text(yaml.safe_dump({**cfg, "name": cfg_name}))
        args = [str(p) if a == str(path) else a for a in entry]
        res = subprocess.run(args, env={**base, **fast, "HOME": str(h), "RAY_ADDRESS": addr}, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, res.stdout + res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith(("hwnas: error:", "run.py:"))]
        assert len(errors) == 1 and said in errors[0] and addr in errors[0], res.stderr
        assert "~/.ray/auth_token" in errors[0] and "ray get-auth-token" in errors[0]
        assert "Traceback" not in res.stderr
        assert not (tmp_path / "runs" / cfg_name).exists()  # refused before any work


@pytest.mark.slow
@pytest.mark.ray
def test_hwnas_supernet_on_a_token_cluster_from_ray_address(tmp_path, token_head):
    """Issue 23 item 5 for `hwnas supernet` (it called ray.init itself): with RAY_ADDRESS and the token file it
    trains on the token cluster (its driver log is in the head's session); without a token, one error line."""
    addr, ray_tmp, base, home = token_head
    bare = tmp_path / "bare"
    bare.mkdir()
    train = [sys.executable, "-m", "orchestrator.cli", "supernet", "train", "--option", "width_mult=0.25",
             "--option", "resolution=32", "--option", "feature_dim=64", "--epochs", "1", "--max-train", "64",
             "--batch-size", "32", "--threads", "1"]
    p = subprocess.Popen([*train, "--out", str(tmp_path / "sn")], cwd=tmp_path, text=True,
                         env={**base, "HOME": str(home), "RAY_ADDRESS": addr},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=400)
    assert p.returncode == 0 and "trained 1 epochs" in out, out + err
    assert list(Path(ray_tmp).glob(f"session_*/logs/python-core-driver-*_{p.pid}.log")), "not on the cluster"
    res = subprocess.run([*train, "--out", str(tmp_path / "sn2")], cwd=tmp_path, capture_output=True, text=True,
                         env={**base, "HOME": str(bare), "RAY_ADDRESS": addr,
                              "RAY_gcs_server_port_wait_time_s": "2"}, timeout=300)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("hwnas: error:")]
    assert res.returncode == 2 and len(errors) == 1, res.stdout + res.stderr
    assert "needs a token and this machine has none" in errors[0] and "Traceback" not in res.stderr


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of ``pids`` (Linux /proc)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes[link[8:-1]] = pid
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hexip, hexport = cols[1].split(":")
                raw = bytes.fromhex(hexip)
                if v6:  # four host-order 32-bit words
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    ip = socket.inet_ntop(socket.AF_INET6, raw)
                else:
                    ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
                out.append((inodes[cols[9]], ip, int(hexport, 16)))
    return out


@pytest.mark.ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", [None, "token"])
def test_a_local_ray_listens_on_loopback_only_without_token_auth(tmp_path, mode):
    """Issue 24 item 9: the local Ray a run starts (connect(None)) listens on loopback only (GCS, raylet, workers,
    agents, dashboard head), and without token authentication unless RAY_AUTH_MODE=token asks for it (issue 24
    turn 5): no token file is written and none is needed. Run in a fresh process with its own temp dir and HOME."""
    ray_tmp = tempfile.mkdtemp(prefix="hwl", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    script = (
        "import os, sys, json, subprocess\n"
        "from orchestrator.ray_connect import connect\n"
        f"connect(None, 1, _temp_dir={ray_tmp!r})\n"
        "import ray\n"
        "ray.get(ray.remote(lambda: 1).remote())\n"
        "kids = subprocess.run(['ps', '-e', '-o', 'pid=,ppid='], capture_output=True, text=True).stdout\n"
        "pairs = [tuple(map(int, ln.split())) for ln in kids.splitlines() if ln.strip()]\n"
        "ours, grew = {os.getpid()}, True\n"
        "while grew:\n"
        "    new = {p for p, pp in pairs if pp in ours} - ours\n"
        "    ours |= new; grew = bool(new)\n"
        "from ray._private.authentication.authentication_token_setup import get_authentication_mode\n"
        "from ray._raylet import AuthenticationMode\n"
        "print(json.dumps({'pids': sorted(ours), 'auth': get_authentication_mode() == AuthenticationMode.TOKEN,\n"
        "                  'env': os.environ.get('RAY_AUTH_MODE')}))\n"
        "sys.stdout.flush()\n"
        "input()\n"
        "ray.shutdown()\n")
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    base.update(HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **({"RAY_AUTH_MODE": mode} if mode else {}))
    p = subprocess.Popen([sys.executable, "-c", script], env=base, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline() or "{}")
        assert info, p.stderr.read() if p.poll() is not None else "no answer"
        listening = _listening(set(info["pids"]))
        assert len({pid for pid, _, _ in listening}) >= 3, listening  # GCS, raylet, a worker at least
        loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        assert [s for s in listening if s[1] not in loopback] == [], listening
        if mode is None:
            assert not info["auth"] and info["env"] is None, info  # env restored after init
            assert not (home / ".ray" / "auth_token").exists()  # Ray writes one when it turns token auth on
        else:  # asked for: Ray's token auth, with the token Ray generates
            assert info["auth"] and info["env"] == "token", info
            assert (home / ".ray" / "auth_token").is_file()
    finally:
        with contextlib.suppress(OSError):
            p.stdin.write("\n")
            p.stdin.flush()
        try:
            err = p.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            p.kill()
            err = p.communicate()[1]
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "Token authentication is enabled" not in err, err


@pytest.mark.ray
def test_a_second_local_ray_does_not_wait_for_the_agent_port_another_holds(tmp_path):
    """Two local Rays on one machine (two runs at once; a test's `hwnas run` beside the test's own Ray): the
    second's dashboard agent found Ray's fixed HTTP port (52365) taken and retried its bind for 3.4 s while the
    raylet waited. connect(None) lets the agent take a free port, and puts Ray's own parameters back after."""
    ray_tmp = tempfile.mkdtemp(prefix="hwa", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    script = (
        "import glob, json, sys\n"
        "from ray._private import parameter\n"
        "original = parameter.RayParams.__init__\n"
        "from orchestrator.ray_connect import connect\n"
        f"connect(None, 1, _temp_dir={ray_tmp!r})\n"
        "import ray\n"
        "restored = parameter.RayParams.__init__ is original\n"
        "ray.shutdown()\n"
        f"logs = {ray_tmp!r} + '/session_latest'\n"
        "port = open(glob.glob(logs + '/dashboard_agent_listen_port_*')[0]).read().strip()\n"
        "agent = open(logs + '/logs/dashboard_agent.log').read()\n"
        "print(json.dumps({'restored': restored, 'port': int(port), 'failures': agent.count('Failed to bind')}))\n")
    held = socket.socket()
    try:
        with contextlib.suppress(OSError):  # already taken (another Ray here): the case under test all the same
            held.bind(("0.0.0.0", 52365))
            held.listen(1)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("RAY_ADDRESS", None)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    finally:
        held.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["restored"], info
    assert info["failures"] == 0 and info["port"] not in (52365, -1) and info["port"] > 0, info
