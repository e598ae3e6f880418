"""Deployment runtimes as measured devices: ONNX Runtime int8 (static quantization) and torch.compile (inductor).

Both time the network their space builds for an architecture, as configured, and check before timing that
the artefact timed is that network: its output on real validation images is compared with the PyTorch
network's (fp32: ``torch-compile`` within ``rtol`` / ``atol``; int8: the relative L2 error of the outputs
``||y_int8 - y_fp32|| / ||y_fp32||`` within ``tolerance``, default 0.1) and the sample carries the PyTorch
network's parameter count. A mismatch is an :class:`~orchestrator.errors.ArchitectureRefused` (a DeviceError)
naming the architecture and the error found: the device works, this one architecture is refused (a sweep skips it).
Each architecture is exported, checked and timed at its own input resolution (a space that searches the
resolution, e.g. ``mobilenetv3`` with ``resolutions``, gives each subnet its own; the real images are resized to
it), and a re-measurement reuses the artefact already checked (``artefact_cache``).

- ``onnxrt-int8``: the network exported to ONNX (opset 17), quantized with
  ``onnxruntime.quantization.quantize_static`` (QDQ, int8 weights per channel, int8 activations) calibrated
  on ``calibration_images`` real images of ``data`` (default: scikit-learn's handwritten digits, shipped
  with scikit-learn, resized to the architecture's resolution; ``cifar10`` with a ``root`` for CIFAR), timed with
  ONNX Runtime's CPU execution provider. On an x86-64 CPU without VNNI (AVX2 or AVX-512 only) the weights are
  quantized to 7 bits (``reduce_range``, "auto"): ONNX Runtime's int8 kernels there multiply u8 by s8 with
  ``VPMADDUBSW``, whose 16-bit pair sums saturate with full 8-bit weights; see :func:`int8_saturates`.
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
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from orchestrator.errors import ArchitectureRefused, DeviceError
from orchestrator.latency.devices.measured import (
    MeasuredDevice,
    MeasuredOptions,
    export_onnx,
    input_names,
    register_measured,
)
from orchestrator.latency.measurement import LatencySample, time_callable
from orchestrator.schema import Schema, Seed
from search_spaces.base import SearchSpace, arch_input_shape

log = logging.getLogger(__name__)


class ImageData(Schema):
    """Where the real images come from (orchestrator.supernet.data; resized to each architecture's resolution)."""

    name: Literal["digits", "cifar10", "cifar100"] = Field("digits", description="digits: scikit-learn's "
                                                           "handwritten digits (offline); cifar*: needs root")
    root: str | None = Field(None, description="directory holding the CIFAR python-pickle files")
    seed: Seed = 0


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


class RuntimeOptions(MeasuredOptions):
    artefact_cache: int = Field(16, ge=0, description="prepared (exported, checked) artefacts kept, least recently "
                                                      "used out: measuring an architecture again reuses its "
                                                      "artefact; 0: prepare it anew each time")


class RuntimeDevice(MeasuredDevice):
    """A measured device that prepares an artefact per architecture (export, quantize, compile) and checks it.

    Each architecture is exported, checked and timed at its own input resolution (``arch_input_shape``; a space
    that searches the resolution gives each its own): the real images that calibrate and check are the
    dataset's, loaded once at the space's resolution and resized (bilinear, as the supernet's training does)
    per resolution, cached per resolution. ``input_shapes`` (architecture id -> shape) holds the input shape as
    read back from each prepared artefact (the exported graph's, the lowered program's, the compiled model's).
    The last ``artefact_cache`` prepared artefacts are kept: measuring an architecture again times the artefact
    already checked, as a deployment would run it, without exporting it again."""

    reuses_artefacts: ClassVar[bool] = True

    def __init__(self, name: str, space: SearchSpace, options: MeasuredOptions) -> None:
        super().__init__(name, space, options)
        self.prepare_seconds: dict[str, float] = {}
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self.reused = 0  # measurements that reused a prepared artefact
        self._source: tuple[Any, Any] | None = None  # (calibration, check) images at the space's resolution
        self._images: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._artefacts: OrderedDict[str, Callable[[np.ndarray], Any]] = OrderedDict()

    def input_shape(self, arch_id: str | None = None) -> tuple[int, ...]:
        """``(batch_size, channels, r, r)``: the input of ``arch_id``'s network at its own resolution ``r``
        (``arch_input_shape``); None: the space's input shape."""
        if arch_id is None:
            return tuple(self.space.input_shape(self.options.batch_size))
        return arch_input_shape(self.space, arch_id, self.options.batch_size)

    def images(self, arch_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(calibration, check) images, float32 ``(N, C, r, r)`` at ``arch_id``'s resolution (None: the space's),
        from ``data``: loaded once at the space's resolution, resized per resolution and cached."""
        shape = self.input_shape(arch_id)
        if shape[1:] not in self._images:
            from orchestrator.supernet.data import at_resolution

            cal, chk = self._load()
            cal, chk = (at_resolution(x, int(shape[-1])) for x in (cal, chk))
            if tuple(cal.shape[1:]) != tuple(shape[1:]):
                raise DeviceError(f"{self.name}: images of {self.options.data.name!r} are "  # type: ignore[attr-defined]
                                  f"{tuple(cal.shape[1:])}, the network takes {tuple(shape[1:])}")
            self._images[shape[1:]] = (cal.numpy(), chk.numpy())
        return self._images[shape[1:]]

    def _load(self) -> tuple[Any, Any]:
        if self._source is None:
            from orchestrator.supernet.data import DataConfig, load_dataset

            res = int(self.space.input_shape(1)[-1])
            cfg = DataConfig(**self.options.data.model_dump(), resolution=res)  # type: ignore[attr-defined]
            data = load_dataset(cfg)
            n_cal = getattr(self.options, "calibration_images", 0)
            n_chk = self.options.check_images  # type: ignore[attr-defined]
            if len(data.x_train) < n_cal or len(data.x_val) < n_chk:
                raise DeviceError(f"{self.name}: dataset {cfg.name!r} has {len(data.x_train)} training and "
                                  f"{len(data.x_val)} validation images; calibration_images={n_cal} and "
                                  f"check_images={n_chk} need fewer")
            self._source = (data.x_train[:n_cal], data.x_val[:n_chk])
        return self._source

    def batches(self, x: np.ndarray) -> list[np.ndarray]:
        """``x`` in batches of ``batch_size`` (the exported network's fixed batch); a short last batch is
        filled up with the first images."""
        b = self.options.batch_size
        n = -(-len(x) // b) * b
        x = np.concatenate([x, x[: n - len(x)]]) if n > len(x) else x
        return [x[i:i + b] for i in range(0, n, b)]

    def outputs(self, run: Callable[[np.ndarray], Any], model: Any, images: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """(the artefact's outputs, the PyTorch network's as float64) on ``images``, fed in ``batches``: ``run``
        maps one batch to the artefact's output array, ``model`` is the network it was built from."""
        import torch

        ys, refs = [], []
        with torch.inference_mode():
            for b in self.batches(images):
                ys.append(np.asarray(run(b)))
                refs.append(model(torch.from_numpy(b)).numpy())
        return np.concatenate(ys), np.concatenate(refs).astype(np.float64)

    def _measure(self, arch_id: str, model: Any) -> LatencySample:
        run = self._artefacts.pop(arch_id, None)
        if run is None:
            t0 = time.perf_counter()
            run = self.prepare(arch_id, model)
            self.prepare_seconds[arch_id] = time.perf_counter() - t0
        else:
            self.reused += 1
        keep = getattr(self.options, "artefact_cache", 0) if self.reuses_artefacts else 0
        if keep:
            self._artefacts[arch_id] = run
            while len(self._artefacts) > keep:
                self._artefacts.popitem(last=False)
        x = np.random.default_rng(0).standard_normal(self.input_shape(arch_id)).astype(np.float32)
        return time_callable(arch_id, lambda: run(x), self.options.protocol)

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        """The artefact for ``model``, checked against it, as a callable on a float32 batch of
        ``input_shape(arch_id)``; records ``input_shapes[arch_id]``."""
        raise NotImplementedError


# -- ONNX Runtime int8 ------------------------------------------------------------------------------------------


REDUCE_RANGE_DOC = ("7-bit int8 weights: 'auto' = where the measuring host's CPU saturates 8-bit ones "
                    "(x86-64 without VNNI: int8_saturates())")


def int8_saturates(capabilities: dict[str, Any] | None = None) -> bool:
    """Whether ONNX Runtime's int8 convolutions and matrix products saturate with full 8-bit weights on this CPU
    (``capabilities``: ``torch.cpu.get_capabilities()`` where None).

    On x86-64 without VNNI (AVX2, AVX-512F/BW only) ONNX Runtime's MLAS kernels multiply u8 activations by s8
    weights with ``VPMADDUBSW``, which adds two 8x8-bit products into a saturating int16: large weights times large
    activations overflow, and the int8 network's output is wrong (on this project's AMD EPYC AVX2 host: relative
    L2 error 0.12 for a two-convolution network and up to 1.2 for NB201 cells, against 0.01 with 7-bit weights).
    ONNX Runtime's documented workaround is ``reduce_range`` (7-bit weights). CPUs with AVX-VNNI, AVX512-VNNI or
    AMX-INT8 accumulate in int32 (no saturation); so do Arm CPUs (SDOT/UDOT): False there."""
    if capabilities is None:
        import torch

        capabilities = dict(torch.cpu.get_capabilities())
    if capabilities.get("architecture") not in ("x86_64", "AMD64"):
        return False
    return not any(capabilities.get(k, False) for k in ("avx_vnni", "avx512_vnni", "amx_int8"))


def resolve_reduce_range(reduce_range: Literal["auto"] | bool) -> bool:
    """``reduce_range`` with "auto" resolved on this host (:func:`int8_saturates`)."""
    return int8_saturates() if reduce_range == "auto" else bool(reduce_range)


class OnnxInt8Options(RuntimeOptions):
    data: ImageData = Field(default_factory=ImageData, description="the real images that calibrate and check "
                                                                     "(resolution: the space's)")
    calibration_images: int = Field(32, ge=1, description="images that calibrate the activation ranges")
    check_images: int = Field(16, ge=1, description="validation images on which int8 is compared with fp32")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = Field("minmax")
    per_channel: bool = Field(True, description="int8 weights per output channel")
    tolerance: float = Field(0.1, gt=0, description="the largest relative L2 error of the int8 network's output "
                                                    "against the PyTorch fp32 network's (int8 rounding: at most "
                                                    "0.027 over 100 NB201 cells; saturated kernels: up to 1.2, "
                                                    "docs/benchmarks.md)")
    reduce_range: Literal["auto"] | bool = Field("auto", description=REDUCE_RANGE_DOC)


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
                         calibrate_method: str = "minmax", reduce_range: Literal["auto"] | bool = "auto") -> bytes:
    """The int8 ONNX model of the fp32 ONNX model ``fp32``: ``onnxruntime.quantization.quantize_static`` (QDQ,
    int8 weights, per output channel where ``per_channel``, symmetric, 7-bit where ``reduce_range`` ("auto": on
    a host whose CPU saturates 8-bit ones, :func:`int8_saturates`); int8 activations, asymmetric), its
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
                        per_channel=per_channel, reduce_range=resolve_reduce_range(reduce_range),
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return dst.read_bytes()


class OnnxRuntimeInt8Device(RuntimeDevice):
    runtime = "onnxrt-int8"
    options: OnnxInt8Options

    def quantize(self, model: Any, arch_id: str | None = None) -> bytes:
        """The int8 ONNX model of ``model``, the network of ``arch_id`` (None: at the space's resolution),
        exported at its input shape and quantized statically, calibrated on real images at its resolution."""
        import torch

        cal, _ = self.images(arch_id)
        fp32 = export_onnx(model, torch.randn(*self.input_shape(arch_id)))
        q = quantize_onnx_static(fp32, self.batches(cal), per_channel=self.options.per_channel,
                                 calibrate_method=self.options.calibrate_method,
                                 reduce_range=self.options.reduce_range)
        if q is fp32:
            log.info("%s: the network ignores its input (every path cut); timed as exported", self.name)
        return q

    def prepare(self, arch_id: str, model: Any) -> Callable[[np.ndarray], Any]:
        sess = ort_session(self.quantize(model, arch_id), self.options.threads)
        if sess.get_inputs():
            self.input_shapes[arch_id] = tuple(sess.get_inputs()[0].shape)
        _, chk = self.images(arch_id)
        err = self.check(sess, model, chk)
        if err > self.options.tolerance:
            raise ArchitectureRefused(
                f"{self.name}: the int8 network of {arch_id} is {err:.3f} off the PyTorch network (relative L2 "
                f"error of the outputs on {len(chk)} validation images; tolerance {self.options.tolerance}): raise "
                "option tolerance, or calibrate on more images (calibration_images) or another calibrate_method",
                arch_id)
        names = input_names(sess)
        return lambda x: sess.run(None, dict.fromkeys(names, x))

    def check(self, sess: Any, model: Any, images: np.ndarray) -> float:
        """Relative L2 error of the int8 session's outputs against ``model``'s on ``images``."""
        names = input_names(sess)
        return relative_error(*self.outputs(lambda b: sess.run(None, dict.fromkeys(names, b))[0], model, images))


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
    # dynamo's caches are reset before each compilation (above), which drops every earlier compiled graph's
    # entry: a kept artefact would recompile when called. A re-measurement compiles again and loads inductor's
    # FX graph cache (on disk, on by default: about 1 s instead of 10 s on this VM; docs/benchmarks.md).
    reuses_artefacts = False

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
        # static shapes: the graph is specialised to this architecture's input, as a deployment compiles it
        compiled = torch.compile(model, backend="inductor", mode=self.options.mode, dynamic=False)
        from orchestrator.latency.devices.measured import n_params

        if n_params(compiled) != n_params(model):
            raise ArchitectureRefused(f"{self.name}: the compiled network of {arch_id} has {n_params(compiled)} "
                                      f"parameters, the network {n_params(model)}", arch_id)
        _, chk = self.images(arch_id)
        with torch.inference_mode():
            for b in self.batches(chk):
                xb = torch.from_numpy(b)
                self.input_shapes.setdefault(arch_id, tuple(xb.shape))  # the shape the graph was compiled for
                got, ref = compiled(xb), model(xb)
                if not torch.allclose(got, ref, rtol=self.options.rtol, atol=self.options.atol):
                    d = float((got - ref).abs().max())
                    raise ArchitectureRefused(f"{self.name}: the compiled network of {arch_id} differs from "
                                              f"eager PyTorch by up to {d:.3g} (rtol {self.options.rtol}, atol "
                                              f"{self.options.atol})", arch_id)

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
