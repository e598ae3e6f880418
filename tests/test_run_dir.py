"""The run dir's checks before a run or a resume (pipeline/context.py): its inputs' contents, a damaged state file,
records without a state file (cases a break test found resuming on stale or foreign state)."""

from __future__ import annotations

import json

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.latency.table import shipped_table
from orchestrator.pipeline.context import STATE_FILE, check_run_dir, claim_run_dir


@pytest.fixture
def own_table(tmp_path):
    """A user's latency table of 40 shipped cells on two devices."""
    t = shipped_table()
    path = tmp_path / "lat.csv"
    rows = [f"{a},{t.values[i, 0]},{t.values[i, 1]}" for i, a in enumerate(t.archs[:40])]
    path.write_text(f"arch,lat_ms_{t.devices[0]},lat_ms_{t.devices[1]}\n" + "\n".join(rows) + "\n")
    return path


def _cfg(tmp_path, table):
    return parse_config({"name": "r", "output_dir": str(tmp_path / "runs"),
                         "latency": {"table": str(table), "proxy": "auto"},
                         "search": {"domain": "table"}, "tracking": {"enabled": False}})


@pytest.fixture
def claimed(tmp_path, own_table):
    """A config on ``own_table`` and its run dir as claim_run_dir leaves it (the state file written)."""
    cfg = _cfg(tmp_path, own_table)
    d = cfg.run_dir()
    claim_run_dir(cfg, d)
    return cfg, d


def test_a_resume_refuses_an_input_file_changed_since_the_run_began(claimed, own_table):
    cfg, d = claimed
    assert str(own_table) in json.loads((d / STATE_FILE).read_text())["inputs"]
    assert check_run_dir(cfg, True, d) == d  # unchanged: resumed
    own_table.write_text(own_table.read_text().replace("\n", "\n", 1) + "\n")  # a blank line: other bytes
    with pytest.raises(ConfigError, match=rf"{own_table}.* changed since the run began.*rm -r"):
        check_run_dir(cfg, True, d)


def test_a_damaged_state_file_is_one_error_naming_it(claimed):
    cfg, d = claimed
    for text in ('{"config": {"name": "r"', "null", "[]", '{"versions": {}}', b"\xff\xfe{",
                 '{"config": {}, "inputs": ["lat.csv"]}'):
        (d / STATE_FILE).write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ConfigError, match=rf"{STATE_FILE} is damaged .*restore it, or .*rm -r"):
            check_run_dir(cfg, True, d)


def test_records_without_a_state_file_are_not_taken_for_a_new_run(claimed):
    cfg, d = claimed
    assert check_run_dir(cfg, True, d) == d
    (d / STATE_FILE).unlink()  # only the empty folders claim_run_dir made: a new run may start there
    assert check_run_dir(cfg, False, d) == d
    (d / "evaluations.jsonl").write_text('{"arch": "x"}\n')
    for resume in (True, False):
        with pytest.raises(ConfigError, match=r"records of a run \(evaluations.jsonl\) but not its state file"):
            check_run_dir(cfg, resume, d)


def test_only_inputs_are_fingerprinted_not_what_the_run_writes(tmp_path):
    """A plain path to the tracking store or the Optuna storage changes as the run goes: fingerprinting it would
    refuse every resume."""
    from orchestrator.pipeline.context import input_digests

    files = {n: tmp_path / n for n in ("lat.csv", "store.db", "journal.log", "out")}
    for p in files.values():
        p.write_text(p.name)
    config = {"latency": {"table": str(files["lat.csv"])}, "tracking": {"uri": str(files["store.db"])},
              "search": {"storage": str(files["journal.log"]), "n_trials": 3}, "output_dir": str(files["out"]),
              "sweep": {"targets": [str(files["lat.csv"]), "pixel3"]}, "accuracy": {"data": str(tmp_path)}}
    assert list(input_digests(config)) == [str(files["lat.csv"])]
