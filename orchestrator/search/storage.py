"""The Optuna storage and the evaluation log: opening, repairing, resuming.

The Optuna storage is the source of truth for the search (a journal file
locally, an RDB URL on a cluster). Resume = repair a torn journal tail, fail
the trials a killed driver left RUNNING and queue their parameters again, and
continue. The evaluation log (JSONL, one fsynced line per evaluated
architecture) keeps results that were computed but not yet told, so a resumed
search never evaluates an architecture twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from orchestrator.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

REQUEUED_FROM = "requeued_from"


def repair_jsonl_tail(path: Path) -> int:
    """Cut a torn or undecodable *last* line (a writer killed mid-write); return the bytes removed.

    A bad line followed by good ones is not a torn tail: that is refused, since
    cutting it would drop results written after it.
    """
    if not path.is_file():
        return 0
    data = path.read_bytes()
    good_end = 0
    pos = 0
    bad_at: int | None = None
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        ok = nl >= 0
        if ok and line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                ok = False
        if ok:
            if bad_at is not None:
                raise CheckpointError(f"{path}: line at byte {bad_at} is corrupt but later lines are intact; "
                                      f"this is not a torn tail, so it is not repaired automatically: inspect it")
            good_end = end
        elif bad_at is None:
            bad_at = pos
        pos = end
    removed = len(data) - good_end
    if removed:
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: removed a torn last line (%d bytes) left by a killed writer", path, removed)
    return removed


def make_storage(url: str | None, run_dir: Path,
                 critical: Callable[[], AbstractContextManager[Any]] = nullcontext) -> Any:
    """``url`` None: a journal file ``<run_dir>/optuna.journal`` (tail repaired first); else Optuna's database
    at ``url`` (an error that cannot reach it names the URL with its password redacted).

    ``critical``: a context every journal append runs inside (the run's signal guard defers a stop signal there:
    a signal raised inside Optuna's lock release left the lock's rename file to a second unlink, which failed
    with FileNotFoundError instead of stopping the run)."""
    if url:
        from orchestrator.names import redact

        try:
            return optuna.storages.RDBStorage(url)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy and the database drivers raise many types
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise ConfigError(redact(f"search.storage {url} cannot be used ({type(e).__name__}: {first}); check "
                                     f"the server, the database and the credentials, or leave search.storage "
                                     f"unset (a journal file in the run dir)")) from None
    from optuna.storages import JournalStorage

    path = run_dir / "optuna.journal"
    repair_jsonl_tail(path)
    release_stale_lock(path)
    return JournalStorage(_CriticalJournal(str(path), critical))


class _CriticalJournal(JournalFileBackend):
    """Optuna's journal file whose appends (lock, write, unlock) run inside ``critical``."""

    def __init__(self, path: str, critical: Callable[[], AbstractContextManager[Any]]) -> None:
        super().__init__(path)
        self._critical = critical

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self._critical():
            super().append_logs(logs)


def release_stale_lock(journal: Path) -> bool:
    """Remove the journal's lock file (``<journal>.lock``) a killed writer left behind. Only the driver that holds
    the run dir's lock writes the journal, so any lock file found before it opens the journal is stale: without
    this, Optuna waits out its 30 s grace period on every resume after a kill mid-write."""
    lock = Path(f"{journal}.lock")
    if not os.path.lexists(lock):
        return False
    os.unlink(lock)
    log.warning("%s: removed a stale lock left by a killed writer", lock)
    return True


def open_study(storage: Any, name: str, sampler: optuna.samplers.BaseSampler, resume: bool,
               extra_objectives: Sequence[str] = ()) -> optuna.Study:
    """Create the study, or load it on resume (failing and re-queuing trials left RUNNING).

    Without ``resume`` an existing study of that name is an error: the run dir
    holds earlier work that a fresh start would mix with its own.
    """
    directions = ["maximize", "minimize", *(["minimize"] * len(extra_objectives))]
    exists = name in {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if exists and not resume:
        raise ConfigError(f"study {name!r} already exists in this run's storage; pass --resume to continue it, "
                          f"or change the config's name")
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler,
                                load_if_exists=True)
    found = [d.name.lower() for d in study.directions]
    if found != directions:
        raise ConfigError(f"study {name!r} has directions {found}; this config's are {directions} (accuracy, "
                          f"latency{''.join(', ' + o for o in extra_objectives)}): search.objectives changed "
                          f"since the run began, or the name holds another study; restore them, or use another "
                          f"name")
    if exists:
        requeue_running(study)
    return study


def requeue_running(study: optuna.Study) -> list[int]:
    """Fail trials left RUNNING by a killed driver and queue their parameters again (one driver per study)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(dict(t.params), user_attrs={REQUEUED_FROM: t.number}, skip_if_exists=False)
        out.append(t.number)
    if out:
        log.warning("resume: trials %s were RUNNING when the driver died; failed and re-queued", out)
    return out


class EvalLog:
    """Append-only JSONL of evaluated architectures: ``{"arch": id, "accuracy": %}``, fsynced per batch."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.values: dict[str, float] = {}
        self.n_lines = 0
        if path is not None:
            repair_jsonl_tail(path)
            if path.is_file():
                for line in path.read_text().splitlines():
                    if line.strip():
                        row = json.loads(line)
                        self.values[row["arch"]] = float(row["accuracy"])
                        self.n_lines += 1

    def add(self, rows: Sequence[tuple[str, float]] | Mapping[str, float]) -> None:
        items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
        for a, v in items:
            self.values[a] = float(v)
        if self.path is None or not items:
            return
        with open(self.path, "a") as f:
            for a, v in items:
                f.write(json.dumps({"arch": a, "accuracy": float(v)}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.n_lines += len(items)
