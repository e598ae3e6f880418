from __future__ import annotations

import numpy as np
import pytest

from orchestrator.latency.table import shipped_table
from search_spaces.nb201 import NB201Space


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


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster with its own temp dir and a fake device resource, started once for the whole test
    session. It was one per module (17 starts and stops in one process): CI's test process died once inside
    test_command_device with exit status 1 and no pytest output (turn 10), which is Ray's core worker quitting when
    its local raylet is gone, and three times here with SIGSEGV beside other Ray jobs (turn 9); restarting Ray in
    one process is a known source of such crashes (ray-project/ray#31145). One start removes the restarts."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # a test before this one started Ray through the product's own connect()
        if ray.cluster_resources().get("device:testphone") == 1:
            yield ray
            return
        ray.shutdown()
    tmp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, resources={"device:testphone": 1}, _temp_dir=str(tmp), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
