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


@pytest.mark.parametrize("space_name", ["nb201", "mobilenetv3"])
def test_a_layer_profile_is_the_documented_roofline_work_of_each_layer(space_name):
    """FLOPs and bytes per layer, computed one layer at a time from the network's layer list by the formulas of
    the module doc, equal the vectorised profile (a space with a closed-form layer list and one costed by hooks)."""
    from search_spaces.base import get_space
    from search_spaces.costs import network_layers

    sp = get_space(space_name)
    arch = sp.sample(np.random.default_rng(3))
    flops, moved, kinds = [], [], []
    for x in network_layers(sp, arch):
        if x.kind in ("conv", "dwconv", "linear"):
            flops.append(2.0 * x.n_out * x.macs_per_out)
            moved.append(4.0 * (x.n_in + x.n_out + x.weights))
        else:
            flops.append(float(x.n_in))
            moved.append(8.0 * x.n_in if x.kind == "elementwise" else 4.0 * (x.n_in + x.n_out))
        kinds.append(x.kind)
    p = layer_profile(sp, arch)
    assert [("conv", "dwconv", "pool", "elementwise", "linear")[t] for t in p.types] == kinds
    np.testing.assert_array_equal(p.flops, flops)
    np.testing.assert_array_equal(p.bytes, moved)
    assert len(kinds) > 10 and "conv" in kinds and "elementwise" in kinds


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


@pytest.fixture
def stack_cache(tmp_path, monkeypatch):
    """A disk cache of its own, and stacks kept from 10 architectures (not 1,000) so that a few do."""
    from orchestrator import disk_cache
    from orchestrator.latency.devices import simulated as sim

    monkeypatch.setenv(disk_cache.ENV, str(tmp_path / "c"))
    monkeypatch.setattr(sim.ProfileBank, "STACK_CACHE_MIN", 10)
    return tmp_path / "c" / sim.STACK_KIND


def _no_building(monkeypatch):
    from orchestrator.latency.devices import simulated as sim

    def refuse(*_):
        raise AssertionError("a layer profile was built where the stack should have been read")

    monkeypatch.setattr(sim, "_profile", refuse)


def _same_stack(a, b):
    parts = [(p.types, p.flops, p.bytes, starts) for p, starts in (a, b)]
    for x, y in zip(*parts, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_a_stack_read_from_the_disk_cache_is_the_built_one(space, ids, stack_cache, monkeypatch):
    from orchestrator.latency.devices import simulated as sim
    from orchestrator.latency.devices.simulated import ProfileBank

    built = ProfileBank(space).stacked(ids)  # a new bank, as a new process has: built, then kept on disk
    assert len(list(stack_cache.glob("*.npz"))) == 1
    ProfileBank(space).stacked(ids[:5])  # fewer than STACK_CACHE_MIN: built, not kept
    ProfileBank(space).stacked(ids[::-1])  # the same architectures in another order: another stack
    assert len(list(stack_cache.glob("*.npz"))) == 2
    with monkeypatch.context() as m:
        _no_building(m)
        _same_stack(built, ProfileBank(space).stacked(ids))
        m.setattr(sim, "_BANKS", {})  # a device in a new process: its bank reads the stack
        from_disk = SimulatedDevice(7, space).latency_ms(ids)
    np.testing.assert_array_equal(from_disk, SimulatedDevice(7, space).latency_ms(ids))  # the built profiles'


def test_a_damaged_or_partial_stack_is_built_again_and_rewritten(space, ids, stack_cache, monkeypatch):
    from orchestrator import disk_cache
    from orchestrator.latency.devices.simulated import STACK_KIND, ProfileBank

    built = ProfileBank(space).stacked(ids)
    (entry,) = stack_cache.glob("*.npz")
    key = entry.stem
    for damage in ("truncated", "starts past the layers", "one architecture short"):
        if damage == "truncated":
            entry.write_bytes(entry.read_bytes()[:100])
        else:
            starts = built[1].copy() if damage != "one architecture short" else built[1][:-1]
            if damage == "starts past the layers":
                starts[-1] = len(built[0].types) + 3
            disk_cache.store_arrays(STACK_KIND, key, {"types": built[0].types, "flops": built[0].flops,
                                                      "bytes": built[0].bytes, "starts": starts})
        _same_stack(built, ProfileBank(space).stacked(ids))  # built again, not the damaged entry
        with monkeypatch.context() as m:  # and rewritten whole: the next process reads it
            _no_building(m)
            _same_stack(built, ProfileBank(space).stacked(ids))


def test_a_space_outside_search_spaces_is_not_kept(space, ids, stack_cache):
    """A plug-in's space may build its layers from code this cache does not hash: its stacks are always built."""
    from orchestrator.latency.devices.simulated import ProfileBank

    plugin = type("PluginSpace", (type(space),), {})()
    ProfileBank(plugin).stacked(ids)
    assert not stack_cache.exists() or not list(stack_cache.glob("*.npz"))


def test_with_the_cache_off_or_unwritable_a_stack_is_built_each_time(space, ids, stack_cache, tmp_path,
                                                                      monkeypatch):
    from orchestrator import disk_cache
    from orchestrator.latency.devices.simulated import ProfileBank

    built = ProfileBank(space).stacked(ids)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    for where in ("off", str(blocker / "cache")):
        monkeypatch.setenv(disk_cache.ENV, where)
        _same_stack(built, ProfileBank(space).stacked(ids))
        _same_stack(built, ProfileBank(space).stacked(ids))
    assert not (blocker.parent / "cache").exists() and blocker.read_text().startswith("a file")
