"""Conformance kits over every registered space and device type, parametrised from the registries (a new
one without a case here fails): rebuilt from its spec (as in another process) it is the same thing; a space's
ids round-trip, its sampling is a function of the generator, its encoding and costs are sound; a device keeps
the Device protocol and measures one positive latency per architecture."""

from __future__ import annotations

import pickle
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from orchestrator.latency.devices import Device, DeviceCatalog, make_device
from orchestrator.latency.devices.registry import DEVICES, PREFIXES
from orchestrator.latency.devices.simulated import hooked_layers
from orchestrator.latency.fbnet_data import shipped_lut_path
from orchestrator.latency.measurement import MeasurementProtocol
from search_spaces.base import SPACES, SpaceSpec, arch_input_shape, encode_ids

FAST = MeasurementProtocol(warmup=1, repeats=3, min_repeat_ms=1.0)

# every registered space, configured away from its defaults (a default would hide a dropped option)
SPACE_OPTIONS = {
    "nb201": {"channels": 8, "cells_per_stage": 2, "num_classes": 7, "resolution": 24},
    "mobilenetv3": {"width_mult": 0.5, "resolution": 64, "num_classes": 10, "feature_dim": 96},
    "fbnet": {"num_classes": 7, "resolution": 24, "width_mult": 0.5},
}


# further configurations that change what an architecture is (case name -> (space, options)): each runs the same
# space kit as the registered spaces
SPACE_VARIANTS = {
    "mobilenetv3@elastic-resolution": ("mobilenetv3", {"width_mult": 0.5, "resolutions": [32, 48, 64],
                                                       "num_classes": 10, "feature_dim": 96}),
}
SPACE_CASES = {**{n: (n, o) for n, o in SPACE_OPTIONS.items()}, **SPACE_VARIANTS}
SPACE_CASE_NAMES = [*SPACES.names(), *SPACE_VARIANTS]  # from the registry, then the variants


def test_every_registered_space_is_covered():
    assert set(SPACE_OPTIONS) == set(SPACES.names())
    assert all(name in SPACES for name, _ in SPACE_VARIANTS.values())


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", SPACE_CASE_NAMES)  # from the registry: a new space must add its options above
def test_space_rebuilt_from_its_spec_is_the_same_network(name):
    space_name, options = SPACE_CASES[name]
    space = SpaceSpec(name=space_name, options=options).build()
    spec = space.spec()
    again = pickle.loads(pickle.dumps(spec)).build()  # what a Ray actor or task does
    assert again.spec() == spec and spec.options.items() >= options.items()
    arch = space.sample(np.random.default_rng(0))
    torch.manual_seed(0)
    a = space.build(arch).eval()
    torch.manual_seed(0)
    b = again.build(arch).eval()
    assert n_params(a) == n_params(b)
    x = torch.randn(*arch_input_shape(space, arch, 2))  # the architecture's own input (its resolution)
    with torch.no_grad():
        np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert a(x).shape == (2, options["num_classes"])


def _space(name):
    space_name, options = SPACE_CASES[name]
    return SpaceSpec(name=space_name, options=options).build()


@pytest.mark.parametrize("name", SPACE_CASE_NAMES)
def test_space_ids_round_trip(name):
    """An id parses to the architecture it names and prints back to itself (ids are the keys of every table,
    log and report); the largest and smallest networks included."""
    space = _space(name)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)] + [space.largest(), space.smallest()]
    for arch in archs:
        aid = space.arch_id(arch)
        assert isinstance(aid, str) and aid == aid.strip() and aid
        assert space.parse(aid) == arch and space.arch_id(space.parse(aid)) == aid
        assert space.arch_id(space.from_params(space.to_params(arch))) == aid  # Optuna's parameters too
    assert space.arch_id(space.largest()) != space.arch_id(space.smallest())


@pytest.mark.parametrize("name", SPACE_CASE_NAMES)
def test_space_sampling_is_a_function_of_the_generator(name):
    """The same seed gives the same architectures; other seeds give others (randomness only from the rng)."""
    space = _space(name)

    def draw(seed):
        rng = np.random.default_rng(seed)
        return [space.arch_id(space.sample(rng)) for _ in range(10)]

    assert draw(5) == draw(5)
    assert draw(5) != draw(6)
    assert len(set(draw(7))) > 1  # a generator's successive draws differ


