"""Simulated devices: a roofline-style latency model, for sweeps over hundreds of devices.

SIMULATED, NOT MEASURED. A simulated device ``sim:<n>`` draws its hardware from
a generator seeded by ``n``: peak compute, memory bandwidth, a per-layer launch
overhead, a compute efficiency per layer type (convolution, depthwise
convolution, pooling, element-wise, linear) and whether its compiler drops
element-wise layers (fuses them into the producer). An architecture's latency is

    sum over layers  max(flops / (peak * efficiency[type]), bytes / bandwidth) + launch[type]

times a small per-(device, architecture) log-normal factor for what a roofline
does not capture. The layers come from the real network: ``space.build(arch)``
run once on the space's input with forward hooks counting each layer's FLOPs and
bytes moved (cached per architecture, shared by every simulated device).

Rankings over such devices correlate like real ones do (mostly, with outliers
where memory-bound and compute-bound regimes disagree), which is what a sweep
benchmark needs; absolute values mean nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from orchestrator.errors import DeviceError
from orchestrator.latency.measurement import LatencySample
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)

LAYER_TYPES = ("conv", "dwconv", "pool", "elementwise", "linear")
_T = {t: i for i, t in enumerate(LAYER_TYPES)}
PREFIX = "sim:"


@dataclass(frozen=True)
class LayerProfile:
    """Per layer: type index (into LAYER_TYPES), FLOPs, bytes moved (fp32)."""

    types: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray


def _profile(space: SearchSpace, arch: Mapping[str, Any]) -> LayerProfile:
    import torch
    from torch import nn

    net = space.build(arch).eval()
    rows: list[tuple[int, float, float]] = []

    def hook(mod: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        x = inp[0]
        n_in, n_out = x.numel(), out.numel()
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            t = "dwconv" if mod.groups > 1 and mod.groups == mod.in_channels else "conv"
            rows.append((_T[t], 2.0 * n_out * k, 4.0 * (n_in + n_out + mod.weight.numel())))
        elif isinstance(mod, nn.Linear):
            rows.append((_T["linear"], 2.0 * mod.in_features * mod.out_features * (n_in // mod.in_features),
                         4.0 * (n_in + n_out + mod.weight.numel())))
        elif isinstance(mod, (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            rows.append((_T["pool"], float(n_in), 4.0 * (n_in + n_out)))
        elif isinstance(mod, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.BatchNorm2d)):
            rows.append((_T["elementwise"], float(n_in), 8.0 * n_in))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(torch.zeros(*space.input_shape(1)))
    finally:
        for h in handles:
            h.remove()
    if not rows:
        raise DeviceError(f"simulated device: the {space.name} network for {space.arch_id(arch)} has no layers "
                          f"it can cost")
    a = np.asarray(rows, dtype=float)
    return LayerProfile(a[:, 0].astype(np.int64), a[:, 1], a[:, 2])


@lru_cache(maxsize=65536)
def _cached_profile(space_key: tuple[Any, ...], arch_id: str, space: Any) -> LayerProfile:
    return _profile(space, space.parse(arch_id))


def clear_profile_cache() -> None:
    """Forget the layer profiles computed so far (benchmarks that time a cold start)."""
    _cached_profile.cache_clear()


def layer_profile(space: SearchSpace, arch: Mapping[str, Any]) -> LayerProfile:
    """The cached layer profile of ``arch`` (one forward pass the first time)."""
    key = (space.name, tuple(sorted((k, v) for k, v in vars(space).items() if isinstance(v, (int, float, str)))))
    return _cached_profile(key, space.arch_id(arch), space)


@dataclass(frozen=True)
class Hardware:
    peak_gflops: float
    bandwidth_gbs: float
    launch_us: np.ndarray  # per layer type
    efficiency: np.ndarray  # per layer type, in (0, 1]
    fuses_elementwise: bool
    noise: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_gflops": round(self.peak_gflops, 3), "bandwidth_gbs": round(self.bandwidth_gbs, 3),
            "fuses_elementwise": self.fuses_elementwise, "noise": self.noise,
            **{f"launch_us_{t}": round(float(v), 3) for t, v in zip(LAYER_TYPES, self.launch_us, strict=True)},
            **{f"efficiency_{t}": round(float(v), 3) for t, v in zip(LAYER_TYPES, self.efficiency, strict=True)},
        }


def draw_hardware(seed: int) -> Hardware:
    """A device's hardware, drawn from ranges spanning microcontroller-class to datacenter-class parts."""
    rng = np.random.default_rng([0x51A, seed])
    peak = float(np.exp(rng.uniform(np.log(2.0), np.log(20_000.0))))
    # bandwidth loosely tied to compute (machine balance 1..100 flop/byte)
    balance = float(np.exp(rng.uniform(np.log(1.0), np.log(100.0))))
    bw = peak / balance
    launch = np.exp(rng.uniform(np.log(1.0), np.log(150.0))) * rng.uniform(0.5, 1.5, len(LAYER_TYPES))
    eff = rng.uniform(0.1, 0.9, len(LAYER_TYPES))
    return Hardware(peak, bw, launch, eff, bool(rng.random() < 0.5), 0.03)


class SimulatedDevice:
    """A roofline-model device (see the module doc). ``measure`` is deterministic per (device, arch)."""

    kind = "simulated"

    def __init__(self, seed: int, space: SearchSpace) -> None:
        if seed < 0:
            raise DeviceError(f"simulated device seed must be >= 0, got {seed}; name devices sim:0, sim:1, ...")
        self.seed = seed
        self.name = f"{PREFIX}{seed}"
        self.space = space
        self.hardware = draw_hardware(seed)

    def _noise(self, arch_id: str) -> float:
        h = hashlib.blake2b(f"{self.seed}|{arch_id}".encode(), digest_size=8).digest()
        z = np.random.default_rng(int.from_bytes(h, "little")).standard_normal()
        return float(np.exp(self.hardware.noise * z))

    def latency_ms(self, arch_ids: Sequence[str]) -> np.ndarray:
        hw = self.hardware
        out = np.empty(len(arch_ids))
        for i, a in enumerate(arch_ids):
            p = layer_profile(self.space, self.space.parse(a))
            keep = p.types != _T["elementwise"] if hw.fuses_elementwise else np.ones(len(p.types), bool)
            compute = p.flops / (hw.peak_gflops * 1e9 * hw.efficiency[p.types])
            memory = p.bytes / (hw.bandwidth_gbs * 1e9)
            t = (np.maximum(compute, memory) + hw.launch_us[p.types] * 1e-6)[keep].sum()
            out[i] = 1e3 * t * self._noise(a)
        return out

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        a = self.space.arch_id(arch)
        v = float(self.latency_ms([a])[0])
        return LatencySample(arch=a, median_ms=v, cv=0.0, repeats=1, p10_ms=v, p90_ms=v)

    def measure_many(self, archs: Iterable[Mapping[str, Any]], progress: Any = None) -> list[LatencySample]:
        return [self.measure(a) for a in archs]


def parse_simulated(name: str) -> int:
    """The seed of ``sim:<n>``; a clear error otherwise."""
    tail = name[len(PREFIX):]
    if not name.startswith(PREFIX) or not tail.isdigit():
        raise DeviceError(f"{name!r} is not a simulated device name; write sim:<n> with n a non-negative integer")
    return int(tail)
