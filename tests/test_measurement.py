"""Real measurement of a few tiny NB201 cells on this CPU."""

import numpy as np
import pytest
import torch

from orchestrator.errors import DeviceError, UnknownNameError
from orchestrator.latency.devices import get_device, reliability_check
from orchestrator.latency.devices.measured import export_onnx
from orchestrator.latency.measurement import MeasurementProtocol, summarize, time_callable

FAST = MeasurementProtocol(warmup=1, repeats=3, min_repeat_ms=1.0)
CELLS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
]


def test_summarize():
    s = summarize("a", [1.0, 2.0, 3.0, 100.0])
    assert s.median_ms == 2.5 and s.repeats == 4 and s.cv > 1 and s.p10_ms < s.p90_ms


def test_time_callable_counts_calls():
    """Warm-up, one probe, repeats x number timed calls; the figures are milliseconds per call (each call
    busy-waits at least 1 ms, so every repeat's per-call time is >= 1 ms whatever the load)."""
    import time

    calls = []

    def one_ms() -> None:
        calls.append(1)
        end = time.perf_counter_ns() + 1_000_000
        while time.perf_counter_ns() < end:
            pass

    s = time_callable("a", one_ms, MeasurementProtocol(warmup=2, repeats=3, number=4, min_repeat_ms=0))
    assert len(calls) == 2 + 1 + 3 * 4 and s.repeats == 3
    assert s.p10_ms >= 1.0 and s.median_ms >= 1.0  # per call, in ms (not per repeat, not in s or ns)


@pytest.mark.parametrize("runtime", ["torch-cpu", "onnxrt-cpu"])
def test_real_cpu_measurement(runtime, small_space):
    dev = get_device(runtime, small_space, threads=1, protocol=FAST)
    samples = dev.measure_many([small_space.parse(a) for a in CELLS])
    assert [s.arch for s in samples] == CELLS
    assert all(s.p10_ms > 0 and s.repeats == 3 for s in samples)  # every repeat timed the network
    n_params = [sum(p.numel() for p in small_space.build(small_space.parse(a)).parameters()) for a in CELLS]
    assert [s.n_params for s in samples] == n_params  # each sample says which network it timed
    assert dev.spec().name == runtime and dev.spec().options["threads"] == 1


@pytest.mark.slow  # wall-clock timings: out of the fast tier, which runs on loaded hosts
@pytest.mark.parametrize("runtime", ["torch-cpu", "onnxrt-cpu"])
def test_real_cpu_measurement_ranks_heavy_above_light(runtime, small_space):
    """Nine 3x3 convolutions take longer than one skip connection, compared on each one's fastest tenth of
    repeats (p10: the least disturbed by other load) over 9 repeats."""
    dev = get_device(runtime, small_space, threads=1, protocol=MeasurementProtocol(warmup=2, repeats=9,
                                                                                    min_repeat_ms=2.0))
    heavy, light = dev.measure_many([small_space.parse(a) for a in CELLS[:2]])
    assert heavy.p10_ms > light.p10_ms, (heavy, light)
    rep = reliability_check(dev, CELLS, np.random.default_rng(0))  # the second pass, in another order
    assert rep.second_ms[0] > rep.second_ms[1], rep

def test_onnxrt_times_a_cell_that_ignores_its_input(small_space):
    """Every path cut: the output does not depend on the input, and the exported graph has no input."""
    cut = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    (s,) = get_device("onnxrt-cpu", small_space, threads=1, protocol=FAST).measure_many([small_space.parse(cut)])
    assert s.arch == cut and s.median_ms > 0


