"""Faults and bad input: the fast subset in process, the whole quick matrix of bench/faults.py as users meet
it (fresh `hwnas` processes), and the security basics kept checked."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, TableError
from orchestrator.latency.table import read_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def faults():
    spec = importlib.util.spec_from_file_location("hwnas_faults", ROOT / "bench" / "faults.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hwnas_faults"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("hwnas_faults", None)


def test_bad_tables_are_refused_naming_the_problem(faults, tmp_path, space):
    for i, (name, (text, fragment)) in enumerate(faults.BAD_CSVS.items()):
        p = tmp_path / f"{i}.csv"
        p.write_text(text)
        with pytest.raises(TableError, match=re.escape(fragment)):
            read_table(p, space)
        assert name


def test_one_driver_per_run_dir(tmp_path):
    from orchestrator.pipeline.context import run_dir_lock

    d = tmp_path / "runs" / "x"
    in_use = rf"{d} is in use by another hwnas run \(pid {os.getpid()}\)"
    with run_dir_lock(d), pytest.raises(ConfigError, match=in_use), run_dir_lock(d):
        pass
    with run_dir_lock(d):  # released with the first
        pass
    assert not d.exists()  # the lock sits beside the run dir: a refused run leaves no run dir


def test_unusable_output_dir_and_store(tmp_path):
    from orchestrator.pipeline.context import run_dir_lock
    from orchestrator.tracking import Tracker

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot use the output directory .*Not a directory"), \
            run_dir_lock(blocker / "runs" / "x"):
        pass
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError, match="MLflow store .* cannot be used .*DatabaseError.*move a corrupt file"):
        Tracker(f"sqlite:///{db}", "e")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~20 hwnas processes and two small runs: minutes on an idle VM, far more when loaded
def test_the_quick_fault_matrix(faults, tmp_path):
    """Every refusal: exit 2, the expected message, no traceback (how fast: bench/faults.py's figure)."""
    rows = faults.quick_rows(tmp_path, workers=2)  # two rows at a time: the same rows, in less wall time
    bad = [(r.name, r.observed) for r in rows if not r.ok]
    assert not bad and len(rows) == len(faults.BAD_CSVS) + len(faults.BAD_CONFIGS) + 7


@pytest.mark.slow
@pytest.mark.ray
def test_kill_inside_an_mlflow_write_then_resume(faults, tmp_path):
    """The driver SIGKILLed inside a target's MLflow record; --resume leaves one FINISHED run per target."""
    row = faults.kill_row(tmp_path, "kill inside an MLflow write", "inside a target's MLflow record",
                          lambda r: False, inject=faults.KILL_IN_MLFLOW_WRITE)
    assert row.ok, row.observed


SOURCES = [p for d in ("orchestrator", "search_spaces", "experiments") for p in (ROOT / d).rglob("*.py")]


def calls(text: str, name: str) -> list[str]:
    """The whole text of every call ``name(...)`` (balanced parentheses, across lines)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        out.append(text[m.start():i])
    return out


def test_calls_are_read_whole():
    assert calls("x = torch.load(Path(d) / 'a', weights_only=True) + f(1)", "torch.load") == [
        "torch.load(Path(d) / 'a', weights_only=True)"]


def test_security_basics_stay_checked():
    """No shell=True or eval/exec of strings, torch.load only with weights_only=True, YAML only safe_load,
    no server bound beyond loopback by default (Ray's dashboard off in local starts)."""
    assert len(SOURCES) > 40
    for path in SOURCES:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        assert "shell=True" not in text, rel
        assert not re.search(r"(?<![\w.])(eval|exec)\(", text), rel
        for call in calls(text, "torch.load"):
            assert "weights_only=True" in call, (rel, call)
        assert not re.search(r"yaml\.(load|unsafe_load)\(", text), rel
        for call in calls(text, "ray.init"):
            if "address" not in call:  # a local cluster: no dashboard (it would listen on a port)
                assert "include_dashboard=False" in call, (rel, call)
        assert "0.0.0.0" not in text, rel
