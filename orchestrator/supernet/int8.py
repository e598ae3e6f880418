"""int8 as a precision: a subnet's accuracy after post-training int8 quantization, beside its fp32 accuracy on
the same validation images (issue 22, item 4).

Each subnet is extracted from the trained supernet and its BatchNorm recalibrated exactly as
:func:`orchestrator.supernet.evaluate.evaluate_subnet` does (the same fixed training batches), so its fp32
accuracy here is the one the sweep's front reports. The network is then exported to ONNX (opset 17, a fixed
batch of ``eval.batch_size`` images, or fewer where the evaluation has fewer), quantized with ONNX Runtime's
static quantization (:func:`orchestrator.latency.devices.runtimes.quantize_onnx_static`: QDQ, int8 weights per
channel, 7-bit on a CPU whose int8 kernels saturate 8-bit ones (``reduce_range``), int8 activations)
calibrated on ``calibration_images`` real training images (unaugmented; the same fixed draw as the
recalibration's), and evaluated with ONNX Runtime's CPU provider on the same validation
images (the first ``eval.max_val``), top-1. Accuracies are percentages, as the pipeline's; ``drop`` is fp32
minus int8 in percentage points (negative where int8 happens to classify more images correctly).

A failure of one member's evaluation (its extraction or fp32 evaluation, the ONNX export, the quantization,
ONNX Runtime's session or inference) is that member's alone: :meth:`Int8Evaluator.evaluate` returns it with
``error`` (``"<step>: <exception type>: <message>"``) and no int8 accuracy, and the other members go on.
``orchestrator.supernet.int8_pool`` runs the same evaluation on Ray actors, several members at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from orchestrator.errors import DataError
from orchestrator.supernet.data import Dataset, eval_batches
from orchestrator.supernet.evaluate import EvalConfig, accuracy, calibration_batches, recalibrate_bn
from search_spaces.base import SpaceSpec

log = logging.getLogger(__name__)


ERROR_CHARS = 300  # of a failed member's reason (``Int8Accuracy.error``)
STEPS = ("fp32", "export", "quantize", "inference")  # a failed member's step: the first word of its error


@dataclass(frozen=True)
class Int8Accuracy:
    """One subnet's top-1 accuracy (%) in fp32 and in int8 on the same ``n_val`` validation images; where its
    evaluation failed, ``error`` says at which step and why (``accuracy_int8`` is then None, and
    ``accuracy_fp32`` too where the failure came before it)."""

    arch_id: str
    accuracy_fp32: float | None
    accuracy_int8: float | None
    n_val: int
    seconds: float  # extraction, recalibration, both evaluations, export and quantization
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def drop(self) -> float | None:
        """fp32 minus int8 accuracy, in percentage points (None where the evaluation failed)."""
        if self.accuracy_fp32 is None or self.accuracy_int8 is None:
            return None
        return self.accuracy_fp32 - self.accuracy_int8

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "int8_drop": self.drop}


def failure_reason(step: str, e: BaseException) -> str:
    """``"<step>: <type>: <first words of the message>"``, one line of at most ``ERROR_CHARS`` characters."""
    msg = " ".join(str(e).split())
    return (f"{step}: {type(e).__name__}" + (f": {msg}" if msg else ""))[:ERROR_CHARS]


def failure_counts(results: Sequence[Int8Accuracy]) -> dict[str, int]:
    """How many of ``results`` failed at each step (``STEPS``, or another first word), failed ones only."""
    out: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            step = r.error.split(":", 1)[0]
            out[step] = out.get(step, 0) + 1
    return out


def _fixed_batches(x: torch.Tensor, batch: int) -> list[tuple[np.ndarray, int]]:
    """``x`` cut into arrays of exactly ``batch`` images (the exported network's fixed batch), the last one
    filled up with copies of its first image; each with the number of real images it holds."""
    out = []
    for a in range(0, len(x), batch):
        xb = x[a:a + batch].numpy().astype(np.float32)
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.repeat(xb[:1], batch - n, axis=0)])
        out.append((xb, n))
    return out


def _onnx_top1(sess: Any, data: Dataset, batch: int, n_val: int) -> float:
    """Top-1 accuracy (fraction) of an ONNX Runtime session on the first ``n_val`` validation images."""
    from orchestrator.latency.devices.measured import input_names

    names = input_names(sess)
    correct = n = 0
    for xb, yb in eval_batches(data.x_val, data.y_val, batch, data.workers, n_val):
        logits = [sess.run(None, dict.fromkeys(names, b))[0][:k] for b, k in _fixed_batches(xb, batch)]
        correct += int((np.concatenate(logits).argmax(1) == yb.numpy()).sum())
        n += len(yb)
    return correct / max(1, n)


class Int8Evaluator:
    """Evaluates subnets of one trained supernet in fp32 and int8 (see the module doc), in this process.

    ``spec``: the supernet's space; ``weights``: its state_dict; ``data``: the dataset it was trained and is
    evaluated on; ``eval_cfg``: the run's evaluation settings (``accuracy.supernet.eval``); ``options``: a
    :class:`orchestrator.config.Int8AccuracySection` (calibration_images, calibrate_method, per_channel, threads).
    """

    def __init__(self, spec: SpaceSpec, weights: Mapping[str, torch.Tensor], data: Dataset, eval_cfg: EvalConfig,
                 options: Any) -> None:
        self.space = spec.build()
        self.supernet = self.space.build_supernet()
        self.supernet.load_state_dict(weights)
        self.supernet.eval()
        self.data, self.cfg, self.options = data, eval_cfg, options
        self.calib = calibration_batches(data, eval_cfg)
        n_cal = options.calibration_images
        if n_cal > len(data.x_train):
            raise DataError(f"int8 calibration_images {n_cal} > the {len(data.x_train)} training images of "
                            f"{data.name!r}; lower sweep.int8_accuracy.calibration_images")
        # the same fixed draw of training images as the recalibration's (its first n_cal), in enough batches
        more = eval_cfg.model_copy(update={"calib_batches": max(1, -(-n_cal // eval_cfg.calib_batch_size))})
        self.int8_calib = torch.cat(calibration_batches(data, more))[:n_cal]
        self.n_val = len(data.y_val) if eval_cfg.max_val is None else min(eval_cfg.max_val, len(data.y_val))
        self.batch = max(2, min(eval_cfg.batch_size, self.n_val))

    def evaluate(self, arch_id: str) -> Int8Accuracy:
        """fp32 and int8 top-1 accuracy (%) of ``arch_id`` on the same validation images. Any failure
        (``Exception``) is returned as the member's ``error``, not raised (see the module doc)."""
        from orchestrator.latency.devices.measured import export_onnx
        from orchestrator.latency.devices.runtimes import ort_session, quantize_onnx_static

        t0 = time.perf_counter()
        step, fp32 = "fp32", None
        try:
            cpu = torch.device("cpu")
            net = self.space.extract(self.supernet, self.space.parse(arch_id)).to(cpu)
            recalibrate_bn(net, self.calib, cpu)
            d = self.data
            fp32 = 100.0 * accuracy(net, d.x_val, d.y_val, self.cfg.batch_size, cpu, d.workers, self.n_val)
            shape = (self.batch, *d.x_val[:1].shape[1:]) if isinstance(d.x_val, torch.Tensor) \
                else (self.batch, d.in_channels, d.resolution, d.resolution)
            step = "export"
            with torch.no_grad():
                onnx = export_onnx(net, torch.zeros(shape))
            step = "quantize"
            q = quantize_onnx_static(onnx, [b for b, _ in _fixed_batches(self.int8_calib, self.batch)],
                                     per_channel=self.options.per_channel,
                                     calibrate_method=self.options.calibrate_method,
                                     reduce_range=self.options.reduce_range)
            step = "inference"
            int8 = 100.0 * _onnx_top1(ort_session(q, self.options.threads), d, self.batch, self.n_val)
        except Exception as e:  # noqa: BLE001 - exporters, quantizers and runtimes raise many types
            err = failure_reason(step, e)
            log.warning("int8: %s failed (%s); the other members go on", arch_id, err)
            return Int8Accuracy(arch_id, fp32, None, self.n_val, time.perf_counter() - t0, err)
        return Int8Accuracy(arch_id, fp32, int8, self.n_val, time.perf_counter() - t0)

    def evaluate_all(self, arch_ids: Sequence[str],
                     progress: Callable[[Int8Accuracy], None] | None = None) -> dict[str, Int8Accuracy]:
        """Each distinct id of ``arch_ids`` evaluated once, one after another in this process (the sequential
        path; ``int8_pool.evaluate_parallel`` gives the same values on Ray actors)."""
        out: dict[str, Int8Accuracy] = {}
        ids = list(dict.fromkeys(arch_ids))
        for n, a in enumerate(ids, 1):
            out[a] = r = self.evaluate(a)
            log_result(r, n, len(ids))
            if progress is not None:
                progress(r)
        return out


def log_result(r: Int8Accuracy, n: int, total: int) -> None:
    """The progress line of one evaluated member (``n`` of ``total``)."""
    if r.ok:
        log.info("int8 %d/%d: %s fp32 %.2f %% int8 %.2f %% (drop %.2f points, %.1fs)", n, total, r.arch_id,
                 r.accuracy_fp32, r.accuracy_int8, r.drop, r.seconds)
    else:
        log.info("int8 %d/%d: %s failed (%s)", n, total, r.arch_id, r.error)
