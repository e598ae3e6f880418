"""Runtimes of the optional extra ``[runtimes]`` (``pip install -e .[runtimes]``): ExecuTorch with the XNNPACK
delegate and OpenVINO on the CPU.

- ``executorch-xnnpack``: ``torch.export`` of the network, lowered with ``to_edge_transform_and_lower`` and
  the ``XnnpackPartitioner``, serialised to a ``.pte`` program and timed with ExecuTorch's runtime
  (``executorch.runtime``); XNNPACK's thread pool is set to ``threads``. ``precision: int8`` quantizes first
  with PT2E post-training quantization (``XNNPACKQuantizer``, symmetric, per channel) calibrated on
  ``calibration_images`` real images, like ``onnxrt-int8``.
- ``openvino-cpu``: the network exported to ONNX, compiled by OpenVINO for ``CPU`` with the latency hint,
  one stream and ``threads`` inference threads.

As for every runtime device the artefact is checked against the PyTorch network before timing (fp32:
``rtol``/``atol``; int8: the relative L2 error within ``tolerance``) and the sample carries the network's
parameter count. Without the extra, building the device is an error naming ``pip install -e .[runtimes]``
(before any work: ``hwnas validate`` reports it).

ExecuTorch's wheel links against libtorch: the version pinned in pyproject (1.5.x) was checked against
torch 2.13 (docs/benchmarks.md, issue 22); another torch needs the ExecuTorch release built for it.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from orchestrator.errors import ArchitectureRefused, DeviceError
from orchestrator.latency.devices.measured import MeasuredDevice, MeasuredOptions, export_onnx, register_measured
from orchestrator.latency.devices.runtimes import ImageData, RuntimeDevice, RuntimeOptions, relative_error
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)

EXTRA = "pip install -e .[runtimes]"
REQUIRES: dict[str, tuple[str, ...]] = {"executorch-xnnpack": ("executorch", "torchao"),
                                        "openvino-cpu": ("openvino",)}


def require_extra(device: str) -> None:
    """Raise a DeviceError naming the extra when a module ``device`` needs is not installed."""
    missing = [m for m in REQUIRES[device] if importlib.util.find_spec(m) is None]
    if missing:
        raise DeviceError(f"device {device!r} needs the optional runtimes (missing: {', '.join(missing)}): "
                          f"install them with `{EXTRA}`")


class ExtraRuntimeDevice(RuntimeDevice):
    def __init__(self, name: str, space: SearchSpace, options: MeasuredOptions) -> None:
        require_extra(name)
        super().__init__(name, space, options)

    def check_outputs(self, arch_id: str, run: Callable[[np.ndarray], np.ndarray], model: Any, int8: bool) -> None:
        _, chk = self.images(arch_id)
        y, ref = self.outputs(run, model, chk)
        o = self.options
        if int8:
            err = relative_error(y, ref)
            if err > o.tolerance:  # type: ignore[attr-defined]
                raise ArchitectureRefused(f"{self.name}: the int8 network of {arch_id} is {err:.3f} off the "
                                          f"PyTorch network (relative L2 error on {len(chk)} validation images; "
                                          f"tolerance {o.tolerance}): raise option tolerance or calibrate on "  # type: ignore[attr-defined]
                                          "more images", arch_id)
        elif not np.allclose(y, ref, rtol=o.rtol, atol=o.atol):  # type: ignore[attr-defined]
            raise ArchitectureRefused(f"{self.name}: the exported network of {arch_id} differs from PyTorch by "
                                      f"up to {float(np.abs(y - ref).max()):.3g} (rtol {o.rtol}, atol "  # type: ignore[attr-defined]
                                      f"{o.atol})", arch_id)  # type: ignore[attr-defined]


def _private_pass_available(quantize_pt2e: Any, qat_utils: Any) -> bool:
    """Whether this torchao has the private pass ``convert_ptq`` replaces, and the helpers it calls."""
    return (hasattr(quantize_pt2e, "_fold_conv_bn_qat")
            and all(hasattr(qat_utils, n) for n in ("_is_bn_node", "_duplicate_dequantize_node",
                                                    "_remove_extra_dequantize")))


def convert_ptq(prepared: Any) -> Any:
    """``torchao``'s ``convert_pt2e`` of a model prepared for post-training quantization (``prepare_pt2e``),
    without its search for quantization-aware-training conv-BN patterns.

    ``convert_pt2e`` always runs ``_fold_conv_bn_qat`` when the graph holds a batch norm (NB201's last one
    follows a sum, not a convolution, so it stays after ``prepare_pt2e`` folds the others): that exports its 96
    QAT pattern graphs anew on every call (about 20 s on this VM, 40 s under load: the bulk of an int8
    architecture's cost). A model prepared by ``prepare_pt2e`` holds none of those patterns (they come from
    ``prepare_qat_pt2e``), so the pass only applies its graph clean-ups here, which this keeps: the converted
    graph is the same (tested against ``convert_pt2e``)."""
    from torchao.quantization.pt2e import qat_utils, quantize_pt2e

    if not _private_pass_available(quantize_pt2e, qat_utils):  # another torchao: its own convert, slower
        log.warning("convert_ptq: torchao %s lacks the private pass this skips; using convert_pt2e as is",
                    getattr(__import__("torchao"), "__version__", "?"))
        return quantize_pt2e.convert_pt2e(prepared)

    def fold_without_qat_patterns(m: Any) -> Any:
        if not any(qat_utils._is_bn_node(n) for n in m.graph.nodes):
            return m
        m.graph.eliminate_dead_code()
        m.recompile()
        qat_utils._duplicate_dequantize_node(m)
        m.recompile()
        qat_utils._remove_extra_dequantize(m)
        m.graph.eliminate_dead_code()
        m.recompile()
        return m

    real = quantize_pt2e._fold_conv_bn_qat
    quantize_pt2e._fold_conv_bn_qat = fold_without_qat_patterns
    try:
        return quantize_pt2e.convert_pt2e(prepared)
    finally:
        quantize_pt2e._fold_conv_bn_qat = real


class ExecuTorchOptions(RuntimeOptions):
    precision: Literal["fp32", "int8"] = Field("fp32", description="int8: PT2E post-training quantization")
    data: ImageData = Field(default_factory=ImageData, description="real images that calibrate and check")
    calibration_images: int = Field(32, ge=1, description="int8: images that calibrate the activation ranges")
    check_images: int = Field(8, ge=1, description="validation images on which the output is checked")
    tolerance: float = Field(0.1, gt=0, description="int8: the largest relative L2 error of the output (at most "
                                                    "0.022 over 30 NB201 cells, docs/benchmarks.md)")
    rtol: float = Field(1e-3, gt=0, description="fp32: output tolerance against PyTorch")
    atol: float = Field(1e-4, gt=0)


class ExecuTorchXnnpackDevice(ExtraRuntimeDevice):
    runtime = "executorch-xnnpack"
    options: ExecuTorchOptions

    def program(self, model: Any, arch_id: str | None = None) -> bytes:
        """The ``.pte`` program of ``model``, the network of ``arch_id`` (None: at the space's resolution),
        exported at its input shape and lowered to XNNPACK (int8: quantized first, calibrated at its
        resolution)."""
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        example = torch.randn(*self.input_shape(arch_id))
        ep = torch.export.export(model, (example,))
        if self.options.precision == "int8":
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(ep.module(), quantizer)
            cal, _ = self.images(arch_id)
            for b in self.batches(cal):
                prepared(torch.from_numpy(b))
            ep = torch.export.export(convert_ptq(prepared), (example,))
        return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        pte = self.program(model, arch_id)
        if portable_lib._threadpool_get_thread_count() != self.options.threads:
            portable_lib._unsafe_reset_threadpool(self.options.threads)
        program = Runtime.get().load_program(pte)
        method = program.load_method("forward")
        if method is None:
            raise ArchitectureRefused(f"{self.name}: the ExecuTorch program of {arch_id} has no forward method",
                                      arch_id)
        keep = (pte, program)  # the method runs on the program's buffer: both must outlive it
        meta = method.metadata
        if meta.num_inputs():
            self.input_shapes[arch_id] = tuple(meta.input_tensor_meta(0).sizes())

        def run(x: np.ndarray) -> np.ndarray:
            assert keep
            return method.execute([torch.from_numpy(x)])[0].numpy()

        self.check_outputs(arch_id, run, model, self.options.precision == "int8")
        return run


class OpenVinoOptions(RuntimeOptions):
    data: ImageData = Field(default_factory=ImageData, description="real images the output is checked on")
    check_images: int = Field(4, ge=1, description="validation images on which the output is checked")
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-4, gt=0)


class OpenVinoCPUDevice(ExtraRuntimeDevice):
    runtime = "openvino-cpu"
    options: OpenVinoOptions

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        import openvino as ov
        import torch

        onnx_bytes = export_onnx(model, torch.randn(*self.input_shape(arch_id)))
        core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="hwnas-ov-") as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(onnx_bytes)
            net = core.read_model(str(path))
        compiled = core.compile_model(net, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                                   "INFERENCE_NUM_THREADS": str(self.options.threads),
                                                   "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        has_input = len(compiled.inputs) > 0  # none where the network ignores it (every NB201 path cut)
        if has_input:
            self.input_shapes[arch_id] = tuple(compiled.inputs[0].get_shape())

        def run(x: np.ndarray) -> np.ndarray:
            return request.infer({0: x} if has_input else {})[0]

        self.check_outputs(arch_id, run, model, int8=False)
        return run


RUNTIMES: dict[str, tuple[type[MeasuredDevice], type[MeasuredOptions], str]] = {
    "executorch-xnnpack": (ExecuTorchXnnpackDevice, ExecuTorchOptions,
                           f"ExecuTorch with the XNNPACK delegate, fp32 or int8 (PT2E); needs `{EXTRA}`"),
    "openvino-cpu": (OpenVinoCPUDevice, OpenVinoOptions, f"OpenVINO on the CPU (exported ONNX); needs `{EXTRA}`"),
}


register_measured(RUNTIMES)
