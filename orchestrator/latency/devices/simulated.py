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
bytes moved (cached per space spec and architecture, shared by every simulated
device; the cost of many devices over many architectures is then a few
vectorised array operations per device).

Rankings over such devices correlate like real ones do (mostly, with outliers
where memory-bound and compute-bound regimes disagree), which is what a sweep
benchmark needs; absolute values mean nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator import disk_cache
from orchestrator.errors import DeviceError
from orchestrator.latency.devices.protocol import DeviceSpec, DeviceType, NoOptions
from orchestrator.latency.devices.registry import PREFIXES
from orchestrator.latency.measurement import LatencySample
from search_spaces.base import SearchSpace
from search_spaces.costs import hooked_layers, network_layers  # noqa: F401  (hooked_layers: re-exported)

log = logging.getLogger(__name__)

LAYER_TYPES = ("conv", "dwconv", "pool", "elementwise", "linear")
_T = {t: i for i, t in enumerate(LAYER_TYPES)}
_COMPUTE = np.isin(np.arange(len(LAYER_TYPES)), [_T["conv"], _T["dwconv"], _T["linear"]])  # per type: FLOPs-bound
PREFIX = "sim:"


@dataclass(frozen=True)
class LayerProfile:
    """Per layer: type index (into LAYER_TYPES), FLOPs, bytes moved (fp32)."""

    types: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray


def _profile(space: SearchSpace, arch: Mapping[str, Any]) -> LayerProfile:
    layers = network_layers(space, arch)
    if not layers:
        raise DeviceError(f"simulated device: the {space.name} network for {space.arch_id(arch)} has no layers "
                          f"it can cost")
    # one array of the layers' numbers (type, n_in, n_out, weights, macs per output): the whole space's cells
    # are profiled in one run, so per-layer array building is kept to a single conversion
    rows = np.array([(_T[x.kind], x.n_in, x.n_out, x.weights, x.macs_per_out) for x in layers], dtype=float)
    types = rows[:, 0].astype(np.int64)
    n_in, n_out, weights, macs = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    compute = _COMPUTE[types]
    ewise = types == _T["elementwise"]
    flops = np.where(compute, 2.0 * n_out * macs, n_in)
    moved = np.where(compute, 4.0 * (n_in + n_out + weights), np.where(ewise, 8.0 * n_in, 4.0 * (n_in + n_out)))
    return LayerProfile(types, flops, moved)


class ProfileBank:
    """The layer profiles of one space's architectures, computed once each, and stacked for many devices.

    A stack of many architectures (a target's whole domain: NB201's 15,625 cells, 2.3 million layers, 2.2 s
    to build) is also kept in hwnas's disk cache (``orchestrator/disk_cache.py``; 0.6 MB, read in 0.03 s) and in
    memory for the devices that ask for the same architectures next. Only for the spaces shipped in
    ``search_spaces`` with an exact layer list (``space.layers``): the key hashes that package's text and this
    module's, the space's spec and the architectures in order."""

    MAX = 200_000  # architectures kept per space
    STACK_CACHE_MIN = 1_000  # architectures in one stack from which it is kept (smaller ones are quick to build)
    STACKS_KEPT = 2  # whole stacks kept in memory

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._profiles: dict[str, LayerProfile] = {}
        self._stacks: dict[str, tuple[LayerProfile, np.ndarray]] = {}

    def get(self, arch_id: str) -> LayerProfile:
        p = self._profiles.get(arch_id)
        if p is None:
            if len(self._profiles) >= self.MAX:
                self._profiles.pop(next(iter(self._profiles)))
            p = self._profiles[arch_id] = _profile(self.space, self.space.parse(arch_id))
        return p

    def stacked(self, arch_ids: Sequence[str]) -> tuple[LayerProfile, np.ndarray]:
        """All layers of ``arch_ids`` in one profile, and where each architecture's layers start."""
        ids = list(arch_ids)
        key = self._stack_key(ids) if len(ids) >= self.STACK_CACHE_MIN else None
        if key is None:
            return self._stack(ids)
        hit = self._stacks.get(key) or _read_stack(key, len(ids))
        if hit is None:
            hit = self._stack(ids)
            disk_cache.store_arrays(STACK_KIND, key, {"types": hit[0].types.astype(np.int8), "flops": hit[0].flops,
                                                      "bytes": hit[0].bytes, "starts": hit[1]})
        self._stacks.pop(key, None)
        self._stacks[key] = hit
        while len(self._stacks) > self.STACKS_KEPT:
            self._stacks.pop(next(iter(self._stacks)))
        return hit

    def _stack_key(self, arch_ids: list[str]) -> str | None:
        """The disk-cache key of a stack of ``arch_ids``; None for a space whose layers this cannot vouch for."""
        if not type(self.space).__module__.startswith("search_spaces.") or not hasattr(self.space, "layers"):
            return None
        h = hashlib.blake2b(digest_size=20)
        h.update(_stack_code_version().encode())
        h.update(self.space.spec().key().encode())
        h.update("\n".join(arch_ids).encode())
        return h.hexdigest()

    def _stack(self, arch_ids: list[str]) -> tuple[LayerProfile, np.ndarray]:
        profs = [self.get(a) for a in arch_ids]
        starts = np.cumsum([0] + [len(p.types) for p in profs[:-1]]).astype(np.int64)
        if not profs:
            empty = np.zeros(0)
            return LayerProfile(empty.astype(np.int64), empty, empty), starts
        return LayerProfile(np.concatenate([p.types for p in profs]), np.concatenate([p.flops for p in profs]),
                            np.concatenate([p.bytes for p in profs])), starts


