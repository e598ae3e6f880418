"""Deployment runtimes as measured devices: ONNX Runtime int8 (static quantization) and torch.compile (inductor).

Both time the network their space builds for an architecture, as configured, and check before timing that
the artefact timed is that network: its output on real validation images is compared with the PyTorch
network's (fp32: ``torch-compile`` within ``rtol`` / ``atol``; int8: the relative L2 error of the outputs
``||y_int8 - y_fp32|| / ||y_fp32||`` within ``tolerance``, default 0.25) and the sample carries the PyTorch
network's parameter count. A mismatch is a :class:`DeviceError` naming the architecture and the error found.

- ``onnxrt-int8``: the network exported to ONNX (opset 17), quantized with
  ``onnxruntime.quantization.quantize_static`` (QDQ, int8 weights per channel, int8 activations) calibrated
  on ``calibration_images`` real images of ``data`` (default: scikit-learn's handwritten digits, shipped
  with scikit-learn, resized to the space's resolution; ``cifar10`` with a ``root`` for CIFAR), timed with
  ONNX Runtime's CPU execution provider.
- ``torch-compile``: ``torch.compile(network, backend="inductor", mode=...)`` on the CPU, compiled and
  warmed before timing; inductor's CPU code generation needs a C++ compiler (``g++``, or ``$CXX``): its
  absence is an error naming the fix before any compilation. Dynamo's caches are reset per architecture, so
  no network silently falls back to eager after the recompilation limit.

Each device keeps ``prepare_seconds`` (architecture id -> seconds of export, quantization or compilation and
the output check, before warm-up and timing) for benchmarks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.measured import (
    MeasuredDevice,
    MeasuredOptions,
    export_onnx,
    input_names,
    register_measured,
)
from orchestrator.latency.measurement import LatencySample, time_callable
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)


class ImageData(BaseModel):
    """Where the real images come from (orchestrator.supernet.data; the resolution is the space's)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["digits", "cifar10", "cifar100"] = Field("digits", description="digits: scikit-learn's "
                                                           "handwritten digits (offline); cifar*: needs root")
    root: str | None = Field(None, description="directory holding the CIFAR python-pickle files")
    seed: int = 0


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    """``||y - ref|| / ||ref||`` over all elements (``ref`` all zero: the absolute error)."""
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(np.asarray(y, dtype=np.float64) - ref))
    return num / den if den > 0 else num


