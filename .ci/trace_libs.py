"""A pytest plugin for choosing .ci/run's floors subset: per test, which of optuna, ray and mlflow had a Python
function called in the test process (during the test's setup, call and teardown), via ``sys.setprofile``.

    PYTHONPATH=.ci TRACE_LIBS_OUT=/tmp/libs.tsv python -m pytest -q -p trace_libs -m "not slow" tests/X.py

writes one line per test: node id, seconds (slowed by the tracing, several times for pure-Python code), the
libraries called (``-`` for none). Work in Ray workers or other processes is not seen, only the calls the test
process makes (a Ray task is submitted through ray's functions, so a test that uses Ray is seen). A module-scoped
fixture is counted in the test that set it up.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import FrameType
from typing import Any

import pytest

LIBS = ("optuna", "ray", "mlflow")
_called: set[str] = set()
_marks = tuple((f"{os.sep}{lib}{os.sep}", lib) for lib in LIBS)


def _profile(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call":
        path = frame.f_code.co_filename
        if "site-packages" in path:
            for mark, lib in _marks:
                if mark in path:
                    _called.add(lib)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _called.clear()
    start = time.perf_counter()
    sys.setprofile(_profile)
    threading.setprofile(_profile)
    try:
        yield
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        with open(os.environ.get("TRACE_LIBS_OUT", "trace_libs.tsv"), "a") as out:
            out.write(f"{item.nodeid}\t{time.perf_counter() - start:.2f}\t{','.join(sorted(_called)) or '-'}\n")
