"""Journal repair, the evaluation log and resuming a study whose driver died."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.errors import CheckpointError, ConfigError
from orchestrator.search.storage import REQUEUED_FROM, EvalLog, make_storage, open_study, repair_jsonl_tail


def _sampler():
    return optuna.samplers.RandomSampler(seed=0)


def test_torn_tail_is_cut_and_intact_file_untouched(tmp_path):
    p = tmp_path / "log.jsonl"
    good = b'{"a": 1}\n{"a": 2}\n'
    p.write_bytes(good)
    assert repair_jsonl_tail(p) == 0 and p.read_bytes() == good
    p.write_bytes(good + b'{"a": 3, "b"')  # a writer killed mid-line
    assert repair_jsonl_tail(p) == len(b'{"a": 3, "b"')
    assert p.read_bytes() == good
    p.write_bytes(good + b'{"a": 3}')  # complete JSON but no newline: also torn (the newline is the commit)
    assert repair_jsonl_tail(p) == len(b'{"a": 3}')
    assert repair_jsonl_tail(tmp_path / "missing.jsonl") == 0


def test_corruption_before_intact_lines_is_refused(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(CheckpointError, match="not a torn tail"):
        repair_jsonl_tail(p)
    assert p.read_bytes() == b'{"a": 1}\n{"a": \n{"a": 3}\n'  # nothing cut


def test_eval_log_round_trip_and_torn_line(tmp_path):
    p = tmp_path / "evaluations.jsonl"
    log = EvalLog(p)
    log.add([("a", 1.0), ("b", 2.5)])
    log.add({"c": 3.0})
    with open(p, "a") as f:
        f.write('{"arch": "d", "accu')
    again = EvalLog(p)
    assert again.values == {"a": 1.0, "b": 2.5, "c": 3.0} and again.n_lines == 3
    assert all(json.loads(line) for line in p.read_text().splitlines())
    mem = EvalLog(None)
    mem.add([("x", 1.0)])
    assert mem.values == {"x": 1.0}


def test_existing_study_needs_resume(tmp_path):
    storage = make_storage(None, tmp_path)
    open_study(storage, "s", _sampler(), resume=False)
    with pytest.raises(ConfigError, match="--resume"):
        open_study(storage, "s", _sampler(), resume=False)
    open_study(storage, "s", _sampler(), resume=True)


def test_wrong_directions_refused(tmp_path):
    storage = make_storage(None, tmp_path)
    optuna.create_study(storage=storage, study_name="s", directions=["minimize", "minimize"])
    with pytest.raises(ConfigError, match="directions"):
        open_study(storage, "s", _sampler(), resume=True)


def test_changed_objectives_refused_on_resume(tmp_path):
    storage = make_storage(None, tmp_path)
    study = open_study(storage, "s", _sampler(), resume=False, extra_objectives=("params_m",))
    assert len(study.directions) == 3
    with pytest.raises(ConfigError, match="search.objectives changed"):
        open_study(storage, "s", _sampler(), resume=True)
    open_study(storage, "s", _sampler(), resume=True, extra_objectives=("params_m",))


def test_resume_fails_and_requeues_running_trials(tmp_path):
    storage = make_storage(None, tmp_path)
    study = open_study(storage, "s", _sampler(), resume=False)
    dists = {"x": optuna.distributions.IntDistribution(0, 100)}
    done = study.ask(dists)
    study.tell(done, [1.0, 2.0])
    dangling = [study.ask(dists) for _ in range(2)]  # the driver "dies" here
    params = [t.params for t in dangling]
    # a torn journal tail as well, as a SIGKILL mid-write leaves it
    with open(tmp_path / "optuna.journal", "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "par')
    resumed = open_study(make_storage(None, tmp_path), "s", _sampler(), resume=True)
    states = {t.number: t.state for t in resumed.get_trials()}
    assert states[done.number] == TrialState.COMPLETE
    assert all(states[t.number] == TrialState.FAIL for t in dangling)
    waiting = resumed.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs[REQUEUED_FROM] for t in waiting) == sorted(t.number for t in dangling)
    # the next asks get the queued parameters back
    asked = [resumed.ask(dists) for _ in range(2)]
    assert sorted(t.params["x"] for t in asked) == sorted(p["x"] for p in params)


def test_stop_signal_inside_journal_lock_release_waits_for_the_append(tmp_path, monkeypatch):
    """A SIGTERM delivered inside Optuna's journal lock release (between its rename and unlink: CI hit this)
    raised in the middle of the release, whose cleanup then unlinked a file already gone. Appends run inside the
    run's deferred block: the stop is raised after the append, the record is whole and no lock is left."""
    import os
    import signal

    from optuna.storages.journal import _file

    from orchestrator.pipeline.context import RunStopped, SignalGuard

    real_unlink = os.unlink
    fired: list[str] = []

    def unlink_then_signal(path, *a, **k):
        real_unlink(path, *a, **k)
        if str(path).endswith(_file.RENAME_FILE_SUFFIX) and not fired:
            fired.append(str(path))
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode

    with SignalGuard() as guard:
        storage = make_storage(None, tmp_path, guard.deferred)
        study = open_study(storage, "s", _sampler(), resume=False)
        monkeypatch.setattr(_file.os, "unlink", unlink_then_signal)
        with pytest.raises(RunStopped):
            study.ask()
    monkeypatch.undo()
    assert fired and guard.stopped == signal.SIGTERM
    assert not (tmp_path / "optuna.journal.lock").exists()
    assert repair_jsonl_tail(tmp_path / "optuna.journal") == 0
    again = optuna.load_study(study_name="s", storage=make_storage(None, tmp_path))
    assert [t.state for t in again.get_trials()] == [TrialState.RUNNING]  # the append that was signalled landed