@pytest.mark.parametrize("name", SPACE_CASE_NAMES)
def test_space_encoding(name):
    """One finite vector of ``encoding_size`` per architecture; different architectures, different vectors."""
    space = _space(name)
    rng = np.random.default_rng(2)
    ids = list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(20)))
    X = encode_ids(space, ids)
    assert X.shape == (len(ids), space.encoding_size) and np.all(np.isfinite(X))
    assert len({row.tobytes() for row in X}) == len(ids)
    assert space.size > 1


@pytest.mark.parametrize("name", SPACE_CASE_NAMES)
def test_space_costs(name):
    """Every registered cost is finite and positive for every architecture, and the largest network costs more
    parameters and multiply-adds than the smallest."""
    from search_spaces.costs import COSTS, CostModel

    space = _space(name)
    costs = CostModel(space.spec())
    ids = [space.arch_id(a) for a in (space.largest(), space.smallest(), space.sample(np.random.default_rng(3)))]
    m = costs.matrix(ids, list(COSTS))
    assert m.shape == (3, len(COSTS)) and np.all(np.isfinite(m)) and np.all(m > 0), m
    big, small = costs.of(ids[:2])
    assert big.params_m > small.params_m and big.macs_m > small.macs_m
    assert big.params_m == pytest.approx(n_params(space.build(space.largest())) / 1e6)


def test_the_configured_network_is_not_the_default_one():
    """The defect this guards against: MobileNetV3 width 0.5 / 10 classes measured as the 1.0 / 1000 one."""
    space = SpaceSpec(name="mobilenetv3", options={"width_mult": 0.5, "num_classes": 10}).build()
    arch = space.largest()
    assert n_params(space.build(arch)) < 0.5 * n_params(SpaceSpec(name="mobilenetv3").build().build(arch))


@dataclass(frozen=True)
class DeviceCase:
    """A cheap valid instance of one device type: its name, options and space, and where its latency can be
    asked in this kit (``here``: on this host in the fast tier; ``slow``: here, but compiling or exporting takes
    tens of seconds; ``cuda``: needs a GPU; ``ray``: on a Ray node carrying ``device:testphone``)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    space: str = "nb201"  # nb201: the session's NB201; small: the tiny NB201 (C=4, N=1); fbnet
    measure: str = "here"
    needs: str | None = None  # an optional module (the [runtimes] extra)


MEASURED = {"threads": 1, "protocol": FAST}

# One factory per registered device type, keyed as the catalog lists it: an exact name (torch-cpu), a prefix's
# pattern (sim:<n>) or <column> for a latency table's columns. A newly registered type without an entry here
# fails test_every_device_type_has_a_case.
DEVICE_CASES: dict[str, Callable[[], DeviceCase]] = {
    "<column>": lambda: DeviceCase("pixel3"),
    "torch-cpu": lambda: DeviceCase("torch-cpu", MEASURED, "small"),
    "onnxrt-cpu": lambda: DeviceCase("onnxrt-cpu", MEASURED, "small"),
    # at the default tolerance (0.1): before 7-bit weights on CPUs whose int8 kernels saturate (int8_saturates),
    # one of this kit's cells was 0.70 off and needed a looser one
    "onnxrt-int8": lambda: DeviceCase("onnxrt-int8", MEASURED, "small"),
    "torch-compile": lambda: DeviceCase("torch-compile", MEASURED, "small", measure="slow"),
    "executorch-xnnpack": lambda: DeviceCase("executorch-xnnpack", MEASURED, "small", "slow", "executorch"),
    "openvino-cpu": lambda: DeviceCase("openvino-cpu", MEASURED, "small", "slow", "openvino"),
    "cuda": lambda: DeviceCase("cuda", {"device_index": 0}, "small", measure="cuda"),
    "sim:<n>": lambda: DeviceCase("sim:3"),
    "remote:<name>": lambda: DeviceCase("remote:testphone", {"inner": "onnxrt-cpu", "chunk": 4, **MEASURED},
                                        "small", measure="ray"),
    "lut:<device>": lambda: DeviceCase("lut:pixel3", {"path": str(shipped_lut_path())}, "fbnet"),
    "command:<name>": lambda: DeviceCase("command:box", {"command": f"{shlex.quote(sys.executable)} -c "
                                                         f"{shlex.quote(COMMAND_SCRIPT)} {{model}} {{input_shape}}",
                                                         "local": True}, "small"),
}

# what the command device runs in this kit: ONNX Runtime timing the exported file, printing its median (no
# braces: the command is a template)
COMMAND_SCRIPT = (
    "import sys, time; import numpy as np; import onnxruntime as ort\n"
    "o = ort.SessionOptions(); o.intra_op_num_threads = 1\n"
    "s = ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n"
    "x = np.zeros([int(d) for d in sys.argv[2].split(',')], np.float32)\n"
    "t = []\n"
    "for _ in range(5):\n"
    "    t0 = time.perf_counter(); s.run(None, dict([(s.get_inputs()[0].name, x)]))\n"
    "    t.append((time.perf_counter() - t0) * 1e3)\n"
    "print('median_ms=%.4f' % float(np.median(t)))\n"
)


def registered_device_types() -> list[str]:
    """Every device type the catalog resolves (built-ins and plug-ins), as it lists them: exact names,
    prefix patterns, and ``<column>`` for a latency table's columns."""
    from search_spaces.nb201 import NB201Space

    cat = DeviceCatalog(NB201Space())  # loads the built-in types and the plug-ins
    table = set(cat.table.devices) if cat.table is not None else set()
    return sorted({"<column>" if n in table else n for n in cat.names()})


