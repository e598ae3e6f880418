from __future__ import annotations

import os

import numpy as np
import pytest

from orchestrator.latency.table import shipped_table
from search_spaces.nb201 import NB201Space


# Three hooks for .ci/run (each does nothing unless its variable is set): a pytest process that dies without a
# summary (Ray's core worker quits with status 1 when its raylet dies) leaves the test it was running named and
# each phase's outcome written, and .ci/run continues once with the tests that had not passed.
def pytest_runtest_logstart(nodeid, location):
    """Each test's id as it starts, to ``$HWNAS_CURRENT_TEST_FILE``."""
    path = os.environ.get("HWNAS_CURRENT_TEST_FILE")
    if path:
        with open(path, "w") as f:
            f.write(nodeid + "\n")


def pytest_runtest_logreport(report):
    """Each phase's outcome (``nodeid<TAB>setup|call|teardown<TAB>passed|failed|skipped``), appended to
    ``$HWNAS_OUTCOMES_FILE``."""
    path = os.environ.get("HWNAS_OUTCOMES_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{report.nodeid}\t{report.when}\t{report.outcome}\n")


def pytest_collection_modifyitems(config, items):
    """Leave out the tests listed in ``$HWNAS_DESELECT_FILE`` (one id a line: those that passed before a death)."""
    path = os.environ.get("HWNAS_DESELECT_FILE")
    if not path:
        return
    with open(path) as f:
        done = {line.strip() for line in f if line.strip()}
    keep = [i for i in items if i.nodeid not in done]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid in done])
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _hwnas_cache(tmp_path_factory):
    """hwnas's disk cache (``orchestrator/disk_cache.py``) in this session's temp dir: shared by
    the session's tests and the processes they start (the environment is inherited), never the user's own
    ~/.cache/hwnas, and empty at the start of every session (each selection is computed once per session).
    ``$HWNAS_TEST_CACHE_DIR``, where set, is used instead: `.ci/run` gives its two pytest sessions one such
    folder, empty at the first, so the second (the fast tests at the floor versions) reads what the first
    computed (the test_pipeline module's run spent 68 s of the second session on it)."""
    from orchestrator.disk_cache import ENV

    before = os.environ.get(ENV)
    shared = os.environ.get("HWNAS_TEST_CACHE_DIR", "").strip()
    os.environ[ENV] = shared or str(tmp_path_factory.mktemp("hwnas-cache"))
    yield
    if before is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = before


@pytest.fixture(scope="session")
def space() -> NB201Space:
    return NB201Space()


@pytest.fixture(scope="session")
def small_space() -> NB201Space:
    """A tiny NB201 network (C=4, N=1) so real measurement tests run in seconds."""
    return NB201Space(channels=4, cells_per_stage=1)


@pytest.fixture(scope="session")
def shipped(space):
    """The 1,999-cell HW-NAS-Bench table (six devices), pinned by name: fast, and what these tests were written on."""
    return shipped_table(space, "nb201-hwnasbench")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster with its own temp dir and a fake device resource, for one test module.

    Per module, not per session (tried at turn 10): with one Ray for the whole session, the modules that never
    asked for Ray ran with it up, their measured devices measured in actors instead of in the test process
    (test_ofa_elastic failed), and test_runtimes' ExecuTorch case died with SIGSEGV in the test process."""
    ray = pytest.importorskip("ray")
    from orchestrator.ray_connect import _any_agent_port

    tmp = tmp_path_factory.mktemp("ray")
    restore = _any_agent_port()  # as a run's own local Ray (ray_connect.connect): no wait on Ray's fixed port
    try:
        ray.init(num_cpus=2, resources={"device:testphone": 1}, _temp_dir=str(tmp), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    finally:
        restore()
    yield ray
    ray.shutdown()