STACK_KIND = "layer-profiles"  # the disk cache's folder of stacks


def _stack_code_version() -> str:
    """A hash of the text of this module and of every module of the ``search_spaces`` package."""
    import search_spaces

    spaces = sorted(p.name for p in Path(search_spaces.__file__).parent.glob("*.py"))
    return disk_cache.code_version("latency/devices/simulated.py", *(f"../search_spaces/{n}" for n in spaces))


def _read_stack(key: str, n_archs: int) -> tuple[LayerProfile, np.ndarray] | None:
    """The stack kept under ``key``, if it is whole (its starts fit its layers and count ``n_archs``)."""
    a = disk_cache.lookup_arrays(STACK_KIND, key, ("types", "flops", "bytes", "starts"))
    if a is None:
        return None
    types, starts = a["types"].astype(np.int64), a["starts"].astype(np.int64)
    n = len(types)
    whole = (len(a["flops"]) == len(a["bytes"]) == n and len(starts) == n_archs and n_archs > 0 and starts[0] == 0
             and bool(np.all(np.diff(starts) > 0)) and starts[-1] < n and bool(np.all((types >= 0)
                                                                                      & (types < len(LAYER_TYPES)))))
    if not whole:
        log.debug("layer-profile stack %s is not whole; building it again", key)
        return None
    return LayerProfile(types, a["flops"].astype(np.float64), a["bytes"].astype(np.float64)), starts


_BANKS: dict[str, ProfileBank] = {}


def profile_bank(space: SearchSpace) -> ProfileBank:
    """The process-wide profile bank of ``space`` (keyed by its spec)."""
    key = space.spec().key()
    if key not in _BANKS:
        _BANKS[key] = ProfileBank(space)
    return _BANKS[key]


def clear_profile_cache() -> None:
    """Forget the layer profiles computed so far (benchmarks that time a cold start)."""
    _BANKS.clear()


def layer_profile(space: SearchSpace, arch: Mapping[str, Any]) -> LayerProfile:
    """The cached layer profile of ``arch`` (one forward pass the first time)."""
    return profile_bank(space).get(space.arch_id(arch))


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
    """A roofline-model device (see the module doc). SIMULATED: deterministic per (device, arch)."""

    kind = "simulated"
    deterministic = True
    simulated = True  # its latencies come from a model, not from hardware (the MLflow tag ``simulated``)

    def __init__(self, seed: int, space: SearchSpace) -> None:
        if seed < 0:
            raise DeviceError(f"simulated device seed must be >= 0, got {seed}; name devices sim:0, sim:1, ...")
        self.seed = seed
        self.name = f"{PREFIX}{seed}"
        self.space = space
        self.hardware = draw_hardware(seed)

    def _noise(self, arch_ids: Sequence[str]) -> np.ndarray:
        """The log-normal factor per architecture: a standard normal drawn from a hash of (device, arch)."""
        from scipy.special import ndtri

        u = np.array([int.from_bytes(hashlib.blake2b(f"{self.seed}|{a}".encode(), digest_size=8).digest(), "little")
                      for a in arch_ids], dtype=np.float64)
        return np.exp(self.hardware.noise * ndtri((u + 0.5) / 2.0**64))

    def latency_ms(self, arch_ids: Sequence[str]) -> np.ndarray:
        ids = list(arch_ids)
        if not ids:
            return np.zeros(0)
        p, starts = profile_bank(self.space).stacked(ids)
        return self.latency_of_profiles(p, starts, ids)

    def latency_of_profiles(self, p: LayerProfile, starts: np.ndarray, arch_ids: Sequence[str]) -> np.ndarray:
        """Latency (ms) of architectures whose stacked layers are ``p`` (see ProfileBank.stacked)."""
        hw = self.hardware
        compute = p.flops / (hw.peak_gflops * 1e9 * hw.efficiency[p.types])
        memory = p.bytes / (hw.bandwidth_gbs * 1e9)
        t = np.maximum(compute, memory) + hw.launch_us[p.types] * 1e-6
        if hw.fuses_elementwise:
            t = np.where(p.types == _T["elementwise"], 0.0, t)
        return 1e3 * np.add.reduceat(t, starts) * self._noise(arch_ids)

    def truth(self, arch_ids: Sequence[str]) -> np.ndarray:
        return self.latency_ms(arch_ids)

    def domain(self) -> None:
        return None

    def cluster_resources(self) -> dict[str, float]:
        return {}

    def spec(self) -> DeviceSpec:
        return DeviceSpec(name=self.name)

    def close(self) -> None:
        pass

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        a = self.space.arch_id(arch)
        v = float(self.latency_ms([a])[0])
        return LatencySample(arch=a, median_ms=v, cv=0.0, repeats=1, p10_ms=v, p90_ms=v)

    def measure_many(self, archs: Iterable[Mapping[str, Any]], progress: Any = None) -> list[LatencySample]:
        return [self.measure(a) for a in archs]


def _build(name: str, space: SearchSpace, options: Any) -> SimulatedDevice:
    return SimulatedDevice(parse_simulated(PREFIX + name), space)


PREFIXES.add(PREFIX, DeviceType("simulated", NoOptions, _build, pattern="sim:<n>",
                                help="SIMULATED roofline device number n (for sweeps at scale; not a measurement)"))


def parse_simulated(name: str) -> int:
    """The seed of ``sim:<n>``; a clear error otherwise."""
    tail = name[len(PREFIX):]
    if not name.startswith(PREFIX) or not tail.isdigit():
        raise DeviceError(f"{name!r} is not a simulated device name; write sim:<n> with n a non-negative integer")
    return int(tail)