DEVICE_TYPES = registered_device_types()


def test_every_device_type_has_a_case():
    missing = sorted(set(DEVICE_TYPES) - set(DEVICE_CASES))
    assert not missing, f"registered device type(s) {missing} have no case: add a cheap valid instance to DEVICE_CASES"
    stale = sorted(set(DEVICE_CASES) - set(DEVICE_TYPES))
    assert not stale, f"DEVICE_CASES has entries {stale} for types no longer registered"


def test_the_catalog_lists_every_registered_type():
    """The kit's parametrisation comes from the catalog; the catalog must list what the registries hold."""
    types = set(DEVICE_TYPES)
    assert set(DEVICES.names()) <= types and "<column>" in types
    assert {PREFIXES.get(p).pattern for p in PREFIXES.names()} <= types


def device_case(key: str, spaces: dict[str, Any]) -> tuple[DeviceCase, Any]:
    if key not in DEVICE_CASES:
        pytest.fail(f"device type {key!r} is registered but has no case in DEVICE_CASES")
    case = DEVICE_CASES[key]()
    if case.needs:
        pytest.importorskip(case.needs, reason=f"{case.name} needs the [runtimes] extra")
    return case, spaces[case.space]


@pytest.fixture(scope="module")
def spaces(space, small_space):
    return {"nb201": space, "small": small_space, "fbnet": SpaceSpec(name="fbnet").build()}


def _ids(space, dev, n=4):
    ids = [space.arch_id(space.sample(np.random.default_rng(i))) for i in range(n)]
    dom = dev.domain()
    return ids if dom is None else dom[:n]


@pytest.mark.parametrize("key", DEVICE_TYPES)
def test_device_rebuilt_from_its_spec(spaces, key):
    case, space = device_case(key, spaces)
    dev = DeviceCatalog(space).make(case.name, case.options)
    spec = pickle.loads(pickle.dumps(dev.spec()))
    again = make_device(spec, space)
    assert again.spec() == dev.spec() and again.name == dev.name == case.name
    assert again.kind == dev.kind and again.deterministic == dev.deterministic
    assert again.cluster_resources() == dev.cluster_resources()
    if dev.deterministic:  # tables and simulators answer the same numbers after the trip
        ids = _ids(space, dev, 5)
        np.testing.assert_array_equal(dev.latency_ms(ids), again.latency_ms(ids))


