"""Contracts over every registered space and device type: rebuilt from its spec (as in another process),
it is the same thing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from orchestrator.latency.devices import DeviceCatalog, make_device
from orchestrator.latency.devices.registry import DEVICES, PREFIXES
from orchestrator.latency.devices.simulated import hooked_layers
from orchestrator.latency.fbnet_data import shipped_lut_path
from orchestrator.latency.measurement import MeasurementProtocol
from search_spaces.base import SPACES, SpaceSpec

FAST = MeasurementProtocol(warmup=1, repeats=3, min_repeat_ms=1.0)

# every registered space, configured away from its defaults (a default would hide a dropped option)
SPACE_OPTIONS = {
    "nb201": {"channels": 8, "cells_per_stage": 2, "num_classes": 7, "resolution": 24},
    "mobilenetv3": {"width_mult": 0.5, "resolution": 64, "num_classes": 10, "feature_dim": 96},
    "fbnet": {"num_classes": 7, "resolution": 24, "width_mult": 0.5},
}


def test_every_registered_space_is_covered():
    assert set(SPACE_OPTIONS) == set(SPACES.names())


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", SPACES.names())  # from the registry: a new space must add its options above
def test_space_rebuilt_from_its_spec_is_the_same_network(name):
    space = SpaceSpec(name=name, options=SPACE_OPTIONS[name]).build()
    spec = space.spec()
    again = pickle.loads(pickle.dumps(spec)).build()  # what a Ray actor or task does
    assert again.spec() == spec and spec.options.items() >= SPACE_OPTIONS[name].items()
    arch = space.sample(np.random.default_rng(0))
    torch.manual_seed(0)
    a = space.build(arch).eval()
    torch.manual_seed(0)
    b = again.build(arch).eval()
    assert n_params(a) == n_params(b)
    x = torch.randn(*space.input_shape(2))
    with torch.no_grad():
        np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert a(x).shape == (2, SPACE_OPTIONS[name]["num_classes"])


def test_the_configured_network_is_not_the_default_one():
    """The defect this guards against: MobileNetV3 width 0.5 / 10 classes measured as the 1.0 / 1000 one."""
    space = SpaceSpec(name="mobilenetv3", options={"width_mult": 0.5, "num_classes": 10}).build()
    arch = space.largest()
    assert n_params(space.build(arch)) < 0.5 * n_params(SpaceSpec(name="mobilenetv3").build().build(arch))


def device_cases(space):
    """One device of every registered exact name and prefix (and a table column), with options."""
    return [("torch-cpu", {"threads": 1, "protocol": FAST}), ("onnxrt-cpu", {"threads": 1, "protocol": FAST}),
            ("cuda", {"device_index": 0}), ("sim:3", {}), ("remote:box", {"inner": "onnxrt-cpu", "chunk": 4}),
            ("pixel3", {}), ("lut:pixel3", {"path": str(shipped_lut_path())}),
            ("onnxrt-int8", {"threads": 1, "protocol": FAST}), ("torch-compile", {"threads": 1, "protocol": FAST}),
            ("executorch-xnnpack", {"threads": 1, "protocol": FAST}),
            ("openvino-cpu", {"threads": 1, "protocol": FAST}),
            ("command:box", {"command": "python bench.py {model}", "local": True})]


OPTIONAL = {"executorch-xnnpack": "executorch", "openvino-cpu": "openvino"}  # the [runtimes] extra


def space_for(name, space):
    """A lookup table needs a layer-wise space (fbnet); every other device type takes NB201."""
    return SpaceSpec(name="fbnet").build() if name.startswith("lut:") else space


def test_every_device_type_is_covered(space):
    names = {n for n, _ in device_cases(space)}
    assert set(DEVICES.names()) <= names
    assert {PREFIXES.get(p).pattern.split(":")[0] for p in PREFIXES.names()} <= {n.split(":")[0] for n in names}


@pytest.mark.parametrize("case", range(len(device_cases(None))))
def test_device_rebuilt_from_its_spec(space, case):
    name, options = device_cases(space)[case]
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name], reason=f"{name} needs the [runtimes] extra")
    space = space_for(name, space)
    dev = DeviceCatalog(space).make(name, options)
    spec = pickle.loads(pickle.dumps(dev.spec()))
    again = make_device(spec, space)
    assert again.spec() == dev.spec() and again.name == dev.name == name
    assert again.kind == dev.kind and again.deterministic == dev.deterministic
    assert again.cluster_resources() == dev.cluster_resources()
    if dev.deterministic:  # tables and simulators answer the same numbers after the trip
        ids = [space.arch_id(space.sample(np.random.default_rng(i))) for i in range(5)]
        ids = [a for a in ids if dev.domain() is None or a in set(dev.domain())] or dev.domain()[:5]
        np.testing.assert_array_equal(dev.latency_ms(ids), again.latency_ms(ids))


@pytest.mark.parametrize("name", SPACES.names())  # from the registry: a new space must add its options above
def test_layers_without_building_match_the_hooks(name):
    """A space's fast layer list (where it has one) equals what forward hooks count on the built network."""
    from collections import Counter

    space = SpaceSpec(name=name, options=SPACE_OPTIONS[name]).build()
    if not hasattr(space, "layers"):
        pytest.skip(f"{name} has no fast layer list; the simulator uses the hooks")
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(25)] + [space.largest(), space.smallest()]
    for arch in archs:
        assert Counter(space.layers(arch)) == Counter(hooked_layers(space, arch)), space.arch_id(arch)