def ort_session(onnx_model: bytes | str, threads: int) -> Any:
    """An ONNX Runtime CPU session, sequential, ``threads`` intra-op threads, all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])


class RuntimeDevice(MeasuredDevice):
    """A measured device that prepares an artefact per architecture (export, quantize, compile) and checks it."""

    def __init__(self, name: str, space: SearchSpace, options: MeasuredOptions) -> None:
        if getattr(space, "elastic_resolution", False):  # its check images have one resolution
            raise DeviceError(f"device {name}: checks its artefact on real images at one input resolution; the "
                              f"space searches the resolution (resolutions), which {name} does not support yet: "
                              f"time it with torch-cpu, onnxrt-cpu, cuda or command:<name>")
        super().__init__(name, space, options)
        self.prepare_seconds: dict[str, float] = {}
        self._images: tuple[np.ndarray, np.ndarray] | None = None

    def images(self) -> tuple[np.ndarray, np.ndarray]:
        """(calibration, check) images, float32 (N, C, H, W) at the space's resolution, from ``data``."""
        if self._images is None:
            from orchestrator.supernet.data import DataConfig, load_dataset

            shape = self.space.input_shape(1)
            cfg = DataConfig(**self.options.data.model_dump(), resolution=int(shape[-1]))  # type: ignore[attr-defined]
            data = load_dataset(cfg)
            n_cal = getattr(self.options, "calibration_images", 0)
            n_chk = self.options.check_images  # type: ignore[attr-defined]
            if len(data.x_train) < n_cal or len(data.x_val) < n_chk:
                raise DeviceError(f"{self.name}: dataset {cfg.name!r} has {len(data.x_train)} training and "
                                  f"{len(data.x_val)} validation images; calibration_images={n_cal} and "
                                  f"check_images={n_chk} need fewer")
            if tuple(data.x_train.shape[1:]) != tuple(shape[1:]):
                raise DeviceError(f"{self.name}: images of {cfg.name!r} are {tuple(data.x_train.shape[1:])}, the "
                                  f"network takes {tuple(shape[1:])}")
            self._images = (data.x_train[:n_cal].numpy(), data.x_val[:n_chk].numpy())
        return self._images

    def batches(self, x: np.ndarray) -> list[np.ndarray]:
        """``x`` in batches of ``batch_size`` (the exported network's fixed batch); a short last batch is
        filled up with the first images."""
        b = self.options.batch_size
        n = -(-len(x) // b) * b
        x = np.concatenate([x, x[: n - len(x)]]) if n > len(x) else x
        return [x[i:i + b] for i in range(0, n, b)]

    def _measure(self, arch_id: str, model: Any) -> LatencySample:
        t0 = time.perf_counter()
        run = self.prepare(arch_id, model)
        self.prepare_seconds[arch_id] = time.perf_counter() - t0
        shape = self.space.input_shape(self.options.batch_size)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        return time_callable(arch_id, lambda: run(x), self.options.protocol)

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        """The artefact for ``model``, checked against it, as a callable on a float32 batch."""
        raise NotImplementedError


# -- ONNX Runtime int8 ------------------------------------------------------------------------------------------


class OnnxInt8Options(MeasuredOptions):
    data: ImageData = Field(default_factory=ImageData, description="the real images that calibrate and check "
                                                                     "(resolution: the space's)")
    calibration_images: int = Field(32, ge=1, description="images that calibrate the activation ranges")
    check_images: int = Field(16, ge=1, description="validation images on which int8 is compared with fp32")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = Field("minmax")
    per_channel: bool = Field(True, description="int8 weights per output channel")
    tolerance: float = Field(0.25, gt=0, description="the largest relative L2 error of the int8 network's output "
                                                     "against the PyTorch fp32 network's")


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    """onnxruntime.quantization logs its notes on the root logger: at ERROR only while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


class _Reader:
    """Calibration batches for onnxruntime.quantization (a CalibrationDataReader)."""

    def __init__(self, batches: list[np.ndarray], names: list[str]) -> None:
        self._it, self._names = iter(batches), names

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else dict.fromkeys(self._names, b)

    def rewind(self) -> None:  # noqa: D102 - onnxruntime may call it
        pass


def quantize_onnx_static(fp32: bytes, batches: list[np.ndarray], per_channel: bool = True,
                         calibrate_method: str = "minmax") -> bytes:
    """The int8 ONNX model of the fp32 ONNX model ``fp32``: ``onnxruntime.quantization.quantize_static`` (QDQ,
    int8 weights, per output channel where ``per_channel``, symmetric; int8 activations, asymmetric), its
    activation ranges calibrated (``minmax``, ``entropy`` or ``percentile``) on ``batches`` (float32 arrays of
    the model's fixed input shape: real images). A graph with no input (an NB201 cell whose every path is cut:
    its output is a constant) has nothing to calibrate: ``fp32`` itself is returned."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method]
    names = input_names(ort_session(fp32, 1))
    if not names:
        return fp32
    with tempfile.TemporaryDirectory(prefix="hwnas-int8-") as tmp, warnings.catch_warnings(), _quiet_root():
        warnings.simplefilter("ignore")
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # folds constants, infers shapes
        quantize_static(str(pre), str(dst), _Reader(batches, names), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return dst.read_bytes()


class OnnxRuntimeInt8Device(RuntimeDevice):
    runtime = "onnxrt-int8"
    options: OnnxInt8Options

    def quantize(self, model: Any) -> bytes:
        """The int8 ONNX model of ``model`` (static QDQ quantization calibrated on real images)."""
        import torch

        cal, _ = self.images()
        fp32 = export_onnx(model, torch.randn(*self.space.input_shape(self.options.batch_size)))
        q = quantize_onnx_static(fp32, self.batches(cal), per_channel=self.options.per_channel,
                                 calibrate_method=self.options.calibrate_method)
        if q is fp32:
            log.info("%s: the network ignores its input (every path cut); timed as exported", self.name)
        return q

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        sess = ort_session(self.quantize(model), self.options.threads)
        _, chk = self.images()
        err = self.check(sess, model, chk)
        if err > self.options.tolerance:
            raise DeviceError(f"{self.name}: the int8 network of {arch_id} is {err:.3f} off the PyTorch network "
                              f"(relative L2 error of the outputs on {len(chk)} validation images; tolerance "
                              f"{self.options.tolerance}): raise option tolerance, or calibrate on more images "
                              "(calibration_images) or another calibrate_method")
        names = input_names(sess)
        return lambda x: sess.run(None, dict.fromkeys(names, x))

    def check(self, sess: Any, model: Any, images: np.ndarray) -> float:
        """Relative L2 error of the int8 session's outputs against ``model``'s on ``images``."""
        import torch

        ys, refs = [], []
        with torch.inference_mode():
            names = input_names(sess)
            for b in self.batches(images):
                ys.append(sess.run(None, dict.fromkeys(names, b))[0])
                refs.append(model(torch.from_numpy(b)).numpy())
        return relative_error(np.concatenate(ys), np.concatenate(refs).astype(np.float64))


# -- torch.compile -----------------------------------------------------------------------------------------------


class CompileOptions(MeasuredOptions):
    mode: Literal["default", "max-autotune-no-cudagraphs"] = Field("default", description="torch.compile mode")
    data: ImageData = Field(default_factory=ImageData, description="the real images the output is checked on")
    check_images: int = Field(4, ge=1, description="validation images on which the compiled network's output "
                                                   "is compared with eager PyTorch")
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-4, gt=0)


def cxx_compiler() -> str | None:
    """The C++ compiler inductor's CPU back end would call (``$CXX``, else g++, c++, clang++), or None."""
    for c in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


class TorchCompileDevice(RuntimeDevice):
    runtime = "torch-compile"
    options: CompileOptions

    def _setup(self) -> None:
        import torch

        if cxx_compiler() is None:
            raise DeviceError(f"{self.name}: torch.compile's inductor back end needs a C++ compiler on the CPU "
                              "and none was found (CXX, g++, c++, clang++): install one (apt-get install g++) or "
                              "use device torch-cpu")
        super()._setup()
        torch.set_num_threads(self.options.threads)

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        import torch
        import torch._dynamo

        torch._dynamo.reset()  # a fresh compile per network: no silent fallback after the recompile limit
        compiled = torch.compile(model, backend="inductor", mode=self.options.mode)
        from orchestrator.latency.devices.measured import n_params

        if n_params(compiled) != n_params(model):
            raise DeviceError(f"{self.name}: the compiled network of {arch_id} has {n_params(compiled)} "
                              f"parameters, the network {n_params(model)}")
        _, chk = self.images()
        with torch.inference_mode():
            for b in self.batches(chk):
                xb = torch.from_numpy(b)
                got, ref = compiled(xb), model(xb)
                if not torch.allclose(got, ref, rtol=self.options.rtol, atol=self.options.atol):
                    d = float((got - ref).abs().max())
                    raise DeviceError(f"{self.name}: the compiled network of {arch_id} differs from eager "
                                      f"PyTorch by up to {d:.3g} (rtol {self.options.rtol}, atol "
                                      f"{self.options.atol})")

        def run(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return compiled(torch.from_numpy(x))

        return run


RUNTIMES: dict[str, tuple[type[MeasuredDevice], type[MeasuredOptions], str]] = {
    "onnxrt-int8": (OnnxRuntimeInt8Device, OnnxInt8Options,
                    "ONNX Runtime int8 on the CPU (static QDQ quantization calibrated on real images)"),
    "torch-compile": (TorchCompileDevice, CompileOptions, "torch.compile (inductor) on the CPU; needs a C++ compiler"),
}


register_measured(RUNTIMES)
