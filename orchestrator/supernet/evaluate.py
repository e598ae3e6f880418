"""Subnet evaluation with inherited weights.

A subnet is extracted from the supernet (a standalone copy), its BatchNorm
statistics are recalibrated on a few training batches (the supernet's running
statistics mix every subnet that was trained, so they fit none), then its top-1
accuracy is measured on the validation split (carved from the training images;
never the test images), without augmentation. A subnet of an elastic-resolution space is recalibrated and
evaluated at its own resolution (its images scaled to it): BatchNorm statistics depend on the resolution.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from orchestrator.errors import DataError
from orchestrator.supernet.data import Dataset, Images, at_resolution, eval_batches
from orchestrator.supernet.settings import EvalConfig
from search_spaces.base import searched_resolution


@dataclass(frozen=True)
class EvalResult:
    index: int
    arch_id: str
    accuracy: float
    n_val: int
    seconds: float
    worker: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_batches(data: Dataset, cfg: EvalConfig) -> list[torch.Tensor]:
    """A fixed set of training images, unaugmented (the same for every subnet, so results are comparable), in
    batches of ``calib_batch_size``; never a batch of one image (it joins the batch before it: BatchNorm in
    training mode cannot normalise one image at 1x1 resolution)."""
    g = torch.Generator().manual_seed(12345)
    n = min(len(data.x_train), cfg.calib_batches * cfg.calib_batch_size)
    if n < 2:
        raise DataError(f"BatchNorm recalibration needs at least 2 training images, the dataset has "
                        f"{len(data.x_train)}; use a larger training split")
    idx = torch.randperm(len(data.x_train), generator=g)[:n]
    return [x for x, _ in eval_batches(data.x_train, data.y_train, cfg.calib_batch_size, data.workers, order=idx)]


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: list[torch.Tensor], device: torch.device,
                   resolution: int | None = None) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) on ``batches``
    (scaled to ``resolution`` x ``resolution`` where given: the subnet's input resolution)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for x in batches:
        net(at_resolution(x.to(device), resolution))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: Images, y: torch.Tensor, batch_size: int, device: torch.device,
             workers: int = 0, limit: int | None = None, resolution: int | None = None) -> float:
    """Top-1 accuracy (fraction) of ``net`` in eval mode on the first ``limit`` of (x, y), unaugmented (scaled to
    ``resolution`` where given)."""
    net.eval()
    correct = n = 0
    for xb, yb in eval_batches(x, y, batch_size, workers, limit):
        correct += int((net(at_resolution(xb.to(device), resolution)).argmax(1).cpu() == yb).sum())
        n += len(yb)
    return correct / max(1, n)


def evaluate_subnet(space: Any, supernet: nn.Module, arch: Mapping[str, Any], data: Dataset, cfg: EvalConfig,
                    calib: list[torch.Tensor] | None = None, index: int = 0, worker: str = "") -> EvalResult:
    """Extract ``arch``, recalibrate its BatchNorm, and return its validation accuracy (both at the resolution
    ``arch`` names where the space searches it)."""
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    net = space.extract(supernet, arch).to(device)
    r = searched_resolution(space, arch)
    recalibrate_bn(net, calib if calib is not None else calibration_batches(data, cfg), device, r)
    n_val = len(data.y_val) if cfg.max_val is None else min(cfg.max_val, len(data.y_val))
    acc = accuracy(net, data.x_val, data.y_val, cfg.batch_size, device, data.workers, n_val, r)
    return EvalResult(index, space.arch_id(arch), acc, n_val, time.perf_counter() - t0, worker)
