"""The run's context (config, plan, run dir, tracker, timings, shared state) and the run directory.

The run directory (``<output_dir>/<name>``) is claimed in two steps: every
check (the config against an existing run, the cluster's resources) comes
first, and ``pipeline.json`` is written only after they all pass, so a config
refused by a pre-flight check leaves nothing behind that would block a re-run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import PipelineConfig
from orchestrator.errors import ConfigError, HwnasError
from orchestrator.pipeline.plan import Plan
from orchestrator.search.storage import EvalLog
from orchestrator.tracking import Tracker, package_versions

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"
EVAL_LOG = "evaluations.jsonl"


@dataclass
class Context:
    plan: Plan
    run_dir: Path
    tracker: Tracker
    progress: bool
    timings: dict[str, float] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)  # long-lived actors, ended with the run
    supernet: tuple[Any, Any] | None = None  # (space spec, weights ref) when trained or loaded
    supernet_data: Any = None  # ref of the dataset the supernet's subnets are evaluated on (int8 accuracy)
    proxy_predictor: Any = None
    signals: Any = None  # the run's SignalGuard (records are written inside signals.deferred())
    failed_targets: dict[str, str] = field(default_factory=dict)  # target -> why its device failed (the rest go on)
    int8_failures: dict[str, str] = field(default_factory=dict)  # arch -> why its int8 evaluation failed
    # target -> {arch: why} for the architectures its device refused (ArchitectureRefused; the sweep went on)
    refused: dict[str, dict[str, str]] = field(default_factory=dict)
    pool_id: str = ""  # fingerprint of the proxy search's candidate pool (a target's result is valid for it only)

    @property
    def cfg(self) -> PipelineConfig:
        return self.plan.cfg

    @property
    def space(self) -> Any:
        return self.plan.space

    @contextmanager
    def record(self) -> Iterator[None]:
        """A block that writes records: a stop signal waits for its end (nothing half-written)."""
        if self.signals is None:
            yield
            return
        with self.signals.deferred():
            yield

    def eval_log(self) -> EvalLog:
        return EvalLog(self.run_dir / EVAL_LOG)

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0


def public_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The config as it is written (pipeline.json, MLflow params): URL passwords replaced by ``***``."""
    from orchestrator.names import redact_tree

    return redact_tree(cfg.model_dump(mode="json"))


def start_over_hint(cfg: PipelineConfig, d: Path) -> str:
    """What to delete so that a corrected config can run under the same name: the run dir, and the study in
    an external Optuna storage (the default journal lives in the run dir)."""
    import shlex

    from orchestrator.names import redact

    cmd = f"rm -r {shlex.quote(str(d))}"
    if cfg.search.storage:
        cmd += (f" and optuna delete-study --study-name {shlex.quote(cfg.name)} --storage "
                f"{shlex.quote(redact(cfg.search.storage))}")
    return f"to start over under this name (its run dir keeps the config it began with), delete its state: {cmd}"


def _with_current_defaults(old: dict[str, Any]) -> dict[str, Any]:
    """A run dir's stored config as this version writes it: a setting added since the run began (absent from
    ``old``) takes its default, so upgrading hwnas between a crash and ``--resume`` does not refuse the resume.
    A stored config this schema rejects (a setting since removed or renamed) is returned as it is, and so
    differs."""
    from pydantic import ValidationError

    try:
        return public_config(PipelineConfig.model_validate(old))
    except (ValidationError, TypeError, ValueError):
        return old


RESUME_FREE = frozenset({"ray"})  # where the run executes (a local Ray's CPUs, a cluster): not what it computes
MAX_CHANGES_SHOWN = 8


