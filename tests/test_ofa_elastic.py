"""OFA MobileNetV3 with elastic input resolution (issue 21 item 4): the resolution as a searchable dimension of
the mobilenetv3 space (ids ``...@<px>``, OFA's JSON form), costs that scale with it, a supernet trained at one
sampled resolution per step, BatchNorm recalibrated and subnets exported at their own resolution, and the
shipped OFA table's six GPU columns as tabulated devices of that space."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from orchestrator.errors import ArchError, SpaceError
from orchestrator.latency.devices import DeviceCatalog, make_device
from orchestrator.latency.ofa_data import OFA_DEVICES, is_ofa_mbv3, shipped_ofa_table, shipped_ofa_table_path
from orchestrator.supernet.data import DataConfig, at_resolution, load_dataset
from orchestrator.supernet.evaluate import EvalConfig, calibration_batches, evaluate_subnet, recalibrate_bn
from orchestrator.supernet.train import SupernetTrainer, TrainConfig
from search_spaces.base import SpaceSpec, arch_input_shape, get_space
from search_spaces.costs import arch_costs
from search_spaces.mobilenet import OFA_RESOLUTIONS

TINY = {"width_mult": 0.25, "num_classes": 10, "feature_dim": 64, "resolutions": [32, 48, 64]}
ARCH = "k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3"


@pytest.fixture(scope="module")
def tiny():
    return get_space("mobilenetv3", **TINY)


@pytest.fixture(scope="module")
def ofa():
    return get_space("mobilenetv3", resolutions="ofa")


def test_ofa_resolutions_are_128_to_224_in_steps_of_4(ofa):
    assert len(OFA_RESOLUTIONS) == 25 and (OFA_RESOLUTIONS[0], OFA_RESOLUTIONS[-1]) == (128, 224)
    assert set(np.diff(OFA_RESOLUTIONS)) == {4}
    assert ofa.resolutions == OFA_RESOLUTIONS and ofa.resolution == 224 and ofa.elastic_resolution
    fixed = get_space("mobilenetv3")
    assert not fixed.elastic_resolution and ofa.size == 25 * fixed.size
    assert ofa.encoding_size == fixed.encoding_size + 25


def test_default_space_keeps_its_spec_and_ids():
    """The fixed-resolution default is unchanged: no 'resolutions' in its spec (checkpoints, cache keys), no
    resolution in its ids, the same draws from the same generator."""
    space = get_space("mobilenetv3", resolution=64)
    assert "resolutions" not in space.spec().options and space.spec().options["resolution"] == 64
    assert space.arch_id(space.parse(ARCH)) == ARCH and "r" not in space.parse(ARCH)
    elastic = get_space("mobilenetv3", resolutions=[64, 96])
    a, b = space.sample(np.random.default_rng(3)), elastic.sample(np.random.default_rng(3))
    assert {k: b[k] for k in a} == a  # the resolution is drawn after everything else


def test_elastic_ids_round_trip(tiny):
    rng = np.random.default_rng(0)
    archs = [tiny.sample(rng) for _ in range(40)] + [tiny.largest(), tiny.smallest()]
    assert {a["r"] for a in archs} == {32, 48, 64}
    assert tiny.largest()["r"] == 64 and tiny.smallest()["r"] == 32
    for arch in archs:
        aid = tiny.arch_id(arch)
        assert aid.endswith(f"@{arch['r']}")
        assert tiny.parse(aid) == arch and tiny.arch_id(tiny.from_params(tiny.to_params(arch))) == aid
    assert tiny.parse(f"{ARCH}@48")["r"] == 48
    assert tiny.arch_id(tiny.parse(f"{ARCH}@48")) != tiny.arch_id(tiny.parse(f"{ARCH}@64"))


@pytest.mark.parametrize("bad, match", [
    (ARCH, r"no input resolution; this space searches it: end the id with '@<px>', one of \[32, 48, 64\]"),
    (f"{ARCH}@40", r"input resolution 40 is not one of this space's resolutions \[32, 48, 64\]"),
    (f"{ARCH}@4x8", r"the input resolution after '@' must be a whole number of pixels, got '4x8'"),
    (f"{ARCH}@", r"the input resolution after '@' must be a whole number of pixels, got ''"),
    ("k3e4|k3e3@48", r"expected 5 stages joined by '\|', got 2"),
    (ARCH.replace("k5e6", "k4e6", 1) + "@48", r"stage 0: kernel 4 not in \(3, 5, 7\)"),
    ('{"ks": [3], "e": [3], "d": [2, 2, 2, 2, 2], "r": 48}', r"'ks' must be a list of 20 numbers, got 1"),
    ('{"ks": [3, ', r"not valid JSON"),
])
def test_malformed_elastic_ids_name_the_place(tiny, bad, match):
    with pytest.raises(ArchError, match=match):
        tiny.parse(bad)


def test_a_fixed_space_refuses_a_resolution_and_says_how_to_search_it():
    space = get_space("mobilenetv3", resolution=64)
    with pytest.raises(ArchError, match=r"fixed \(64 px\).*set the space option 'resolutions'"):
        space.parse(f"{ARCH}@64")
    with pytest.raises(ArchError, match=r"drop 'r', or set the space option 'resolutions'"):
        space.validate({**space.parse(ARCH), "r": 64})


@pytest.mark.parametrize("options, match", [
    ({"resolutions": [64]}, r"fewer than 2 distinct values; for one resolution set 'resolution'"),
    ({"resolutions": [16, 64]}, r"resolutions \[16\] are not whole numbers of pixels in \[32, 1024\]"),
    ({"resolutions": "fine"}, r"resolutions 'fine': give a list .* or 'ofa'"),
    ({"resolutions": [64, 96], "resolution": 64}, r"the space's resolution is the largest \(96\); drop 'resolution'"),
])
def test_bad_resolutions_option_is_refused(options, match):
    with pytest.raises(SpaceError, match=match):
        get_space("mobilenetv3", **options)


def test_spec_round_trip_and_input_shape_per_arch(tiny):
    again = SpaceSpec(**json.loads(json.dumps(tiny.spec().model_dump()))).build()
    assert again.spec() == tiny.spec() and again.resolutions == (32, 48, 64)
    arch = tiny.parse(f"{ARCH}@48")
    assert tiny.input_shape(2, arch=arch) == (2, 3, 48, 48) == arch_input_shape(tiny, f"{ARCH}@48", 2)
    assert tiny.input_shape(2) == (2, 3, 64, 64)  # without an architecture: the largest resolution
    fixed = get_space("mobilenetv3", resolution=64)
    assert arch_input_shape(fixed, ARCH, 3) == (3, 3, 64, 64)


def test_macs_scale_with_resolution_and_parameters_do_not(tiny):
    small, big = (arch_costs(tiny, tiny.parse(f"{ARCH}@{r}")) for r in (32, 64))
    assert small.params_m == big.params_m
    # 4x the pixels: every convolution 4x the work; only the pooled head's 1x1 layers stay the same
    assert 3.0 < big.macs_m / small.macs_m < 4.0 and big.peak_mem_mb == pytest.approx(4 * small.peak_mem_mb)


def test_milp_model_of_an_elastic_space_is_optimal():
    from orchestrator.search.milp import milp_front, space_model
    from search_spaces.mobilenet import DEPTHS, EXPANDS, KERNELS, MAX_DEPTH, N_STAGES

    space = get_space("mobilenetv3", resolutions=[32, 64, 96], num_classes=10)
    c = np.random.default_rng(4).normal(size=space.encoding_size)
    best = milp_front(space_model(space), c, 0.0, np.zeros_like(c), 0.0, max_points=1).points[0]
    per = len(DEPTHS) + MAX_DEPTH * (len(KERNELS) + len(EXPANDS))
    total = 0.0
    for s in range(N_STAGES):
        cs = c[s * per:(s + 1) * per]
        slots = [cs[3 + b * 6: 6 + b * 6].max() + cs[6 + b * 6: 9 + b * 6].max() for b in range(MAX_DEPTH)]
        total += max(cs[i] + sum(slots[:d]) for i, d in enumerate(DEPTHS))
    total += c[N_STAGES * per:].max()
    assert best.accuracy == pytest.approx(total, abs=1e-9)
    assert best.arch_id.endswith(f"@{[32, 64, 96][int(np.argmax(c[N_STAGES * per:]))]}")


# -- the shipped OFA table ------------------------------------------------------------------------------------


def test_the_ofa_table_loads_as_tabulated_devices_with_matching_ids(ofa):
    table = shipped_ofa_table(ofa)
    assert table is not None and table.devices == list(OFA_DEVICES)
    with shipped_ofa_table_path().open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(table.archs) == 5000
    assert table.archs == [f"{r['hwnas_id']}@{r['resolution']}" for r in rows]  # the project's id + resolution
    for dev in OFA_DEVICES:
        np.testing.assert_allclose(table.column(dev), [float(r[f"lat_ms_{dev}"]) for r in rows])
    assert {int(r["resolution"]) for r in rows} == set(OFA_RESOLUTIONS)
    cat = DeviceCatalog(ofa)
    dev = cat.make("titan_xp_64")
    assert dev.kind == "tabulated" and set(OFA_DEVICES) <= set(cat.names())
    again = make_device(dev.spec(), ofa)  # as in a Ray task: the table re-read by reference
    ids = table.archs[:7]
    np.testing.assert_array_equal(again.latency_ms(ids), table.column("titan_xp_64")[:7])


def test_the_ofa_table_is_only_for_the_network_it_measured(ofa):
    assert is_ofa_mbv3(ofa) and is_ofa_mbv3(get_space("mobilenetv3", resolutions="ofa", dropout=0.2))
    for other in ({}, {"resolutions": [128, 224]}, {"resolutions": "ofa", "width_mult": 0.5},
                  {"resolutions": "ofa", "num_classes": 10}):
        space = get_space("mobilenetv3", **other)
        assert not is_ofa_mbv3(space) and shipped_ofa_table(space) is None
        assert "titan_xp_64" not in DeviceCatalog(space).names()


def test_a_plan_on_ofa_sweeps_the_five_other_gpu_columns(tmp_path):
    from orchestrator.config import parse_config
    from orchestrator.pipeline.plan import make_plan

    cfg = parse_config({"name": "ofa", "output_dir": str(tmp_path), "space": {"name": "mobilenetv3",
                        "options": {"resolutions": "ofa"}}, "latency": {"proxy": "2080ti_1"},
                        "sweep": {"targets": ["tabulated"]}, "tracking": {"enabled": False}})
    plan = make_plan(cfg)
    assert plan.table is not None and len(plan.table.archs) == 5000
    assert sorted(t.name for t in plan.targets) == sorted(d for d in OFA_DEVICES if d != "2080ti_1")


def test_a_measured_device_times_each_subnet_at_its_resolution(tiny, monkeypatch):
    from orchestrator.latency.measurement import MeasurementProtocol

    seen: list[tuple[int, ...]] = []
    build = tiny.build

    def recording_build(arch):
        net = build(arch)
        net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
        return net

    monkeypatch.setattr(tiny, "build", recording_build)
    dev = DeviceCatalog(tiny).make("torch-cpu", {"threads": 1, "batch_size": 2,
                                                 "protocol": MeasurementProtocol(warmup=1, repeats=3)})
    lat = dev.latency_ms([f"{ARCH}@32", f"{ARCH}@64"])
    assert lat.shape == (2,) and np.all(lat > 0)
    assert set(seen) == {(2, 3, 32, 32), (2, 3, 64, 64)}


def test_runtimes_that_check_on_images_accept_an_elastic_space(tiny):
    """They export and check each architecture at its own resolution (tests/test_runtimes.py measures it), so
    validation no longer refuses them on a space that searches the resolution."""
    assert DeviceCatalog(tiny).problems("onnxrt-int8", {"threads": 1}) == []


def test_a_supernet_at_other_resolutions_is_refused_before_any_work(tmp_path):
    from orchestrator.config import parse_config
    from orchestrator.errors import ConfigError
    from orchestrator.pipeline.plan import make_plan

    cfg = parse_config({"name": "ofa", "output_dir": str(tmp_path), "space": {"name": "mobilenetv3",
                        "options": {"resolutions": "ofa"}}, "latency": {"proxy": "2080ti_1"},
                        "accuracy": {"source": "supernet", "supernet": {"options": {"width_mult": 0.25,
                                                                                     "resolutions": [32, 64]}}},
                        "tracking": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"accuracy.supernet.options: the space searches the input resolution "
                                          r"\[128, 132, .*the supernet trains at \[32, 64\]"):
        make_plan(cfg)


# -- supernet: training, BatchNorm, export at the subnet's resolution -----------------------------------------


def _record_inputs(net: torch.nn.Module) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    return seen


def test_training_samples_one_resolution_per_step(tiny):
    data = load_dataset(DataConfig(name="synthetic", resolution=32, synthetic_size=16, num_classes=10))
    cfg = TrainConfig(epochs=1, batch_size=4, n_random=0, augment=False, seed=3)
    trainer = SupernetTrainer(tiny, data, cfg)
    seen = _record_inputs(trainer.net)
    x, y = data.x_train[:4], data.y_train[:4]
    for _ in range(4):
        trainer.step(x, y)
    per_step = [seen[i:i + 2] for i in range(0, len(seen), 2)]  # largest, smallest
    assert len(per_step) == 4 and all(len(set(step)) == 1 for step in per_step)  # the sandwich at one resolution
    assert {s[0] for s in per_step} <= {(32, 32), (48, 48), (64, 64)} and len({s[0] for s in per_step}) > 1
    again = SupernetTrainer(tiny, data, cfg)  # the resolutions are a function of the seed
    drawn = [again.step_resolution(again.sandwich()) for _ in range(4)]
    assert [(r, r) for r in drawn] == [s[0] for s in per_step]
    fixed = SupernetTrainer(get_space("mobilenetv3", **{**TINY, "resolutions": None, "resolution": 32}), data, cfg)
    assert fixed.step_resolution(fixed.sandwich()) is None and "r" not in fixed.sandwich()[0]


def test_bn_is_recalibrated_and_accuracy_measured_at_the_subnets_resolution(tiny, monkeypatch):
    data = load_dataset(DataConfig(name="synthetic", resolution=32, synthetic_size=64, num_classes=10))
    sup = tiny.build_supernet().eval()
    arch = tiny.parse(f"{ARCH}@48")
    cfg = EvalConfig(calib_batches=2, calib_batch_size=8, batch_size=16)
    calib = calibration_batches(data, cfg)
    seen: list[tuple[int, ...]] = []
    extract = tiny.extract

    def recording_extract(supernet, a):
        net = extract(supernet, a)
        net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
        return net

    monkeypatch.setattr(tiny, "extract", recording_extract)
    res = evaluate_subnet(tiny, sup, arch, data, cfg, calib)
    assert res.arch_id == f"{ARCH}@48" and seen and set(seen) == {(48, 48)}  # calibration and validation
    # the statistics are those of the images at 48 px, not at the data's 32
    at48, at32 = (extract(sup, arch) for _ in range(2))
    recalibrate_bn(at48, calib, torch.device("cpu"), 48)
    recalibrate_bn(at32, calib, torch.device("cpu"))
    manual = extract(sup, arch)
    recalibrate_bn(manual, [at_resolution(x, 48) for x in calib], torch.device("cpu"))
    bn = lambda net: net.first_conv.bn.running_var  # noqa: E731
    torch.testing.assert_close(bn(at48), bn(manual))
    assert not torch.allclose(bn(at48), bn(at32))


def test_zero_cost_scores_each_subnet_at_its_resolution(tiny):
    from orchestrator.search.zero_cost import score_cells, score_network

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    got = score_cells(tiny, [f"{ARCH}@32", f"{ARCH}@64"], x, y, ["naswot"], seed=1)["naswot"]
    torch.manual_seed(1)
    want = score_network(tiny.build(tiny.parse(f"{ARCH}@64")), at_resolution(x, 64), y, ["naswot"])["naswot"]
    assert got[1] == pytest.approx(want) and got[0] != pytest.approx(got[1])


@pytest.mark.slow
def test_a_resolution_elastic_subnet_is_exported_at_its_resolution(tiny, tmp_path):
    """The issue's test: the exported files (JSON, torch.export program, ONNX) take the subnet's own resolution
    and agree with the supernet's subnet there."""
    import onnxruntime as ort

    from orchestrator.supernet.export import export_subnet, verify_export

    torch.manual_seed(0)
    sup = tiny.build_supernet().eval()
    arch = tiny.parse(f"{ARCH}@48")
    exp = export_subnet(tiny, sup, arch, tmp_path)
    meta = json.loads(exp.arch_json.read_text())
    assert meta["arch_id"] == f"{ARCH}@48" and meta["input_shape"] == ["batch", 3, 48, 48]
    assert meta["space_spec"]["options"]["resolutions"] == [32, 48, 64]
    shape = ort.InferenceSession(str(exp.onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    assert shape[1:] == [3, 48, 48] and not isinstance(shape[0], int)
    prog = torch.export.load(exp.program).module()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(prog(x), sup(x, arch), rtol=1e-4, atol=1e-4)
    diffs = verify_export(tiny, sup, exp)
    assert max(diffs.values()) < 1e-4
