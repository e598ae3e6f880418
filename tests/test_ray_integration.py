"""Integration with a real local Ray cluster: latency service actors and remote devices."""

import time

import numpy as np
import pytest

from orchestrator.errors import DeviceError
from orchestrator.latency.devices import get_device
from orchestrator.latency.measurement import MeasurementProtocol
from orchestrator.latency.predictors import make_predictor
from search_spaces.base import encode_ids

pytestmark = pytest.mark.ray
FAST = MeasurementProtocol(warmup=1, repeats=3, min_repeat_ms=1.0)


def test_service_predicts_like_local(ray_cluster, space, shipped):
    from orchestrator.latency.service import start_latency_service

    archs, y = shipped.measured("fpga")
    X = encode_ids(space, archs)
    pred = make_predictor("additive").fit(X, y)
    svc = start_latency_service("fpga", pred)
    out = ray_cluster.get(svc.predict.remote(X))
    np.testing.assert_allclose(out, pred.predict(X))
    assert ray_cluster.get(svc.stats.remote())["predicted"] == len(X)
    ray_cluster.kill(svc)


def test_service_measures_in_its_own_process(ray_cluster, small_space):
    from orchestrator.latency.service import start_latency_service

    dev = get_device("torch-cpu", small_space, protocol=FAST)
    svc = start_latency_service("cpu", None, device=dev)
    ids = [small_space.arch_id(small_space.sample(np.random.default_rng(i))) for i in range(2)]
    rows = ray_cluster.get(svc.measure.remote(ids))
    assert [r["arch"] for r in rows] == ids and all(r["median_ms"] > 0 for r in rows)
    with pytest.raises(ray_cluster.exceptions.RayTaskError, match="no predictor"):
        ray_cluster.get(svc.predict.remote(np.zeros((1, 60))))
    ray_cluster.kill(svc)


def test_remote_device_runs_on_node_with_resource(ray_cluster, small_space):
    dev = get_device("remote:testphone", small_space, inner="torch-cpu", protocol=FAST)
    archs = [small_space.sample(np.random.default_rng(i)) for i in range(3)]
    samples = dev.measure_many(archs)
    assert [s.arch for s in samples] == [small_space.arch_id(a) for a in archs]
    assert all(s.median_ms > 0 for s in samples)


def test_missing_device_resource_fails_fast_listing_present_ones(ray_cluster, small_space):
    dev = get_device("remote:pixel7", small_space, protocol=FAST)
    t0 = time.perf_counter()
    with pytest.raises(DeviceError) as e:
        dev.measure_many([small_space.sample(np.random.default_rng(0))])
    assert time.perf_counter() - t0 < 1.0
    assert "device:pixel7" in str(e.value) and "device:testphone" in str(e.value)
    from orchestrator.latency.service import start_latency_service

    with pytest.raises(DeviceError, match="device:pixel7"):
        start_latency_service("pixel7", None, resources={"device:pixel7": 1})