def config_changes(old: Any, new: Any, where: str = "") -> list[str]:
    """Each setting that differs between two stored configs, as ``path: old -> new`` (JSON values, 60
    characters at most each; ``(unset)`` where one lacks it), leaving out ``RESUME_FREE`` sections."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            path = f"{where}.{k}" if where else str(k)
            if path not in RESUME_FREE:
                out += config_changes(old.get(k, _UNSET), new.get(k, _UNSET), path)
        return out
    if old == new:
        return []

    def show(v: Any) -> str:
        text = "(unset)" if v is _UNSET else json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{where}: {show(old)} -> {show(new)}"]


_UNSET = object()


def check_run_dir(cfg: PipelineConfig, resume: bool, d: Path) -> Path:
    """The run dir ``d``, checked: a run there needs --resume and the same config. Creates nothing. A
    refusal names what to delete to start over (a refused or crashed run never blocks a corrected config)."""
    state = d / STATE_FILE
    if state.is_file():
        if not resume:
            raise ConfigError(f"{d} already holds a run; pass --resume to continue it, or change 'name', or "
                              f"{start_over_hint(cfg, d)}")
        stored = read_state(d, cfg)
        old = _with_current_defaults(stored["config"])
        mine = public_config(cfg)
        diff = config_changes(old, mine)
        if diff:
            shown = "; ".join(diff[:MAX_CHANGES_SHOWN]) + (f"; and {len(diff) - MAX_CHANGES_SHOWN} more"
                                                          if len(diff) > MAX_CHANGES_SHOWN else "")
            raise ConfigError(f"{d} holds a run with another config ({shown}); resume with the config it began "
                              f"with, or change 'name', or {start_over_hint(cfg, d)}")
        changed = [name for name, digest in stored.get("inputs", {}).items()
                   if Path(name).is_file() and _file_digest(Path(name)) != digest]
        if changed:
            raise ConfigError(f"{d}: the input file(s) {', '.join(changed)} changed since the run began (the results"
                              f" so far were computed from the old contents); restore them and resume, or "
                              f"{start_over_hint(cfg, d)}")
    else:
        leftovers = _run_records(d)
        if leftovers:
            raise ConfigError(f"{d} holds records of a run ({', '.join(leftovers)}) but not its state file "
                              f"{STATE_FILE}, so the config they came from is unknown; restore {STATE_FILE}, or "
                              f"{start_over_hint(cfg, d)}")
        if resume:
            log.info("--resume: %s holds no run yet; starting it", d)
    return d


def read_state(d: Path, cfg: PipelineConfig) -> dict[str, Any]:
    """The run dir's state file (``pipeline.json``), checked to hold a config (and its inputs' digests, where it
    has them); a ConfigError naming the file and what to do when it is damaged."""
    state = d / STATE_FILE
    try:
        stored = json.loads(state.read_text(encoding="utf-8"))
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise ValueError("no 'config' mapping in it")
        if not isinstance(stored.get("inputs", {}), dict):
            raise ValueError("its 'inputs' are not a mapping of file to digest")
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{state} is damaged ({type(e).__name__}: {str(e)[:120]}); it holds the config the "
                          f"run began with: restore it, or {start_over_hint(cfg, d)}") from None
    return stored


def _run_records(d: Path) -> list[str]:
    """The records of a run in ``d`` (its evaluation log, Optuna journal, summary, a target's or front's file)."""
    names = [n for n in (EVAL_LOG, "optuna.journal", "summary.json") if (d / n).is_file()]
    names += [f"{sub}/" for sub in ("targets", "fronts") if (d / sub).is_dir() and any((d / sub).iterdir())]
    return names


MAX_DIGEST_BYTES = 1 << 30  # input files larger than this are not fingerprinted (reading them costs seconds)


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Settings that name where the run writes (a plain path to its tracking store or Optuna storage changes as the
# run goes): not inputs.
OUTPUT_SETTINGS = frozenset({"tracking", "output_dir", "ray", "search.storage"})


def input_digests(config: Any) -> dict[str, str]:
    """A fingerprint of every existing file (up to ``MAX_DIGEST_BYTES``) that a string of ``config`` names: a
    user's latency or accuracy table, a dataset file, a checkpoint; not the settings in ``OUTPUT_SETTINGS``.
    ``--resume`` refuses a run whose inputs changed since it began (its results so far came from the old
    contents). Folders are not fingerprinted."""
    found: dict[str, str] = {}

    def walk(v: Any, where: str = "") -> None:
        if where in OUTPUT_SETTINGS:
            return
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}" if where else str(k))
        elif isinstance(v, list):
            for x in v:
                walk(x, where)
        elif isinstance(v, str) and v and len(v) < 4096 and v not in found:
            p = Path(v)
            try:
                if p.is_file() and p.stat().st_size <= MAX_DIGEST_BYTES:
                    found[v] = _file_digest(p)
            except OSError:
                pass  # unreadable now: reading it for the run says so

    walk(config)
    return found


@contextmanager
def run_dir_lock(d: Path) -> Iterator[None]:
    """One driver per run dir: an exclusive lock on ``<output_dir>/.<name>.lock`` held for the whole run (the
    OS drops it when the driver dies, even by SIGKILL). A second ``hwnas run`` on the same run dir is refused
    at once, before it touches anything. Also where an unusable output dir shows, as an error, not a trace."""
    import fcntl
    import os

    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        fh = open(d.parent / f".{d.name}.lock", "a+")  # noqa: SIM115 - held open for the run
    except OSError as e:
        raise ConfigError(f"cannot use the output directory {d.parent} ({e.strerror or e}); set output_dir "
                          f"(or --output-dir) to a writable directory") from None
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            other = fh.read().strip() or "another process"
            raise ConfigError(f"{d} is in use by another hwnas run ({other}); wait for it to finish, or use "
                              f"another 'name'") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        fh.close()


def claim_run_dir(cfg: PipelineConfig, d: Path) -> None:
    """Create the run dir and write its state file (after every pre-flight check passed)."""
    try:
        for sub in ("", "targets", "fronts"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        config = public_config(cfg)
        state = {"config": config, "versions": package_versions(), "inputs": input_digests(config)}
        if cfg.tracking.enabled:  # resolved now: a later `hwnas confirm` / `compare` may run from another dir
            from orchestrator.names import redact
            from orchestrator.tracking import resolve_uri

            state["tracking_uri"] = redact(resolve_uri(cfg.tracking.uri))
        atomic_write(d / STATE_FILE, json.dumps(state, indent=2))
    except OSError as e:
        raise ConfigError(f"cannot write the run dir {d} ({e.strerror or e}); set output_dir to a writable "
                          f"directory") from None


class RunStopped(KeyboardInterrupt):
    """The run was stopped by a signal (SIGTERM, or SIGINT: Ctrl-C); ``signum`` says which. A KeyboardInterrupt,
    so nothing that catches ``Exception`` swallows it; the CLI turns it into one line and exit 128 + signum."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """While entered (main thread only), SIGTERM and SIGINT raise :class:`RunStopped` in the main thread,
    except inside :meth:`deferred` blocks (a record being written), where the signal is held and raised when
    the block ends, so a stop never leaves a half-written record. After the first signal, further ones are
    ignored while the run cleans up (SIGKILL still ends it; resume handles that too). Replaces Ray's own
    SIGTERM handler (``sys.exit``, which let Ray's C++ shutdown abort the process)."""

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._old: dict[int, Any] = {}
        self.stopped: int | None = None

    def __enter__(self) -> SignalGuard:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopped is not None:
            return  # cleaning up after the first one
        if self._depth:
            self._pending = signum
            return
        self.stopped = signum
        raise RunStopped(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal does not interrupt (it is raised when the block ends)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None and self.stopped is None:
                self.stopped, self._pending = self._pending, None
                raise RunStopped(self.stopped)


class RunWriteError(HwnasError, OSError):
    """The run could not write its files or its MLflow store (disk full, read-only, no permission); the message
    names the path and the fix. What the run finished is kept: ``--resume`` continues once the fix is made."""


_WRITE_ERRNOS = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded",
                 "EROFS": "read-only file system", "EACCES": "permission denied", "EPERM": "not permitted"}
_STORE_FULL = ("database or disk is full", "readonly database", "disk I/O error")


def write_failure(exc: BaseException, run_dir: Path, store: str | None = None) -> RunWriteError | None:
    """``exc`` (or an exception in its chain) as a :class:`RunWriteError` when it is a failed write: an OSError
    (disk full, quota, read-only, permission) or SQLite's "database or disk is full" from the MLflow store;
    else None."""
    import errno

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = errno.errorcode.get(getattr(e, "errno", None) or -1, "")
        if isinstance(e, OSError) and name in _WRITE_ERRNOS:
            path = f"{e.filename}" if e.filename else f"the run dir {run_dir}"
            where = Path(e.filename).parent if e.filename else run_dir
            fix = (f"free space on the file system of {where}" if name in ("ENOSPC", "EDQUOT")
                   else f"make {where} writable")
            return RunWriteError(f"cannot write {path} ({_WRITE_ERRNOS[name]}): {fix}, then continue the run "
                                 f"with --resume (what it finished is kept)")
        text = str(e)
        if store and any(m in text for m in _STORE_FULL):
            what = next(m for m in _STORE_FULL if m in text)
            return RunWriteError(f"cannot write the MLflow store {store} ({what}): free space on its file system "
                                 f"or make it writable, then continue the run with --resume (what it finished is "
                                 f"kept)")
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``path`` whole or not at all (a temp file beside it, fsynced, renamed over it; removed again when the
    write or the rename fails, e.g. on a full disk, and the OSError raised)."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def init_ray(cfg: PipelineConfig) -> None:
    """Connect to the cluster at ``ray.address`` (else ``RAY_ADDRESS``; a token at hand turns token
    authentication on), or start a local Ray of ``ray.num_cpus``; a cluster that cannot be reached or refuses the
    token is a :class:`~orchestrator.ray_connect.RayConnectError` naming the fix."""
    from orchestrator.ray_connect import cluster_address, connect

    connect(cluster_address(cfg.ray.address), cfg.ray.num_cpus)


class _QuietFileHandler(logging.FileHandler):
    """run.log that stops writing when its disk is full or read-only (the run then ends with one clear error)
    instead of printing logging's "--- Logging error ---" trace for every record."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.setLevel(logging.CRITICAL + 1)


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """INFO records of the library into ``run.log``, whatever the caller's logging setup."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _QuietFileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    lib_log = logging.getLogger("orchestrator")
    old_level = lib_log.level
    if lib_log.getEffectiveLevel() > logging.INFO:
        lib_log.setLevel(logging.INFO)
    lib_log.addHandler(handler)
    try:
        yield
    finally:
        lib_log.removeHandler(handler)
        lib_log.setLevel(old_level)
        handler.close()
