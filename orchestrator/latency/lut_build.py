"""Build a lookup table (``latency/devices/lut.py``'s CSV) for a measured device by timing each block in place.

The table HW-NAS-Bench ships for FBNet is a base (the whole reference network: every layer its first block,
e.g. all-``k3_e1``) plus, per layer and block, the block's latency minus the reference block's at that layer.
``build_lut`` makes the same for any measured device of this machine (``torch-cpu``, ``onnxrt-cpu``, ``cuda``):

1. the base: the whole reference network measured on the device (its median, ms);
2. each (layer, block): the block alone, as the network builds it at that layer (its channels and stride),
   timed by the device's own runtime on an input of that layer's shape (in place: the shape the reference
   network feeds that layer, from a forward pass with hooks); delta = t(layer, block) - t(layer, reference).

The sum is then ``base + sum_l delta_l``: exact for the reference network, and for any other it misses what
changes between blocks beyond their own time (cache effects across layers, the runtime's fusions across a
block boundary, per-call overhead that a standalone block pays and a network does not).
``evaluate_lut`` measures that error: whole networks of sampled architectures against the table's sum (MAPE,
SRCC). Cost: 1 network + layers x blocks standalone block timings (198 small ones on FBNet).

Needs a layer-wise space (``choices()``) whose network keeps its layers as ``cells`` (a ModuleList, one per
layer), like fbnet's; runtimes that prepare an artefact per network from real images (``onnxrt-int8``,
``torch-compile``) are not supported: their checks run the whole network.
"""

from __future__ import annotations

import copy
import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.lut import COLUMN_PREFIX, LookupTable, _layerwise
from orchestrator.latency.devices.measured import MeasuredDevice
from orchestrator.latency.metrics import srcc
from search_spaces.base import SearchSpace, distinct_sample

log = logging.getLogger(__name__)


class _ShapeOnly:
    """Stands in for the space inside a device copy that times one block: only ``input_shape`` is asked."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        return (batch_size, *self.shape[1:])


def _check_device(device: object, space: SearchSpace) -> MeasuredDevice:
    from orchestrator.latency.devices.runtimes import RuntimeDevice

    if not isinstance(device, MeasuredDevice) or isinstance(device, RuntimeDevice):
        name = getattr(device, "name", type(device).__name__)
        raise DeviceError(f"device {name!r}: a lookup table is built by timing blocks on a measured runtime of this "
                          f"machine (torch-cpu, onnxrt-cpu, cuda); give one of those")
    _layerwise(space)
    return device


def layer_inputs(space: SearchSpace, arch: dict, batch_size: int = 1) -> list[tuple[int, ...]]:
    """The input shape of each layer of ``space.build(arch)`` (NCHW), from one forward pass with hooks."""
    import torch

    net = space.build(arch).eval()
    cells = getattr(net, "cells", None)
    if cells is None or len(cells) != len(space.choices()):
        raise DeviceError(f"space {space.name!r}: its network does not keep one module per layer as 'cells'; "
                          f"blocks cannot be timed in place")
    shapes: list[tuple[int, ...]] = [()] * len(cells)
    hooks = [c.register_forward_pre_hook(lambda m, a, i=i: shapes.__setitem__(i, tuple(a[0].shape)))
             for i, c in enumerate(cells)]
    try:
        with torch.inference_mode():
            net(torch.zeros(*space.input_shape(batch_size)))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _with_block(space: SearchSpace, arch: dict, layer: int, op: str) -> dict:
    """``arch`` with layer ``layer`` set to block ``op`` (through the space's parameters: one per layer)."""
    params = space.to_params(arch)
    params[list(params)[layer]] = op
    return space.from_params(params)


def reference_arch(space: SearchSpace) -> dict:
    """Every layer its first block (fbnet: all-``k3_e1``, HW-NAS-Bench's base)."""
    arch = space.largest()
    for layer, ops in enumerate(space.choices()):
        arch = _with_block(space, arch, layer, ops[0])
    return arch


def build_lut(device: Any, space: SearchSpace, progress: Callable[[int], None] | None = None) -> LookupTable:
    """Time the reference network and every (layer, block) in place on ``device`` (this process); the table.

    Returns a ``LookupTable`` with one device (``device.name``); deltas (layers, blocks) in ms, the reference
    block's delta 0. Raises DeviceError for a device or space it cannot time this way.
    """
    dev = _check_device(device, space)
    choices = _layerwise(space)
    ref = reference_arch(space)
    dev._setup()
    base = float(dev.measure(ref).median_ms)
    shapes = layer_inputs(space, ref, dev.options.batch_size)
    deltas = np.zeros((len(choices), max(len(c) for c in choices)))
    for layer, ops in enumerate(choices):
        timer = copy.copy(dev)
        timer.space = _ShapeOnly(shapes[layer])  # type: ignore[assignment]
        times = []
        for op in ops:
            block = space.build(_with_block(space, ref, layer, op)).cells[layer].eval()
            times.append(timer._measure(f"{layer}:{op}", block).median_ms)
            if progress is not None:
                progress(1)
        deltas[layer, :len(ops)] = np.asarray(times) - times[0]
    return LookupTable([dev.name], {dev.name: base}, {dev.name: deltas}, choices, f"built on {dev.name}")


def write_lut(path: str | Path, table: LookupTable, base_label: str = "base") -> Path:
    """Write ``table`` as the CSV ``read_lut`` reads (``layer,op,lat_ms_<device>...``; the base row first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "op", *(COLUMN_PREFIX + d for d in table.devices)])
        w.writerow([base_label, "", *(repr(table.base[d]) for d in table.devices)])
        for layer, ops in enumerate(table.choices):
            for b, op in enumerate(ops):
                w.writerow([layer, op, *(repr(float(table.deltas[d][layer, b])) for d in table.devices)])
    return path


@dataclass(frozen=True)
class LutError:
    """A lookup table's sum against whole-network measurement on ``n`` architectures."""

    n: int
    mape: float  # mean absolute percentage error, %
    srcc: float
    measured_ms: np.ndarray
    table_ms: np.ndarray


def lut_latency(table: LookupTable, device: str, space: SearchSpace, arch_ids: Sequence[str]) -> np.ndarray:
    """``base + sum of deltas`` of each architecture (ms)."""
    X = np.stack([space.encode(space.parse(a)) for a in arch_ids]).astype(np.float64)
    return X @ table.coef(device) + table.base[device]


def evaluate_lut(device: Any, space: SearchSpace, table: LookupTable, n: int, rng: np.random.Generator,
                 progress: Callable[[int], None] | None = None) -> LutError:
    """Measure ``n`` sampled architectures whole on ``device`` (this process) and compare with the table."""
    dev = _check_device(device, space)
    ids = distinct_sample(space, n, rng)
    dev._setup()
    measured = np.empty(len(ids))
    for i, a in enumerate(ids):
        measured[i] = dev.measure(space.parse(a)).median_ms
        if progress is not None:
            progress(1)
    pred = lut_latency(table, table.devices[0], space, ids)
    mape = float(np.mean(np.abs(pred - measured) / measured) * 100)
    return LutError(len(ids), mape, srcc(pred, measured), measured, pred)
