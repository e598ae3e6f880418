"""Measured devices: PyTorch eager on CPU, ONNX Runtime on CPU, CUDA (graphs + events).

A measured device times the network its space builds, exactly as configured
(``space.build(arch)`` on ``arch_input_shape(space, arch, batch_size)``: at the architecture's own resolution
where the space searches it); each sample
records the network's parameter count, so a measurement made in another
process (a Ray actor, a remote node) shows which network it timed. With Ray
running, ``latency_ms`` measures in an actor of its own (``isolate``) that
holds ``threads`` CPUs only while it measures: timing next to busy evaluators
would measure their contention. The device owns that actor from its first
measurement until ``close()`` (its owner calls it after the device's last
measurement); between measurements the actor holds no CPU (a GPU device's actor
keeps its GPU), so the CPUs go to other work.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import Field

from orchestrator.errors import ArchitectureRefused, DeviceError, HwnasError
from orchestrator.latency.devices.protocol import DeviceType, SampledDevice
from orchestrator.latency.devices.registry import DEVICES
from orchestrator.latency.measurement import LatencySample, MeasurementProtocol, pin_cores, summarize, time_callable
from orchestrator.schema import Schema
from search_spaces.base import SearchSpace, arch_input_shape

log = logging.getLogger(__name__)
T = TypeVar("T")



def arch_network(space: SearchSpace, arch: Mapping[str, Any]) -> Any:
    """``space.build(arch)`` in eval mode, its weights drawn from a generator seeded by the architecture's id.

    Every build of one architecture is then the same network, in any process: an artefact's output check (an int8
    network's error against the fp32 one, a runtime's tolerance) and so its verdict repeat from one measurement
    to the next. Unseeded, cells near an int8 tolerance passed in one pass and were refused in the next (22 of
    the 180 NB201 cells onnxrt-int8 accepted in a first pass; docs/benchmarks.md, issue 22 turn 8). The caller's
    global RNG state is left as it was. Latency does not depend on the weights' values, only on the network's shapes.
    """
    import torch

    seed = int.from_bytes(hashlib.sha256(space.arch_id(arch).encode()).digest()[:8], "little") & (2**63 - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build(arch).eval()


def refusal(error: BaseException) -> ArchitectureRefused | None:
    """The :class:`ArchitectureRefused` that ``error`` is or that a Ray task or actor raised (Ray's wrapping
    removed, its partial samples as ``LatencySample`` objects), else None."""
    from orchestrator.ray_connect import ray_cause

    cause = ray_cause(error)
    if not isinstance(cause, ArchitectureRefused):
        return None
    partial = [p if isinstance(p, LatencySample) else LatencySample(**p) for p in cause.partial]
    return ArchitectureRefused(str(cause), cause.arch_id, partial)


def raise_if_refused(error: BaseException, measured_before: Sequence[LatencySample] = (),
                     progress: Callable[[int], None] | None = None) -> None:
    """Raise the :class:`ArchitectureRefused` that ``error`` is or that a Ray task or actor raised (see
    :func:`refusal`), with ``measured_before`` (what the caller measured before the call that failed) put before
    its partial samples and ``progress`` told of that partial; return when ``error`` is no refusal (the caller
    raises its own error then)."""
    refused = refusal(error)
    if refused is None:
        return
    if progress is not None:
        progress(len(refused.partial))
    raise refused.after(measured_before) from None


def measure_skipping_refused(measure: Callable[[list[str]], Sequence[T]], arch_ids: Sequence[str],
                              on_refused: Callable[[ArchitectureRefused], None],
                              from_partial: Callable[[LatencySample], T],
                              latency_of: Callable[[T], float], device_name: str) -> tuple[list[str], list[T]]:
    """``measure(arch_ids)`` (a device's ``latency_ms`` or ``samples``), going past each architecture the device
    refuses: what the call measured before a refusal is kept (``from_partial`` turns its partial samples into
    ``measure``'s values), ``on_refused`` is told of the refusal (it may raise, e.g. past a limit), and the rest
    is measured by another call. A value whose latency (``latency_of``, ms) is not a positive finite number (a
    command device whose program printed 0 or nan) is refused the same way, named with ``device_name``: no
    predictor can be fitted on it. Returns (the ids measured, in order; their values). Any other error
    propagates."""
    done: list[str] = []
    values: list[T] = []
    rest = list(arch_ids)
    while rest:
        try:
            got = list(measure(rest))
        except ArchitectureRefused as e:
            r = refusal(e) or e
            n = len(r.partial)
            _keep_valid(rest[:n], [from_partial(p) for p in r.partial], latency_of, device_name, on_refused,
                        done, values)
            at = rest.index(r.arch_id, n) if r.arch_id in rest[n:] else n  # the one after the partial samples
            on_refused(r)
            rest = rest[at + 1:]
            continue
        _keep_valid(rest, got, latency_of, device_name, on_refused, done, values)
        break
    return done, values


def _keep_valid(ids: Sequence[str], got: Sequence[T], latency_of: Callable[[T], float], device_name: str,
                on_refused: Callable[[ArchitectureRefused], None], done: list[str], values: list[T]) -> None:
    """Append to ``done``/``values`` each measured (id, value) whose latency is positive and finite; refuse the
    others through ``on_refused``."""
    for a, v in zip(ids, got, strict=True):
        ms = float(latency_of(v))
        if np.isfinite(ms) and ms > 0:
            done.append(a)
            values.append(v)
        else:
            on_refused(ArchitectureRefused(f"{device_name} reported a latency of {ms!r} ms for {a}: not a positive "
                                           f"finite number (check what the device's runtime or command printed)",
                                           a))


def latencies_skipping_refused(device: Any, arch_ids: Sequence[str],
                               on_refused: Callable[[ArchitectureRefused], None]) -> tuple[list[str], np.ndarray]:
    """:func:`measure_skipping_refused` over ``device.latency_ms``: (the ids measured, in order; their latencies
    in ms, a float array)."""
    done, ys = measure_skipping_refused(lambda rest: np.asarray(device.latency_ms(rest), dtype=float), arch_ids,
                                        on_refused, lambda p: p.median_ms, float, device.name)
    return done, np.asarray(ys, dtype=float)


class MeasuredOptions(Schema):
    """The options every measured device takes (a runtime adds its own)."""

    threads: int = Field(1, ge=1, description="the runtime's intra-op threads (and CPUs its actor holds)")
    batch_size: int = Field(1, ge=1, description="input batch")
    cores: list[int] | None = Field(None, description="pin the measuring process to these cores")
    protocol: MeasurementProtocol = Field(default_factory=MeasurementProtocol)
    isolate: bool = Field(True, description="with Ray running, measure in an actor of its own")


class CudaOptions(MeasuredOptions):
    device_index: int = Field(0, ge=0, description="the CUDA device to time on")


def n_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


class MeasuredDevice(SampledDevice):
    """A runtime on this machine; subclasses time the network of an architecture (``_measure``)."""

    runtime = ""

    actor_starts: ClassVar[dict[str, int]] = {}  # device name -> measuring actors started in this process

    def __init__(self, name: str, space: SearchSpace, options: MeasuredOptions) -> None:
        self.name = name
        self.space = space
        self.options = options
        self._pinned = False
        self._actor: Any = None  # the measuring actor (isolate, with Ray): from the first measurement to close()
        self._node: str | None = None  # the node it runs on

    def __getstate__(self) -> dict[str, Any]:
        # a copy in another process does not own this device's actor (its close() must not end it)
        return {**self.__dict__, "_actor": None, "_node": None}

    @property
    def threads(self) -> int:
        return self.options.threads

    @property
    def protocol(self) -> MeasurementProtocol:
        return self.options.protocol

    def cluster_resources(self) -> dict[str, float]:
        return {}

    def actor_resources(self) -> dict[str, float]:
        """What the measuring actor asks Ray for."""
        return {"num_cpus": float(self.options.threads), "num_gpus": 0.0}

    # -- measuring --------------------------------------------------------------
    def _setup(self) -> None:
        if not self._pinned:
            pin_cores(self.options.cores)
            self._pinned = True

    def network(self, arch: Mapping[str, Any]) -> Any:
        """The network this device times for ``arch``: the space's, as configured (``arch_network``)."""
        return arch_network(self.space, arch)

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        """One architecture, in this process. A runtime's own failure (an exporter, a quantizer, a session)
        raises DeviceError naming the device and the architecture: the sweep then ends this target alone."""
        self._setup()
        model = self.network(arch)
        arch_id = self.space.arch_id(arch)
        try:
            sample = self._measure(arch_id, model)
        except HwnasError:
            raise
        except Exception as e:
            raise DeviceError(f"device {self.name}: measuring {arch_id} failed: {type(e).__name__}: "
                              f"{str(e)[:300]}") from e
        return sample.with_params(n_params(model))

    def _measure(self, arch_id: str, model: Any) -> LatencySample:
        raise NotImplementedError

    def measure_many(self, archs: Sequence[Mapping[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[LatencySample]:
        """Several architectures one after another, in this process. Where one is refused
        (:class:`ArchitectureRefused`), the refusal carries the samples measured before it in this call."""
        out: list[LatencySample] = []
        for arch in archs:
            try:
                out.append(self.measure(arch))
            except ArchitectureRefused as e:
                raise e.after(out) from None
            if progress is not None:
                progress(1)
        return out

    def samples(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None
                ) -> list[LatencySample]:
        """Measure ``arch_ids``: in an actor of its own when Ray runs and ``isolate`` is set, else here."""
        import ray

        if not (self.options.isolate and ray.is_initialized()):
            return self.measure_many([self.space.parse(a) for a in arch_ids], progress)
        from orchestrator.latency.service import reserve_cpus, start_latency_service

        with reserve_cpus(self.actor_resources()["num_cpus"], self._node) as node:
            if self._actor is None:  # the first measurement: the actor starts, on the node holding the CPUs
                self._actor = start_latency_service(self.name, None, device=self, node_id=node, hold_cpus=False)
                self._node = node
                MeasuredDevice.actor_starts[self.name] = MeasuredDevice.actor_starts.get(self.name, 0) + 1
                log.debug("device %s: measuring actor started on node %s", self.name, node)
            try:
                rows = ray.get(self._actor.measure.remote(list(arch_ids)))
            except Exception as e:
                raise_if_refused(e, (), progress)
                raise
        if progress is not None:
            progress(len(rows))
        return [LatencySample(**r) for r in rows]

    def builder(self) -> Callable[[], MeasuredDevice]:
        """What builds this device in its measuring actor: its class, name, space spec and options, measuring
        in that process (``isolate`` off)."""
        local = self.options.model_copy(update={"isolate": False})
        return functools.partial(_rebuild, type(self), self.name, self.space.spec(), local)

    @property
    def actor(self) -> Any:
        """The measuring actor's handle while it runs (None before the first isolated measurement and after
        ``close()``)."""
        return self._actor

    def close(self) -> None:
        """End the measuring actor (a later measurement starts a new one)."""
        actor, self._actor, self._node = self._actor, None, None
        if actor is None:
            return
        import ray

        if not ray.is_initialized():
            return  # Ray is gone, and its actors with it
        try:
            ray.get(actor.close.remote(), timeout=30)
        except Exception as e:  # the actor's own device failed to close: it is ended all the same
            log.warning("device %s: closing its measuring actor: %s: %s", self.name, type(e).__name__, e)
        ray.kill(actor)


def _rebuild(cls: type[MeasuredDevice], name: str, space_spec: Any, options: MeasuredOptions) -> MeasuredDevice:
    return cls(name, space_spec.build(), options)


class TorchCPUDevice(MeasuredDevice):
    runtime = "torch-cpu"

    def _setup(self) -> None:
        import torch

        super()._setup()
        torch.set_num_threads(self.options.threads)

    def _measure(self, arch_id: str, model: Any) -> LatencySample:
        import torch

        x = torch.randn(*arch_input_shape(self.space, arch_id, self.options.batch_size))
        with torch.inference_mode():
            return time_callable(arch_id, lambda: model(x), self.options.protocol)


def export_onnx(model: Any, example: Any) -> bytes:
    """Export ``model`` to ONNX bytes (TorchScript exporter; dynamo exporter as fallback)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                              opset_version=17)
        except Exception as e:  # the legacy exporter may be gone in a newer torch
            log.debug("TorchScript ONNX export failed (%s); using the dynamo exporter", e)
            buf = io.BytesIO()
            torch.onnx.export(model, (example,), buf, dynamo=True, input_names=["x"], output_names=["y"])
    return buf.getvalue()


def input_names(sess: Any) -> list[str]:
    """The input names of an ONNX Runtime session: none where the network ignores its input (an NB201 cell whose
    every path is cut; the exporter drops the input), so a feed built from them fits every exported network."""
    return [i.name for i in sess.get_inputs()]


class OnnxRuntimeCPUDevice(MeasuredDevice):
    runtime = "onnxrt-cpu"

    def _measure(self, arch_id: str, model: Any) -> LatencySample:
        import onnxruntime as ort
        import torch

        shape = arch_input_shape(self.space, arch_id, self.options.batch_size)
        onnx_bytes = export_onnx(model, torch.randn(*shape))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.options.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        feed = dict.fromkeys(input_names(sess), x)
        return time_callable(arch_id, lambda: sess.run(None, feed), self.options.protocol)


class CudaDevice(MeasuredDevice):
    """Times CUDA-graph replays with CUDA events.

    Eager timing at small batch measures kernel-launch jitter, not the network
    (test-retest SRCC 0.08 on an H100 for NB201 cells); graph replay removes
    launch overhead from the measurement. Unless the protocol says otherwise,
    20 replays per timed repeat.
    """

    runtime = "cuda"
    options: CudaOptions

    def __init__(self, name: str, space: SearchSpace, options: CudaOptions) -> None:
        if options.protocol.number == 1:
            options = options.model_copy(update={"protocol": options.protocol.model_copy(update={"number": 20})})
        super().__init__(name, space, options)

    def cluster_resources(self) -> dict[str, float]:
        return {"GPU": 1.0}

    def actor_resources(self) -> dict[str, float]:
        return {"num_cpus": float(self.options.threads), "num_gpus": 1.0}  # a whole GPU to time on

    def _setup(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' needs a CUDA GPU and a CUDA build of PyTorch; none is available here")
        super()._setup()

    def _measure(self, arch_id: str, model: Any) -> LatencySample:
        import torch

        dev = torch.device("cuda", self.options.device_index)
        model = model.to(dev)
        x = torch.randn(*arch_input_shape(self.space, arch_id, self.options.batch_size), device=dev)
        with torch.no_grad():
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(3):
                    model(x)
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(x)
        proto = self.options.protocol
        for _ in range(proto.warmup):
            graph.replay()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(proto.repeats):
            start.record()
            for _ in range(proto.number):
                graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / proto.number)
        return summarize(arch_id, times)


RUNTIMES: dict[str, tuple[type[MeasuredDevice], type[MeasuredOptions], str]] = {
    "torch-cpu": (TorchCPUDevice, MeasuredOptions, "PyTorch eager on the CPU (threads, batch_size)"),
    "onnxrt-cpu": (OnnxRuntimeCPUDevice, MeasuredOptions, "ONNX Runtime on the CPU (exported network)"),
    "cuda": (CudaDevice, CudaOptions, "CUDA: CUDA-graph replay timed with CUDA events (launch-free)"),
}


def _factory(cls: type[MeasuredDevice]) -> Callable[[str, SearchSpace, Any], MeasuredDevice]:
    def build(name: str, space: SearchSpace, options: Any) -> MeasuredDevice:
        return cls(name, space, options)

    return build


def register_measured(runtimes: dict[str, tuple[type[MeasuredDevice], type[MeasuredOptions], str]]) -> None:
    """Register each (device class, options model, help) under its name as a measured device type."""
    for name, (cls, opts, help_) in runtimes.items():
        DEVICES.add(name, DeviceType("measured", opts, _factory(cls), help=help_), help=help_)


register_measured(RUNTIMES)
