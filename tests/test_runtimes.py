"""Deployment runtimes as measured devices, measured for real on this CPU: ONNX Runtime int8 and torch.compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator.errors import DeviceError
from orchestrator.latency.devices import DeviceCatalog, get_device
from orchestrator.latency.devices.runtimes import cxx_compiler, ort_session, relative_error
from orchestrator.latency.measurement import MeasurementProtocol

FAST = MeasurementProtocol(warmup=1, repeats=3, min_repeat_ms=1.0)
HEAVY = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
LIGHT = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
CUT = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # every path cut: the exported graph has no input


def n_params(space, arch_id):
    return sum(p.numel() for p in space.build(space.parse(arch_id)).parameters())


def test_relative_error():
    assert relative_error(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0
    assert relative_error(np.array([3.0, 4.0]), np.array([0.0, 0.0])) == 5.0
    assert relative_error(np.array([1.1, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0.1)


def test_onnxrt_int8_times_the_quantized_network_within_tolerance(small_space):
    dev = get_device("onnxrt-int8", small_space, protocol=FAST, calibration_images=8, check_images=8)
    samples = dev.measure_many([small_space.parse(a) for a in (HEAVY, LIGHT)])
    assert samples[0].median_ms > samples[1].median_ms > 0
    assert [s.n_params for s in samples] == [n_params(small_space, a) for a in (HEAVY, LIGHT)]
    assert set(dev.prepare_seconds) == {HEAVY, LIGHT}
    # the artefact is int8 (QDQ: QuantizeLinear/DequantizeLinear around int8 weights) and near the fp32 network
    import onnx

    net = small_space.build(small_space.parse(HEAVY)).eval()
    q = onnx.load_from_string(dev.quantize(net))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in q.graph.initializer)
    _, chk = dev.images()
    assert chk.shape == (8, 3, 32, 32)
    err = dev.check(ort_session(dev.quantize(net), 1), net, chk)
    assert 0 < err <= dev.options.tolerance  # quantized (not bit-exact), within the documented 0.25


def test_onnxrt_int8_measures_a_cell_that_ignores_its_input(small_space):
    """An NB201 cell whose every edge is 'none' ignores its input, and the exported ONNX graph has none: nothing to
    calibrate (its output is a constant), so it is timed as exported; the check and the timing feed what the
    graph takes (it failed a sweep with ORT's 'Invalid input name: x')."""
    import onnx

    dev = get_device("onnxrt-int8", small_space, protocol=FAST, calibration_images=4, check_images=4)
    net = small_space.build(small_space.parse(CUT)).eval()
    assert len(onnx.load_from_string(dev.quantize(net)).graph.input) == 0
    (sample,) = dev.measure_many([small_space.parse(CUT)])
    assert sample.median_ms > 0 and sample.n_params == n_params(small_space, CUT)


def test_onnxrt_int8_refuses_a_network_beyond_tolerance(small_space):
    dev = get_device("onnxrt-int8", small_space, protocol=FAST, calibration_images=2, check_images=4,
                     tolerance=1e-9)
    with pytest.raises(DeviceError, match=r"int8 network of .* off the PyTorch network .*raise option tolerance"):
        dev.measure(small_space.parse(HEAVY))


def test_runtime_options_are_validated(small_space):
    cat = DeviceCatalog(small_space)
    assert "onnxrt-int8" in cat.names() and "torch-compile" in cat.names()
    probs = cat.problems("onnxrt-int8", {"calibrate": "minmax", "calibrate_method": "kl"})
    assert any("unknown option (valid options: threads" in p and "calibrate_method" in p for p in probs)
    assert any("'minmax', 'entropy' or 'percentile'" in p for p in probs)
    assert any("Input should be 'digits'" in p for p in cat.problems("onnxrt-int8", {"data": {"name": "mnist"}}))
    assert any("'default' or 'max-autotune-no-cudagraphs'" in p
               for p in cat.problems("torch-compile", {"mode": "reduce-overhead"}))
    assert cat.problems("torch-compile", {"threads": 2, "mode": "default"}) == []


@pytest.mark.slow
@pytest.mark.skipif(cxx_compiler() is None, reason="inductor needs a C++ compiler")
def test_torch_compile_times_the_compiled_network(small_space):
    dev = get_device("torch-compile", small_space, protocol=FAST, check_images=2)
    samples = dev.measure_many([small_space.parse(a) for a in (HEAVY, LIGHT)])
    assert samples[0].median_ms > samples[1].median_ms > 0
    assert [s.n_params for s in samples] == [n_params(small_space, a) for a in (HEAVY, LIGHT)]
    assert set(dev.prepare_seconds) == {HEAVY, LIGHT}


def test_torch_compile_without_a_compiler_is_a_clear_error(small_space, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(DeviceError, match=r"needs a C\+\+ compiler .*apt-get install g\+\+"):
        get_device("torch-compile", small_space, protocol=FAST).measure(small_space.parse(LIGHT))
    assert torch.get_num_threads() >= 1


def test_missing_extra_names_the_install_command(small_space, monkeypatch):
    from orchestrator.latency.devices import extras

    monkeypatch.setitem(extras.REQUIRES, "openvino-cpu", ("hwnas_no_such_runtime_module",))
    with pytest.raises(DeviceError, match=r"missing: hwnas_no_such_runtime_module.*pip install -e \.\[runtimes\]"):
        get_device("openvino-cpu", small_space)
    probs = DeviceCatalog(small_space).problems("openvino-cpu", {})
    assert probs and "pip install -e .[runtimes]" in probs[0]  # hwnas validate says it before any work


@pytest.mark.slow
def test_openvino_times_the_exported_network(small_space):
    pytest.importorskip("openvino")
    dev = get_device("openvino-cpu", small_space, protocol=FAST, check_images=2)
    samples = dev.measure_many([small_space.parse(a) for a in (HEAVY, LIGHT)])
    assert samples[0].median_ms > samples[1].median_ms > 0
    assert [s.n_params for s in samples] == [n_params(small_space, a) for a in (HEAVY, LIGHT)]


@pytest.mark.parametrize("device, module", [("openvino-cpu", "openvino"), ("executorch-xnnpack", "executorch")])
def test_extra_runtimes_measure_a_cell_that_ignores_its_input(small_space, device, module):
    """A cell whose every path is cut exports to a graph with no input: OpenVINO and ExecuTorch time it as they
    time any other (OpenVINO's infer({0: x}) failed a sweep's front measurement on such a cell)."""
    pytest.importorskip(module)
    opts = {"calibration_images": 2} if device.startswith("executorch") else {}
    dev = get_device(device, small_space, protocol=FAST, check_images=2, **opts)
    (sample,) = dev.measure_many([small_space.parse(CUT)])
    assert sample.median_ms > 0 and sample.n_params == n_params(small_space, CUT)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_executorch_xnnpack_times_the_lowered_program(small_space, precision):
    pytest.importorskip("executorch")
    dev = get_device("executorch-xnnpack", small_space, protocol=FAST, precision=precision, calibration_images=4,
                     check_images=2)
    samples = dev.measure_many([small_space.parse(a) for a in (HEAVY, LIGHT)])
    assert samples[0].median_ms > samples[1].median_ms > 0
    assert [s.n_params for s in samples] == [n_params(small_space, a) for a in (HEAVY, LIGHT)]
    assert set(dev.prepare_seconds) == {HEAVY, LIGHT}


def test_a_runtime_failure_is_a_device_error_naming_the_architecture(small_space, monkeypatch):
    """Whatever a runtime raises while measuring (here onnxruntime's quantizer) reaches the sweep as a DeviceError
    naming the device and the architecture, so that target ends and the others go on."""
    from onnxruntime.quantization import shape_inference

    def broken(*a, **kw):
        raise ValueError("the quantizer broke")

    monkeypatch.setattr(shape_inference, "quant_pre_process", broken)
    dev = get_device("onnxrt-int8", small_space, protocol=FAST, calibration_images=2, check_images=2)
    with pytest.raises(DeviceError, match=r"device onnxrt-int8: measuring \|nor_conv_3x3~0\|.* failed: "
                                          r"ValueError: the quantizer broke"):
        dev.measure_many([small_space.parse(HEAVY)])
