"""Damaged run state on resume (issue 24.4, 24.5): a stale journal lock is released at once, a garbage or
foreign-pool target result is redone (never paired with another pool's candidates)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import optuna

from orchestrator.pipeline.records import done_targets, pool_fingerprint
from orchestrator.search.driver import Candidate
from orchestrator.search.storage import make_storage


def _cand(arch: str) -> Candidate:
    return Candidate(number=0, arch_id=arch, accuracy=90.0, latency_ms=1.0, feasible=True)


def test_damaged_or_foreign_target_results_are_redone(tmp_path):
    pool = [_cand("a"), _cand("b")]
    ctx = SimpleNamespace(run_dir=tmp_path, pool_id=pool_fingerprint(pool))
    assert ctx.pool_id == pool_fingerprint(list(reversed(pool)))  # the pool, not its order
    assert ctx.pool_id != pool_fingerprint([_cand("a"), _cand("c")])
    t = tmp_path / "targets"
    t.mkdir()
    (t / "good.json").write_text(json.dumps({"summary": {"target": "good"}, "pool": ctx.pool_id}))
    (t / "old.json").write_text(json.dumps({"summary": {"target": "old"}}))  # written before pools were recorded
    (t / "garbage.json").write_text('{"summary": {"target": "garb')  # torn
    (t / "binary.json").write_bytes(b"\xff\xfe\x00junk")
    (t / "nosummary.json").write_text(json.dumps({"samples": {}}))
    (t / "foreign.json").write_text(json.dumps({"summary": {"target": "foreign"}, "pool": "another"}))
    for name in ("nofront", "tornfront"):  # a result whose front file (what report and compare read) is lost
        (t / f"{name}.json").write_text(json.dumps({"summary": {"target": name}, "pool": ctx.pool_id}))
    fronts = tmp_path / "fronts"
    fronts.mkdir()
    for name in ("good", "old", "garbage", "binary", "nosummary", "foreign"):
        (fronts / f"{name}.json").write_text('[{"arch": "a"}]')
    (fronts / "tornfront.json").write_text('[{"arch": "a"')
    names = ["good", "old", "garbage", "binary", "nosummary", "foreign", "missing", "nofront", "tornfront"]
    assert done_targets(ctx, names) == {"good": {"target": "good"}, "old": {"target": "old"}}


def test_stale_journal_lock_is_released_at_once(tmp_path):
    journal = tmp_path / "optuna.journal"
    storage = make_storage(None, tmp_path)
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    os.symlink(str(tmp_path / "dead-writer"), f"{journal}.lock")  # what a writer killed mid-append leaves
    storage = make_storage(None, tmp_path)
    assert not os.path.lexists(f"{journal}.lock")
    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # writes: no lock in the way
    assert len(study.trials) == 3
