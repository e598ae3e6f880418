"""MLflow records: one parent run per sweep, one nested run per device. Driver-side only.

Default store: MLflow 3's ``mlflow.db`` SQLite file, its path made absolute
(artifacts beside it in ``mlartifacts/``), so ``mlflow ui --backend-store-uri
sqlite:///<that path>`` finds everything whatever directory it is started in.
Runs are addressed by id through ``MlflowClient`` (no global active-run stack).
On resume the sweep's parent run is found again by its run-dir tag; runs a
crash left RUNNING are marked KILLED.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import wraps
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.names import is_mlflow_key, mlflow_key, redact, tag_filter

log = logging.getLogger(__name__)

RUN_DIR_TAG = "hwnas.run_dir"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # MLflow UI's saved views of the runs table ("Views" menu)
VIEW_COLUMNS = ("tags.`decision`", "metrics.`hv_ratio`", "metrics.`srcc_k`", "metrics.`srcc_lb`",
                "metrics.`unserved_budgets`", "metrics.`acc_loss_q50`", "metrics.`front_mape_pct`",
                "metrics.`retest_srcc`", "tags.`method`", "tags.`kind`")
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
DEVICE_TAG = "hwnas.device"
PACKAGES = ("hwnas", "torch", "ray", "optuna", "mlflow", "numpy", "scikit-learn", "onnxruntime")


PROBE_TIMEOUT_S = 5.0  # a tracking server's TCP connect, before any work


def _probe_server(uri: str) -> None:
    """An http(s) tracking server that does not accept a connection: one ConfigError at once, naming it (MLflow
    itself retries every request with back-off for minutes, and the run would sit silent before its first
    record)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S):
            pass
    except (OSError, ValueError) as e:
        from orchestrator.errors import ConfigError

        raise ConfigError(redact(f"cannot reach the MLflow tracking server {uri} ({type(e).__name__}: "
                                 f"{getattr(e, 'strerror', None) or e}); start it (mlflow server --host ... --port "
                                 f"...), fix tracking.uri, or set tracking.enabled: false")) from None


def resolve_uri(uri: str | None, base: Path | None = None) -> str:
    """``None``: ``sqlite:///<absolute>/mlflow.db`` in ``base`` (default: the working directory)."""
    if uri:
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
        return uri
    return "sqlite:///" + str(((base or Path.cwd()) / "mlflow.db").resolve())


def run_tracking_uri(run_dir: Path, configured: str | None) -> str | None:
    """The MLflow URI a run dir's run was recorded at (resolved when it began), else ``configured``. The run
    dir keeps it with its password redacted: where it has one, the password comes from ``configured`` or from
    ``MLFLOW_TRACKING_URI`` in the environment, whichever is that same URI."""
    import os

    state = Path(run_dir) / "pipeline.json"
    if state.is_file():
        uri = json.loads(state.read_text()).get("tracking_uri")
        if uri:
            for full in (configured, os.environ.get("MLFLOW_TRACKING_URI")):
                if full and full != uri and redact(full) == uri:
                    return full
            return str(uri)
    return configured


def source_tags() -> dict[str, str]:
    """MLflow's source tags: the command, and the git commit of the checkout the package runs from."""
    import subprocess
    import sys

    tags = {"mlflow.source.name": "hwnas " + " ".join(sys.argv[1:3]) if sys.argv else "hwnas",
            "mlflow.source.type": "LOCAL"}
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if len(commit) == 40:
        tags["mlflow.source.git.commit"] = commit
    return tags


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``. A mapping with a key MLflow would refuse (a device name such as
    ``jetson(fp16)`` in ``sweep.memory_mb``) stays one entry, its value the mapping as JSON, so every key
    returned is an MLflow key and none is lost or merged with another."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            if all(is_mlflow_key(f"{key}.{sub}") for sub in v):
                out.update(flatten(v, key + "."))
            else:
                out[key] = json.dumps(v, default=str, sort_keys=True)
        else:
            out[key] = v
    return out


TAG_VALUE_MAX = 5000  # MLflow keeps up to 8,000 characters of a tag's value; a run name is a tag too


