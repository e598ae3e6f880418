"""Elastic MobileNetV3 space (Once-for-All style).

Five stages of inverted-residual blocks after a fixed stem; per stage a depth
in {2, 3, 4}, per block a depthwise kernel size in {3, 5, 7} and an expand ratio
in {3, 4, 6}. Width multiplier and input resolution are space-level settings.
Stage widths, strides, activations (ReLU / hard-swish) and squeeze-excite
placement follow MobileNetV3-Large as used by OFA (Cai et al., ICLR 2020).

An architecture is ``{"d": [5 depths], "ks": [[k per block] per stage],
"e": [[e per block] per stage]}`` (inner lists have the stage's depth). Its id
is compact and readable: stages joined by ``|``, blocks by ``-``::

    k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from search_spaces.base import SPACES, Arch, SpaceSpec
from search_spaces.errors import ArchError, SpaceError

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
N_STAGES = 5
MAX_DEPTH = max(DEPTHS)

# MobileNetV3-Large stages as in OFA: (width, stride, activation, squeeze-excite)
STAGES: tuple[tuple[int, int, str, bool], ...] = (
    (24, 2, "relu", False),
    (40, 2, "relu", True),
    (80, 2, "hswish", False),
    (112, 1, "hswish", True),
    (160, 2, "hswish", True),
)
STEM_WIDTH = 16
FINAL_EXPAND = 6  # final 1x1 expansion: last stage width x 6 (960 at width 1.0)
FEATURE_DIM = 1280


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (as in MobileNet)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@SPACES.register("mobilenetv3", help="OFA-style elastic MobileNetV3: depth {2,3,4}, kernel {3,5,7}, expand {3,4,6}")
class MobileNetV3Space:
    """The elastic MobileNetV3 space; ``width_mult`` and ``resolution`` are fixed per space."""

    name = "mobilenetv3"

    def __init__(self, width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 feature_dim: int | None = None, in_channels: int = 3, dropout: float = 0.0) -> None:
        problems = []
        if not 0.1 <= width_mult <= 4.0:
            problems.append(f"width_mult must be in [0.1, 4], got {width_mult}")
        if resolution < 32 or resolution % 32:
            problems.append(f"resolution must be a multiple of 32 and >= 32 (the network's stride), got {resolution}")
        if num_classes < 2:
            problems.append(f"num_classes must be >= 2, got {num_classes}")
        if feature_dim is not None and feature_dim < 8:
            problems.append(f"feature_dim must be >= 8, got {feature_dim}")
        if problems:
            raise SpaceError("MobileNetV3 space: " + "; ".join(problems))
        self.width_mult = float(width_mult)
        self.resolution = int(resolution)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.dropout = float(dropout)
        self.stem_width = make_divisible(STEM_WIDTH * width_mult)
        self.stage_widths = [make_divisible(w * width_mult) for w, *_ in STAGES]
        self.final_width = make_divisible(STAGES[-1][0] * FINAL_EXPAND * width_mult)
        self.feature_dim = feature_dim or (make_divisible(FEATURE_DIM * width_mult) if width_mult > 1 else FEATURE_DIM)

    def spec(self) -> SpaceSpec:
        """Everything that rebuilds this space (``spec().build()``), e.g. in a Ray actor."""
        return SpaceSpec(name=self.name, options={
            "width_mult": self.width_mult, "resolution": self.resolution, "num_classes": self.num_classes,
            "feature_dim": self.feature_dim, "in_channels": self.in_channels, "dropout": self.dropout})

    # -- identity -----------------------------------------------------------
    @property
    def size(self) -> int:
        per_stage = sum((len(KERNELS) * len(EXPANDS)) ** d for d in DEPTHS)
        return per_stage**N_STAGES

    @property
    def encoding_size(self) -> int:
        return N_STAGES * (len(DEPTHS) + MAX_DEPTH * (len(KERNELS) + len(EXPANDS)))

    def validate(self, arch: Mapping[str, Any]) -> tuple[list[int], list[list[int]], list[list[int]]]:
        if not isinstance(arch, Mapping) or set(arch) != {"d", "ks", "e"}:
            raise ArchError(f"a MobileNetV3 architecture is {{'d': [...], 'ks': [[...]], 'e': [[...]]}}, got {arch!r}")
        d, ks, e = list(arch["d"]), [list(s) for s in arch["ks"]], [list(s) for s in arch["e"]]
        problems = []
        if len(d) != N_STAGES or len(ks) != N_STAGES or len(e) != N_STAGES:
            raise ArchError(f"a MobileNetV3 architecture has {N_STAGES} stages in d, ks and e; got "
                            f"{len(d)}, {len(ks)}, {len(e)}")
        for s in range(N_STAGES):
            if d[s] not in DEPTHS:
                problems.append(f"stage {s}: depth {d[s]!r} not in {DEPTHS}")
                continue
            if len(ks[s]) != d[s] or len(e[s]) != d[s]:
                problems.append(f"stage {s}: depth {d[s]} but {len(ks[s])} kernels and {len(e[s])} expand ratios")
            problems += [f"stage {s}: kernel {k!r} not in {KERNELS}" for k in ks[s] if k not in KERNELS]
            problems += [f"stage {s}: expand ratio {x!r} not in {EXPANDS}" for x in e[s] if x not in EXPANDS]
        if problems:
            raise ArchError("invalid MobileNetV3 architecture: " + "; ".join(problems))
        return [int(v) for v in d], [[int(v) for v in s] for s in ks], [[int(v) for v in s] for s in e]

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        _, ks, e = self.validate(arch)
        return "|".join("-".join(f"k{k}e{x}" for k, x in zip(ks[s], e[s], strict=True)) for s in range(N_STAGES))

    def parse(self, arch_id: str) -> Arch:
        example = "k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3"
        if not isinstance(arch_id, str):
            raise ArchError(f"a MobileNetV3 arch id is text, got {type(arch_id).__name__}")
        stages = arch_id.strip().split("|")
        if len(stages) != N_STAGES:
            raise ArchError(f"malformed MobileNetV3 arch {arch_id!r}: expected {N_STAGES} stages joined by '|', "
                            f"got {len(stages)}; example: {example}")
        d, ks, e = [], [], []
        for s, stage in enumerate(stages):
            blocks = stage.split("-")
            kk, ee = [], []
            for b in blocks:
                k, sep, x = b.removeprefix("k").partition("e")
                if not b.startswith("k") or not sep or not k.isdigit() or not x.isdigit():
                    raise ArchError(f"malformed MobileNetV3 arch {arch_id!r}: block {b!r} of stage {s} must be "
                                    f"'k<kernel>e<expand>'; example: {example}")
                kk.append(int(k))
                ee.append(int(x))
            d.append(len(blocks))
            ks.append(kk)
            e.append(ee)
        arch = {"d": d, "ks": ks, "e": e}
        self.validate(arch)
        return arch

    # -- sampling -------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        d = [int(rng.choice(DEPTHS)) for _ in range(N_STAGES)]
        return {
            "d": d,
            "ks": [[int(rng.choice(KERNELS)) for _ in range(n)] for n in d],
            "e": [[int(rng.choice(EXPANDS)) for _ in range(n)] for n in d],
        }

    def uniform(self, depth: int, kernel: int, expand: int) -> Arch:
        return {"d": [depth] * N_STAGES, "ks": [[kernel] * depth for _ in range(N_STAGES)],
                "e": [[expand] * depth for _ in range(N_STAGES)]}

    def largest(self) -> Arch:
        return self.uniform(max(DEPTHS), max(KERNELS), max(EXPANDS))

    def smallest(self) -> Arch:
        return self.uniform(min(DEPTHS), min(KERNELS), min(EXPANDS))

    # -- encodings and Optuna -----------------------------------------------
    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """Per stage: one-hot depth (3), then per block slot one-hot kernel (3) and
        expand (3), zeros for slots beyond the stage's depth. Length 135."""
        d, ks, e = self.validate(arch)
        x = np.zeros(self.encoding_size, dtype=np.float32)
        per_stage = len(DEPTHS) + MAX_DEPTH * (len(KERNELS) + len(EXPANDS))
        for s in range(N_STAGES):
            base = s * per_stage
            x[base + DEPTHS.index(d[s])] = 1.0
            for b in range(d[s]):
                slot = base + len(DEPTHS) + b * (len(KERNELS) + len(EXPANDS))
                x[slot + KERNELS.index(ks[s][b])] = 1.0
                x[slot + len(KERNELS) + EXPANDS.index(e[s][b])] = 1.0
        return x

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        out: dict[str, Any] = {}
        for s in range(N_STAGES):
            out[f"s{s}_depth"] = CategoricalDistribution(list(DEPTHS))
            for b in range(MAX_DEPTH):
                out[f"s{s}_b{b}_kernel"] = CategoricalDistribution(list(KERNELS))
                out[f"s{s}_b{b}_expand"] = CategoricalDistribution(list(EXPANDS))
        return out

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna parameters of ``arch`` (slots beyond a stage's depth get the first choice: unused)."""
        d, ks, e = self.validate(arch)
        out: dict[str, Any] = {}
        for s in range(N_STAGES):
            out[f"s{s}_depth"] = d[s]
            for b in range(MAX_DEPTH):
                out[f"s{s}_b{b}_kernel"] = ks[s][b] if b < d[s] else KERNELS[0]
                out[f"s{s}_b{b}_expand"] = e[s][b] if b < d[s] else EXPANDS[0]
        return out

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        try:
            d = [int(params[f"s{s}_depth"]) for s in range(N_STAGES)]
            arch = {
                "d": d,
                "ks": [[int(params[f"s{s}_b{b}_kernel"]) for b in range(d[s])] for s in range(N_STAGES)],
                "e": [[int(params[f"s{s}_b{b}_expand"]) for b in range(d[s])] for s in range(N_STAGES)],
            }
        except KeyError as err:
            raise ArchError(f"MobileNetV3 params lack {err.args[0]!r}; expected keys like 's0_depth', "
                            f"'s0_b0_kernel', 's0_b0_expand'") from None
        self.validate(arch)
        return arch

    # -- networks -------------------------------------------------------------
    def stage_specs(self) -> list[tuple[int, int, str, bool]]:
        """(width, stride, activation, squeeze-excite) per stage, after the width multiplier."""
        return [(w, s, act, se) for w, (_, s, act, se) in zip(self.stage_widths, STAGES, strict=True)]

    def build(self, arch: Mapping[str, Any]) -> Any:
        """A standalone MobileNetV3 for ``arch`` as this space is configured (randomly initialised)."""
        from search_spaces.mobilenet_torch import MobileNetV3

        d, ks, e = self.validate(arch)
        return MobileNetV3(self, d, ks, e)

    def build_supernet(self) -> Any:
        from search_spaces.mobilenet_torch import ElasticMobileNetV3

        return ElasticMobileNetV3(self)

    def extract(self, supernet: Any, arch: Mapping[str, Any]) -> Any:
        """A standalone network for ``arch`` with weights copied from ``supernet``."""
        from search_spaces.mobilenet_torch import extract

        return extract(self, supernet, arch)

    def input_shape(self, batch_size: int = 1) -> tuple[int, int, int, int]:
        """The input of the configured network: ``(batch_size, in_channels, resolution, resolution)``."""
        return (batch_size, self.in_channels, self.resolution, self.resolution)
