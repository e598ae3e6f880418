"""Measured devices: PyTorch eager on CPU, ONNX Runtime on CPU, CUDA (graphs + events)."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.base import DEVICES, MeasuredDevice
from orchestrator.latency.measurement import LatencySample, summarize, time_callable

log = logging.getLogger(__name__)


@DEVICES.register("torch-cpu", help="PyTorch eager on the CPU (threads, batch_size)")
class TorchCPUDevice(MeasuredDevice):
    runtime = "torch-cpu"

    def _setup(self) -> None:
        import torch

        super()._setup()
        torch.set_num_threads(self.threads)

    def _measure(self, arch_id: str, arch: Mapping[str, Any]) -> LatencySample:
        import torch

        model = self.space.build(arch).eval()
        x = torch.randn(*self.space.input_shape(self.batch_size, self.resolution))
        with torch.inference_mode():
            return time_callable(arch_id, lambda: model(x), self.protocol)


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


@DEVICES.register("onnxrt-cpu", help="ONNX Runtime on the CPU (exported network; threads, batch_size)")
class OnnxRuntimeCPUDevice(MeasuredDevice):
    runtime = "onnxrt-cpu"

    def _measure(self, arch_id: str, arch: Mapping[str, Any]) -> LatencySample:
        import numpy as np
        import onnxruntime as ort
        import torch

        model = self.space.build(arch).eval()
        shape = self.space.input_shape(self.batch_size, self.resolution)
        onnx_bytes = export_onnx(model, torch.randn(*shape))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        feed = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        return time_callable(arch_id, lambda: sess.run(None, feed), self.protocol)


@DEVICES.register("cuda", help="CUDA: CUDA-graph replay timed with CUDA events (launch-free)")
class CudaDevice(MeasuredDevice):
    """Times CUDA-graph replays with CUDA events.

    Eager timing at small batch measures kernel-launch jitter, not the network
    (test-retest SRCC 0.08 on an H100 for NB201 cells); graph replay removes
    launch overhead from the measurement.
    """

    runtime = "cuda"

    def __init__(self, space: Any, *, device_index: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("protocol", None)
        super().__init__(space, **kwargs)
        self.device_index = device_index
        if self.protocol.number == 1:
            self.protocol = self.protocol.model_copy(update={"number": 20})

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "device_index": self.device_index}

    def _setup(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' needs a CUDA GPU and a CUDA build of PyTorch; none is available here")
        super()._setup()

    def _measure(self, arch_id: str, arch: Mapping[str, Any]) -> LatencySample:
        import torch

        dev = torch.device("cuda", self.device_index)
        model = self.space.build(arch).eval().to(dev)
        x = torch.randn(*self.space.input_shape(self.batch_size, self.resolution), device=dev)
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
        for _ in range(self.protocol.warmup):
            graph.replay()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(self.protocol.repeats):
            start.record()
            for _ in range(self.protocol.number):
                graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / self.protocol.number)
        return summarize(arch_id, times)
