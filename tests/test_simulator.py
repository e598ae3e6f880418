"""Simulated roofline devices: deterministic, positive, distinct, clearly named."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.catalog import get_device
from orchestrator.latency.devices.simulated import SimulatedDevice, draw_hardware, layer_profile, parse_simulated
from orchestrator.latency.metrics import srcc


@pytest.fixture(scope="module")
def ids(space):
    rng = np.random.default_rng(5)
    return list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(40)))


def test_deterministic_and_positive(space, ids):
    a = SimulatedDevice(3, space).latency_ms(ids)
    b = SimulatedDevice(3, space).latency_ms(ids)
    np.testing.assert_array_equal(a, b)
    assert (a > 0).all() and np.isfinite(a).all()
    assert SimulatedDevice(3, space).measure(space.parse(ids[0])).median_ms == a[0]


def test_devices_differ_but_rankings_correlate(space, ids):
    lat = np.stack([SimulatedDevice(s, space).latency_ms(ids) for s in range(6)])
    assert len({round(float(x), 9) for x in lat[:, 0]}) == 6  # different hardware, different ms
    corr = [srcc(lat[i], lat[j]) for i in range(6) for j in range(i + 1, 6)]
    assert max(corr) < 0.999  # not one ranking rescaled
    assert np.mean(corr) > 0.3  # but related, as real devices are


def test_roofline_follows_the_work(space):
    """More convolutions, more time: every simulated device agrees on the extremes."""
    skip = {"ops": ["skip_connect"] * 6}
    conv = {"ops": ["nor_conv_3x3"] * 6}
    p_skip, p_conv = layer_profile(space, skip), layer_profile(space, conv)
    assert p_conv.flops.sum() > 10 * p_skip.flops.sum()
    for s in range(5):
        d = SimulatedDevice(s, space)
        fast, slow = d.latency_ms([space.arch_id(skip), space.arch_id(conv)])
        assert slow > fast


def test_hardware_is_a_function_of_the_seed():
    assert draw_hardware(7).as_dict() == draw_hardware(7).as_dict()
    assert draw_hardware(7).as_dict() != draw_hardware(8).as_dict()


def test_names(space):
    assert parse_simulated("sim:12") == 12
    for bad in ["sim:", "sim:-1", "sim:x", "simulated:1"]:
        with pytest.raises(DeviceError, match="sim:<n>"):
            parse_simulated(bad)
    dev = get_device("sim:4", space)
    assert dev.name == "sim:4" and dev.kind == "simulated"
    with pytest.raises(DeviceError, match="no options"):
        get_device("sim:4", space, threads=2)