def test_onnx_export_reproduces_torch(small_space):
    import onnxruntime as ort

    net = small_space.build(small_space.parse(CELLS[2])).eval()
    x = torch.randn(2, 3, 32, 32)
    sess = ort.InferenceSession(export_onnx(net, x), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], net(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_reliability_check_reports_test_retest_srcc(small_space, rng, caplog):
    dev = get_device("torch-cpu", small_space, protocol=FAST)
    rep = reliability_check(dev, CELLS, rng)
    assert rep.n == 3 and len(rep.second_ms) == 3 and all(v > 0 for v in rep.second_ms)
    from orchestrator.latency.metrics import srcc

    assert len(rep.first_ms) == 3 and rep.srcc == pytest.approx(srcc(rep.first_ms, rep.second_ms))
    # (that the second pass ranks the heavy cell first: the slow ranking test)
    with pytest.raises(DeviceError, match="at least 3"):
        reliability_check(dev, CELLS[:1], rng)


def test_reliability_check_warns_on_noise(small_space, rng, caplog):
    class Noisy:
        name = "noisy"

        def __init__(self):
            self.g = np.random.default_rng(0)

        def latency_ms(self, ids):
            return np.array([summarize("a", [self.g.uniform(1, 2)] * 3).median_ms for _ in ids])

    ids = [small_space.arch_id(small_space.sample(rng)) for _ in range(30)]
    rep = reliability_check(Noisy(), ids, rng)
    assert not rep.reliable and "mostly noise" in caplog.text


def test_bad_device_options(small_space):
    with pytest.raises(DeviceError, match="option 'threads': Input should be greater than or equal to 1"):
        get_device("torch-cpu", small_space, threads=0)
    with pytest.raises(DeviceError, match=r"option 'runtime': unknown option \(valid options: .*inner"):
        get_device("remote:box", small_space, runtime="onnxrt-cpu")
    with pytest.raises(DeviceError, match="cannot pin"):
        get_device("torch-cpu", small_space, cores=[10_000], protocol=FAST).measure(small_space.parse(CELLS[1]))
    from search_spaces.mobilenet import MobileNetV3Space

    with pytest.raises(UnknownNameError, match="unknown device 'pixel3'"):  # the shipped table is NB201's
        get_device("pixel3", MobileNetV3Space())


def test_tabulated_device_lookup(space, shipped):
    from orchestrator.latency.devices.catalog import DeviceCatalog

    dev = DeviceCatalog(space, shipped).make("edgetpu", {})
    archs, y = dev.measured()
    assert len(archs) == 1740 == len(dev.domain()) and dev.latency_ms(archs[:1])[0] == pytest.approx(y[0])
    missing = [a for a in shipped.archs if a not in set(archs)][0]
    assert np.isnan(dev.latency_ms([missing])[0]) and np.isnan(dev.truth([missing])[0])
    assert dev.deterministic and dev.kind == "tabulated"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_gpu_is_a_clear_error(small_space):
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        get_device("cuda", small_space).measure(small_space.parse(CELLS[0]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_measurement_is_reliable(space, rng):
    dev = get_device("cuda", space, protocol=MeasurementProtocol(warmup=3, repeats=10))
    ids = [space.arch_id(space.sample(rng)) for _ in range(12)]
    rep = reliability_check(dev, ids, rng)
    assert rep.srcc >= 0.8, rep


def test_the_network_of_an_architecture_is_the_same_in_every_build(small_space):
    """A measured device's network for one architecture has the same weights in every build (so an artefact's
    output check repeats its verdict), different architectures differ, and the caller's RNG is left alone."""
    dev = get_device("torch-cpu", small_space, threads=1, protocol=FAST)
    a, b = small_space.parse(CELLS[0]), small_space.parse(CELLS[2])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, again, other = dev.network(a), dev.network(a), dev.network(b)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sg = first.state_dict(), again.state_dict()
    assert sa.keys() == sg.keys() and all(torch.equal(sa[k], sg[k]) for k in sa)
    stem_a = next(v for k, v in sa.items() if k.endswith("weight"))
    stem_b = next(v for k, v in other.state_dict().items() if k.endswith("weight"))
    assert stem_a.shape == stem_b.shape and not torch.equal(stem_a, stem_b)