def _probe_sqlite(path: Path, timeout: float = 2.0) -> None:
    """Take and release a write lock on the store, waiting at most ``timeout`` seconds (MLflow itself would
    wait much longer for a store another process holds)."""
    import sqlite3

    con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    finally:
        con.close()


def _drop_db_traces(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("SQLAlchemy database error")


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _first_use_lock(db: Path, timeout: float = 120.0) -> Any:
    """An exclusive lock on ``.<db name>.lock`` beside a SQLite store, held while a process opens the store
    (MLflow creates or migrates its schema then) and creates the experiment: two runs starting on one new
    store at once would otherwise both create the tables, and one fail (``table ... already exists``).
    Taking it is also the writability probe: a directory that cannot be written fails here, at once, not
    after MLflow's minutes of retries. Returns the open lock file (close it to release); raises
    ``ConfigError`` naming the path and the fix."""
    import fcntl
    import os
    import time

    from orchestrator.errors import ConfigError

    fix = "set tracking.uri to a writable place (e.g. sqlite:////tmp/hwnas/mlflow.db), or tracking.enabled: false"
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        fh = open(db.parent / f".{db.name}.lock", "a+")  # noqa: SIM115 - returned, closed by the caller
    except OSError as e:
        raise ConfigError(f"the MLflow store {db} cannot be written: {db.parent} is not writable "
                          f"({e.strerror or e}); {fix}") from None
    if db.exists() and not os.access(db, os.W_OK):
        fh.close()
        raise ConfigError(f"the MLflow store {db} cannot be written (the file is read-only); {fix}")
    t0 = time.monotonic()
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() - t0 > timeout:
                fh.close()
                raise ConfigError(f"the MLflow store {db} is being opened by another process for over "
                                  f"{timeout:.0f}s; wait for it, or set tracking.uri to another store") from None
            time.sleep(0.1)


def _critical(method: Callable[..., Any]) -> Callable[..., Any]:
    """A Tracker write that runs inside ``self.critical()``: a stop signal waits for the write to end (one
    raised inside SQLAlchemy's commit or MLflow's artifact copy would leave the store half-written)."""

    @wraps(method)
    def inner(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        with self.critical():
            return method(self, *args, **kwargs)

    return inner


class Tracker:
    """Writes the sweep to MLflow. ``enabled=False`` makes every call a no-op (tests, dry runs).

    ``critical``: a context every write runs inside (the run sets its signal guard's deferred block)."""

    critical: Callable[[], AbstractContextManager[Any]] = nullcontext

    def __init__(self, uri: str | None, experiment: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.uri = resolve_uri(uri) if enabled else ""
        self.parent_id: str | None = None
        self._run_dir_tag: str | None = None
        self.children: dict[str, str] = {}
        self.stale: dict[str, list[str]] = {}  # per device: its runs a killed driver left unfinished
        self._open_runs: set[str] = set()  # device runs created and not yet finished
        self.view_link: str | None = None  # the UI's address (after the host) of this sweep's runs view
        if not enabled:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        # MLflow logs every SQLAlchemy error with its whole trace before raising it again: the error reaches
        # the caller (and the user as one line), the trace is not the user's to read
        logging.getLogger("mlflow.store.db.utils").addFilter(_drop_db_traces)
        _probe_server(self.uri)
        db = _sqlite_path(self.uri)
        lock = _first_use_lock(db) if db is not None else None  # ConfigError: not writable
        try:
            if db is not None and not db.exists():  # a new store: a copy of the migrated template (~10 s saved)
                from orchestrator.store_template import seed_store

                seed_store(db)
            if db is not None and db.is_file():
                _probe_sqlite(db)
            for attempt in (1, 2):  # a store another tool (no lock of ours) created meanwhile: once more
                try:
                    self._open(MlflowClient, experiment, db)
                    break
                except Exception as e:  # noqa: BLE001
                    if attempt == 2 or not any(m in str(e) for m in ("already exists", "duplicate column",
                                                                     "migration")):
                        raise
                    log.info("MLflow store %s was being created by another process; retrying", self.uri)
        except Exception as e:  # noqa: BLE001 - MLflow and its database drivers raise many types
            from orchestrator.errors import ConfigError

            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            fix = ("another process holds a lock on it (a run writing to it, a tool with it open): wait for it, "
                   "or set tracking.uri to another store" if "locked" in first else
                   "move a corrupt file aside, set tracking.uri to another store, or tracking.enabled: false")
            raise ConfigError(redact(f"the MLflow store {self.uri} cannot be used ({type(e).__name__}: {first}); "
                                     f"{fix}")) from None
        finally:
            if lock is not None:
                lock.close()
        self._mlflow = mlflow

    def _open(self, client_cls: Any, experiment: str, db: Path | None) -> None:
        self.client = client_cls(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            loc = (db.parent / "mlartifacts").resolve().as_uri() if db is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=loc)
        else:
            self.experiment_id = exp.experiment_id
        # a classic ML experiment: the UI opens on its runs table, not on MLflow 3's GenAI views
        self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")

    # -- runs -------------------------------------------------------------------
    @_critical
    def start(self, run_dir: Path, name: str, resume: bool) -> None:
        """The sweep's parent run: found again on resume (dangling runs marked KILLED), else created (on resume,
        with a warning: the run's earlier records are not in this store)."""
        if not self.enabled:
            return
        runs, parent = self.runs_of(run_dir)
        if resume and parent is not None:
            self.parent_id = parent.info.run_id
            killed = 0
            for r in runs:
                mine = r.data.tags.get("mlflow.parentRunId") == self.parent_id
                device = r.data.tags.get(DEVICE_TAG, "")
                if r.info.status == "RUNNING":
                    self.client.set_terminated(r.info.run_id, "KILLED")
                    killed += 1
                if mine and r.info.status == "FINISHED":
                    self.children[device] = r.info.run_id
                elif mine:  # left unfinished by a killed driver: superseded when its target is redone
                    self.stale.setdefault(device, []).append(r.info.run_id)
            if killed:
                log.warning("MLflow: %d run(s) left RUNNING by the killed driver marked KILLED", killed)
            self.client.update_run(self.parent_id, status="RUNNING")
            return
        if resume:  # a run dir that began tracked, its records gone: said, not silently replaced
            log.warning("MLflow: %s holds no run of %s to continue (its store was replaced or moved, or its runs "
                        "deleted): a new parent run is made, without what was recorded before (the run dir's "
                        "files keep it)", redact(self.uri), run_dir)
        run = self.client.create_run(self.experiment_id, run_name=name, tags={RUN_DIR_TAG: str(run_dir),
                                                                               **source_tags()})
        self.parent_id = run.info.run_id

    def runs_of(self, run_dir: Path) -> tuple[list[Any], Any]:
        """Every run of ``run_dir`` in the experiment (its tag, matched exactly), and its latest parent run
        (None where it has none)."""
        runs = [r for r in self.client.search_runs([self.experiment_id], filter_string=tag_filter(RUN_DIR_TAG, run_dir),
                                                   max_results=1000) if r.data.tags.get(RUN_DIR_TAG) == str(run_dir)]
        parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
        return runs, parents[-1] if parents else None

    @_critical
    def child(self, device: str, tags: Mapping[str, Any] | None = None, seconds: float = 0.0) -> str | None:
        """A nested run for ``device`` (None when disabled), created with ``tags``; ``seconds``: how long the
        device's work took, so the run's duration in the UI is the real one."""
        if not self.enabled:
            return None
        old = [self.children.pop(device, None), *self.stale.pop(device, [])]
        for run_id in filter(None, old):  # re-done after a resume: earlier and half-written records superseded
            self.client.delete_run(run_id)
        if self._run_dir_tag is None:
            self._run_dir_tag = self.client.get_run(self.parent_id).data.tags[RUN_DIR_TAG]
        import time

        run = self.client.create_run(self.experiment_id, run_name=device[:TAG_VALUE_MAX],
                                     start_time=int((time.time() - max(seconds, 0.0)) * 1000), tags={
            "mlflow.parentRunId": self.parent_id, RUN_DIR_TAG: self._run_dir_tag, DEVICE_TAG: device[:TAG_VALUE_MAX],
            **{mlflow_key(k): str(v)[:TAG_VALUE_MAX] for k, v in (tags or {}).items()}})
        self.children[device] = run.info.run_id
        self._open_runs.add(run.info.run_id)
        return run.info.run_id

    @_critical
    def record(self, run_id: str | None, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Params and metrics of a fresh run in one write (a sweep records hundreds of runs)."""
        if not self.enabled or run_id is None:
            return
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        ms = [Metric(mlflow_key(k), float(v), now, 0) for k, v in metrics.items()
              if v is not None and not (isinstance(v, float) and math.isnan(v))]
        self.client.log_batch(run_id, metrics=ms[:1000], params=ps[:100])

    @_critical
    def finish(self, run_id: str | None, status: str = "FINISHED") -> None:
        if self.enabled and run_id is not None:
            self.client.set_terminated(run_id, status)
            self._open_runs.discard(run_id)

    def end_all(self, status: str) -> None:
        """End the parent and every device run still open (a stopped or failed run), as far as the store takes
        it: a store that cannot be written (disk full) is logged, not raised over the error that ended the run."""
        for run_id in [*sorted(self._open_runs), self.parent_id]:
            try:
                self.finish(run_id, status)
            except Exception as e:  # noqa: BLE001 - the run is ending on another error already; resume marks it
                log.debug("MLflow: could not mark run %s %s (%s)", run_id, status, e)

    # -- records ----------------------------------------------------------------
    @_critical
    def params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if not self.enabled or run_id is None:
            return
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    @_critical
    def metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int = 0) -> None:
        if not self.enabled or run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items()
                 if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    @_critical
    def tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        if self.enabled and run_id is not None:
            for k, v in tags.items():
                self.client.set_tag(run_id, mlflow_key(k), str(v)[:TAG_VALUE_MAX])

    @_critical
    def artifact(self, run_id: str | None, path: Path, subdir: str | None = None) -> None:
        if self.enabled and run_id is not None and Path(path).exists():
            if Path(path).is_dir():
                self.client.log_artifacts(run_id, str(path), subdir)
            else:
                self.client.log_artifact(run_id, str(path), subdir)

    @_critical
    def onnx_model(self, run_id: str | None, onnx_path: Path, name: str) -> str | None:
        """Log an exported network as an MLflow ONNX model with its signature, loadable by URI
        (``mlflow.pyfunc.load_model``); returns the model URI. The signature is the file's own: each input and
        output tensor with its name, dtype and shape, -1 where the file's dimension is dynamic (the batch of
        ``export_network``'s files), so it never promises a shape the file refuses."""
        if not self.enabled or run_id is None:
            return None
        import onnx
        import onnxruntime as ort
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.zeros([d if isinstance(d, int) else 2 for d in inp.shape], dtype=np.float32)
        outs = sess.run(None, {inp.name: x})  # the output dtypes, and a file that cannot run fails here

        def spec(t: Any, value: np.ndarray) -> TensorSpec:
            return TensorSpec(value.dtype, tuple(d if isinstance(d, int) else -1 for d in t.shape), t.name)

        signature = ModelSignature(Schema([spec(inp, x)]),
                                   Schema([spec(o, y) for o, y in zip(sess.get_outputs(), outs, strict=True)]))
        self._mlflow.set_tracking_uri(self.uri)
        with self._mlflow.start_run(run_id=run_id, log_system_metrics=False):
            info = self._mlflow.onnx.log_model(onnx.load(str(onnx_path)), name=name, signature=signature,
                                               onnx_execution_providers=["CPUExecutionProvider"])
        return str(info.model_uri)

    @_critical
    def json(self, run_id: str | None, obj: Any, name: str) -> None:
        if not self.enabled or run_id is None:
            return
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            p.write_text(json.dumps(obj, indent=2, default=str))
            self.client.log_artifact(run_id, str(p))


def recorded_sweep(run_dir: Path, uri: str | None, experiment: str) -> Tracker:
    """A Tracker on the MLflow runs a finished sweep recorded, to add figures to them later (``hwnas int8``):
    ``parent_id`` its parent run (the latest of ``run_dir``), ``children`` device -> its finished device run.
    Creates no run and changes no run's status, so a second call finds the same runs. ``uri``: the run's
    ``tracking.uri`` (the URI the run recorded at, from ``pipeline.json``, comes first: ``run_tracking_uri``).

    Raises ConfigError, before anything is written, where the SQLite store is gone, the store holds no
    ``experiment``, or no run of ``run_dir``."""
    from orchestrator.errors import ConfigError

    full = resolve_uri(run_tracking_uri(run_dir, uri))
    fix = "restore it, or pass --no-tracking to write the run dir's files only"
    db = _sqlite_path(full)
    if db is not None and not db.is_file():
        raise ConfigError(f"the MLflow store {db} that run {run_dir} recorded to is gone; {fix}")
    try:
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(tracking_uri=full).get_experiment_by_name(experiment)
    except Exception as e:  # noqa: BLE001 - MLflow and its database drivers raise many types
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ConfigError(redact(f"the MLflow store {full} cannot be read ({type(e).__name__}: {first}); "
                                 f"{fix}")) from None
    if exp is None:
        raise ConfigError(redact(f"the MLflow store {full} has no experiment {experiment!r} (the run's "
                                 f"tracking.experiment): it was deleted or is another store; {fix}"))
    tracker = Tracker(full, experiment)
    runs, parent = tracker.runs_of(run_dir)
    if parent is None:
        raise ConfigError(redact(f"the MLflow store {full} holds no run of {run_dir} in experiment "
                                 f"{experiment!r} (deleted, or the run was made with tracking off); {fix}"))
    tracker.parent_id = parent.info.run_id
    for r in sorted(runs, key=lambda r: r.info.start_time):
        if r.data.tags.get("mlflow.parentRunId") == tracker.parent_id and r.info.status == "FINISHED":
            tracker.children[r.data.tags.get(DEVICE_TAG, "")] = r.info.run_id
    return tracker


def runs_view_state(run_dir: Path) -> dict[str, Any]:
    """The runs-table state of a sweep's saved view (MLflow UI 3.x, ``ExperimentPageUIState`` and search
    facets): only this sweep's device runs, flat (a filter un-nests them), best ``hv_ratio`` first, with the
    decision and the sweep's key figures as columns."""
    run_filter = str(run_dir).replace("'", "\\'")
    return {"searchFilter": f"tags.`{RUN_DIR_TAG}` = '{run_filter}' and tags.`{DEVICE_TAG}` LIKE '%'",
            "orderByKey": "metrics.`hv_ratio`", "orderByAsc": False, "startTime": "ALL",
            "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
            "selectedColumns": list(VIEW_COLUMNS), "columnOrder": list(VIEW_COLUMNS),
            "columnWidths": {c: 110 for c in VIEW_COLUMNS}, "runsHiddenMode": "SHOW_ALL"}


def save_runs_view(tracker: Tracker, run_dir: Path, name: str) -> str | None:
    """Save the sweep's runs view as an experiment tag (the UI lists it under "Views") and return the link
    that opens it (``#/experiments/<id>/runs?viewStateShareKey=...&workflowType=machine_learning``: the runs
    table, the sidebar's switch on "Model training"); None when tracking is off."""
    if not tracker.enabled:
        return None
    import hashlib
    import time

    key = "hwnas-" + hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]
    now = int(time.time() * 1000)
    envelope = {"name": f"hwnas {name}: devices", "createdAt": now, "updatedAt": now,
                "state": json.dumps(runs_view_state(run_dir))}
    tracker.client.set_experiment_tag(tracker.experiment_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    tracker.view_link = (f"#/experiments/{tracker.experiment_id}/runs?viewStateShareKey={key}"
                         f"&workflowType=machine_learning")
    return tracker.view_link
