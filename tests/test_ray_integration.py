"""Integration with a real local Ray cluster: latency service actors and remote devices."""


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


def _params(space, ids):
    return [sum(p.numel() for p in space.build(space.parse(a)).parameters()) for a in ids]


@pytest.fixture(scope="module")
def mbv3():
    """A configured MobileNetV3 (width 0.5, 10 classes, 64 px): far from the space's defaults."""
    from search_spaces.base import SpaceSpec

    return SpaceSpec(name="mobilenetv3", options={"width_mult": 0.5, "num_classes": 10, "resolution": 64}).build()


def test_service_measures_the_configured_network_in_its_own_process(ray_cluster, mbv3):
    """The actor rebuilds the space from its spec: it times the configured network (parameter count from the
    other process), not the space's default one."""
    from orchestrator.latency.service import start_latency_service

    dev = get_device("torch-cpu", mbv3, protocol=FAST, isolate=False)
    svc = start_latency_service("cpu", None, device=dev)
    ids = [mbv3.arch_id(mbv3.sample(np.random.default_rng(i))) for i in range(2)]
    rows = ray_cluster.get(svc.measure.remote(ids))
    assert [r["arch"] for r in rows] == ids
    assert [r["n_params"] for r in rows] == _params(mbv3, ids)
    assert _params(mbv3, ids)[0] < 0.5 * _params(mbv3.__class__(), ids[:1])[0]  # not the 1.0 / 1000 network
    with pytest.raises(ray_cluster.exceptions.RayTaskError, match="no predictor"):
        ray_cluster.get(svc.predict.remote(np.zeros((1, 60))))
    ray_cluster.kill(svc)
    # latency_ms of an isolated measured device runs in such an actor (another process) and returns medians
    iso = get_device("torch-cpu", mbv3, protocol=FAST)
    samples = iso.samples(ids)
    assert [s.n_params for s in samples] == _params(mbv3, ids)


def test_remote_device_measures_the_configured_network_on_the_node(ray_cluster, mbv3):
    dev = get_device("remote:testphone", mbv3, inner="torch-cpu", protocol=FAST)
    ids = [mbv3.arch_id(mbv3.sample(np.random.default_rng(i))) for i in range(3)]
    samples = dev.samples(ids)
    assert [s.arch for s in samples] == ids
    assert [s.n_params for s in samples] == _params(mbv3, ids)


def test_missing_device_resource_fails_fast_listing_present_ones(ray_cluster, small_space, monkeypatch):
    """Refused before any measurement task is submitted (a task asking for a resource no node carries would
    wait forever), naming the missing resource and the present ones."""
    dev = get_device("remote:pixel7", small_space, protocol=FAST)
    submitted = []
    real_remote = ray_cluster.remote
    monkeypatch.setattr(ray_cluster, "remote", lambda *a, **k: submitted.append(a) or real_remote(*a, **k))
    with pytest.raises(DeviceError) as e:
        dev.measure_many([small_space.sample(np.random.default_rng(0))])
    assert submitted == []
    get_device("remote:testphone", small_space, protocol=FAST).measure_many([small_space.largest()])
    assert len(submitted) == 1  # the spy sees a submission where there is one
    monkeypatch.undo()
    assert "device:pixel7" in str(e.value) and "device:testphone" in str(e.value)
    from orchestrator.latency.service import start_latency_service

    with pytest.raises(DeviceError, match="device:pixel7"):
        start_latency_service("pixel7", None, resources={"device:pixel7": 1})