@pytest.mark.parametrize("key", DEVICE_TYPES)
def test_device_keeps_the_protocol(spaces, key):
    """The Device protocol's members, each with the type and meaning the pipeline relies on; building starts
    nothing (no measurement, no actor) and close() may be called twice."""
    case, space = device_case(key, spaces)
    dev = DeviceCatalog(space).make(case.name, case.options)
    assert isinstance(dev, Device) and dev.name == case.name
    assert isinstance(dev.kind, str) and dev.kind and isinstance(dev.deterministic, bool)
    res = dev.cluster_resources()
    assert isinstance(res, dict) and all(isinstance(k, str) and v > 0 for k, v in res.items()), res
    dom = dev.domain()
    if dom is not None:  # a finite domain: valid ids of the space, no repeats
        assert dom and len(set(dom)) == len(dom)
        assert all(space.arch_id(space.parse(a)) == a for a in dom[:20])
    ids = _ids(space, dev)
    truth = dev.truth(ids)
    if dev.deterministic:  # known without cost: its truth is its latency
        assert truth is not None and truth.shape == (len(ids),)
        lat = dev.latency_ms(ids)
        assert lat.shape == (len(ids),) and np.all(np.isfinite(lat)) and np.all(lat > 0), lat
        np.testing.assert_array_equal(truth, lat)
    else:
        assert truth is None  # a measured device knows nothing without measuring
    dev.close()
    dev.close()


def _assert_measures(dev, space):
    ids = _ids(space, dev, 2)
    lat = dev.latency_ms(ids)
    assert lat.shape == (2,) and np.all(np.isfinite(lat)) and np.all(lat > 0), lat
    dev.close()


@pytest.mark.parametrize("key", [k for k in DEVICE_TYPES if k in DEVICE_CASES and DEVICE_CASES[k]().measure == "here"])
def test_device_measures_one_positive_latency_per_architecture(spaces, key):
    case, space = device_case(key, spaces)
    _assert_measures(DeviceCatalog(space).make(case.name, case.options), space)


@pytest.mark.slow
@pytest.mark.parametrize("key", [k for k in DEVICE_TYPES if k in DEVICE_CASES and DEVICE_CASES[k]().measure == "slow"])
def test_slow_device_measures_one_positive_latency_per_architecture(spaces, key):
    case, space = device_case(key, spaces)
    _assert_measures(DeviceCatalog(space).make(case.name, case.options), space)


@pytest.mark.gpu
@pytest.mark.parametrize("key", [k for k in DEVICE_TYPES if k in DEVICE_CASES and DEVICE_CASES[k]().measure == "cuda"])
def test_gpu_device_measures_one_positive_latency_per_architecture(spaces, key):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    case, space = device_case(key, spaces)
    _assert_measures(DeviceCatalog(space).make(case.name, case.options), space)


def test_every_case_is_measured_somewhere():
    where = {"here", "slow", "cuda", "ray"}
    bad = {k: DEVICE_CASES[k]().measure for k in DEVICE_CASES if DEVICE_CASES[k]().measure not in where}
    assert not bad, f"device cases with an unknown measure {bad}; use one of {sorted(where)}"


@pytest.mark.parametrize("name", SPACE_CASE_NAMES)  # from the registry: a new space must add its options above
def test_layers_without_building_match_the_hooks(name):
    """A space's fast layer list (where it has one) equals what forward hooks count on the built network."""
    from collections import Counter

    space = _space(name)
    if not hasattr(space, "layers"):
        pytest.skip(f"{name} has no fast layer list; the simulator uses the hooks")
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(25)] + [space.largest(), space.smallest()]
    for arch in archs:
        assert Counter(space.layers(arch)) == Counter(hooked_layers(space, arch)), space.arch_id(arch)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("key", [k for k in DEVICE_TYPES if k in DEVICE_CASES and DEVICE_CASES[k]().measure == "ray"])
def test_ray_device_measures_one_positive_latency_per_architecture(ray_cluster, spaces, key):
    """Last in this module: the Ray cluster it starts would move later measured devices into actors."""
    case, space = device_case(key, spaces)
    _assert_measures(DeviceCatalog(space).make(case.name, case.options), space)
