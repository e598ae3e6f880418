"""The FBNet layer-wise space (Wu et al., CVPR 2019) as HW-NAS-Bench configures it (Li et al., ICLR 2021).

22 searchable layers in 7 stages (1, 4, 4, 4, 4, 4, 1 layers; widths 16, 24, 32, 64, 112, 184, 352), each
layer one of 9 blocks, 9**22 architectures::

    k3_e1  k3_e1_g2  k3_e3  k3_e6  k5_e1  k5_e1_g2  k5_e3  k5_e6  skip

``k`` = depthwise kernel, ``e`` = expansion of the inverted residual, ``g2`` = grouped 1x1 convolutions (two
groups, with a channel shuffle). ``skip`` is the identity, or a 1x1 conv + BN + ReLU where the layer changes
width or stride. Settings (``setting``): ``cifar`` (HW-NAS-Bench's CIFAR-100 network: stem stride 1, stage
strides 1, 1, 2, 2, 1, 2, 1, head 1504 channels, 32 x 32 input) and ``imagenet`` (FBNet's: stem stride 2,
strides 1, 2, 2, 2, 1, 2, 1, head 1984, 224 x 224). Source: HW-NAS-Bench's ``FBNet_Infer`` and
``fbnet_get_metrics`` (GATECH-EIC/HW-NAS-Bench, MIT).

An architecture is ``{"ops": [22 block names]}``; its id is the names joined by ``-``. ``parse`` also takes
HW-NAS-Bench's op-index list (``7-8-1-...`` or ``[7, 8, 1, ...]``: indices into the block list above).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from search_spaces.base import SPACES, Arch, SpaceSpec
from search_spaces.errors import ArchError, SpaceError

BLOCKS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
# block -> (kernel, expansion, groups); skip has none
BLOCK_SPEC: dict[str, tuple[int, int, int]] = {
    "k3_e1": (3, 1, 1), "k3_e1_g2": (3, 1, 2), "k3_e3": (3, 3, 1), "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1), "k5_e1_g2": (5, 1, 2), "k5_e3": (5, 3, 1), "k5_e6": (5, 6, 1),
}
STAGE_LAYERS: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
STAGE_WIDTHS: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
STEM_WIDTH = 16
SETTINGS: dict[str, dict[str, Any]] = {
    "cifar": {"stem_stride": 1, "strides": (1, 1, 2, 2, 1, 2, 1), "head": 1504, "resolution": 32},
    "imagenet": {"stem_stride": 2, "strides": (1, 2, 2, 2, 1, 2, 1), "head": 1984, "resolution": 224},
}
N_LAYERS = sum(STAGE_LAYERS)
_INDEX = {b: i for i, b in enumerate(BLOCKS)}
EXAMPLE = "-".join(["k3_e1"] * 11 + ["skip"] * 11)


def _even(c: float) -> int:
    """A width at least 2 and even (the grouped blocks split channels in two)."""
    return max(2, 2 * round(c / 2))


@SPACES.register("fbnet", help="FBNet layer-wise space (HW-NAS-Bench CIFAR-100 setting): 22 layers x 9 blocks")
class FBNetSpace:
    """The FBNet space. ``width_mult`` scales every width (1.0 is HW-NAS-Bench's network; smaller ones make a
    cheap supernet proxy)."""

    name = "fbnet"
    blocks = BLOCKS

    def __init__(self, num_classes: int = 100, setting: str = "cifar", resolution: int | None = None,
                 width_mult: float = 1.0, in_channels: int = 3) -> None:
        problems = []
        if setting not in SETTINGS:
            raise SpaceError(f"FBNet space: unknown setting {setting!r}; valid: {', '.join(SETTINGS)}")
        cfg = SETTINGS[setting]
        res = int(cfg["resolution"] if resolution is None else resolution)
        stride = cfg["stem_stride"] * int(np.prod(cfg["strides"]))
        if num_classes < 2:
            problems.append(f"num_classes must be >= 2, got {num_classes}")
        if res < stride or res % stride:
            problems.append(f"resolution must be a positive multiple of {stride} (the network's stride in the "
                            f"{setting} setting), got {res}")
        if not 0.05 <= width_mult <= 4.0:
            problems.append(f"width_mult must be in [0.05, 4], got {width_mult}")
        if in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {in_channels}")
        if problems:
            raise SpaceError("FBNet space: " + "; ".join(problems))
        self.num_classes = int(num_classes)
        self.setting = setting
        self.resolution = res
        self.width_mult = float(width_mult)
        self.in_channels = int(in_channels)
        self.stem_stride = int(cfg["stem_stride"])
        self.stem_width = _even(STEM_WIDTH * width_mult)
        self.head_width = _even(cfg["head"] * width_mult)
        widths = [_even(w * width_mult) for w in STAGE_WIDTHS]
        # per layer: (c_in, c_out, stride)
        self.layer_shapes: list[tuple[int, int, int]] = []
        c_in = self.stem_width
        for s, n in enumerate(STAGE_LAYERS):
            for i in range(n):
                self.layer_shapes.append((c_in, widths[s], cfg["strides"][s] if i == 0 else 1))
                c_in = widths[s]

    def spec(self) -> SpaceSpec:
        """Everything that rebuilds this space (``spec().build()``)."""
        return SpaceSpec(name=self.name, options={
            "num_classes": self.num_classes, "setting": self.setting, "resolution": self.resolution,
            "width_mult": self.width_mult, "in_channels": self.in_channels})

    # -- identity -----------------------------------------------------------
    @property
    def size(self) -> int:
        return len(BLOCKS) ** N_LAYERS

    @property
    def encoding_size(self) -> int:
        return N_LAYERS * len(BLOCKS)

    @property
    def n_layers(self) -> int:
        return N_LAYERS

    def choices(self) -> list[tuple[str, ...]]:
        """The choices of every layer (a layer-wise space: what DNAS and the MILP see)."""
        return [BLOCKS] * N_LAYERS

    def validate(self, arch: Mapping[str, Any]) -> list[str]:
        if not isinstance(arch, Mapping) or set(arch) != {"ops"}:
            raise ArchError(f"an FBNet architecture is {{'ops': [{N_LAYERS} block names]}}, got {arch!r}")
        ops = list(arch["ops"])
        if len(ops) != N_LAYERS:
            raise ArchError(f"an FBNet architecture has {N_LAYERS} layers, got {len(ops)}")
        for i, op in enumerate(ops):
            if op not in _INDEX:
                raise ArchError(f"FBNet layer {i}: unknown block {op!r}; valid blocks: {', '.join(BLOCKS)}")
        return ops

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        return "-".join(self.validate(arch))

    def parse(self, arch_id: str) -> Arch:
        """Parse ``k3_e1-skip-...`` (22 block names) or HW-NAS-Bench's op indices (``7-8-1-...``,
        ``[7, 8, 1, ...]``); raises ArchError naming the layer and what is wrong."""
        if isinstance(arch_id, (list, tuple)):
            tokens = [str(t) for t in arch_id]
        elif isinstance(arch_id, str):
            s = arch_id.strip()
            if s.startswith("[") and s.endswith("]"):
                s = s[1:-1]
            sep = "," if "," in s else "-"
            tokens = [t.strip() for t in s.split(sep)]
        else:
            raise ArchError(f"an FBNet arch id is text, got {type(arch_id).__name__}: {arch_id!r}")
        if len(tokens) != N_LAYERS:
            raise ArchError(f"malformed FBNet arch {arch_id!r}: expected {N_LAYERS} blocks joined by '-', got "
                            f"{len(tokens)}; example: {EXAMPLE}")
        indices = all(t.isdigit() for t in tokens)
        ops = []
        for i, t in enumerate(tokens):
            if indices:
                if int(t) >= len(BLOCKS):
                    raise ArchError(f"malformed FBNet arch {arch_id!r}: layer {i}: op index {t} out of range "
                                    f"0..{len(BLOCKS) - 1}")
                ops.append(BLOCKS[int(t)])
            elif t in _INDEX:
                ops.append(t)
            else:
                raise ArchError(f"malformed FBNet arch {arch_id!r}: layer {i}: unknown block {t!r}; valid blocks: "
                                f"{', '.join(BLOCKS)} (or op indices 0..{len(BLOCKS) - 1} for every layer)")
        return {"ops": ops}

    def op_indices(self, arch: Mapping[str, Any]) -> list[int]:
        """HW-NAS-Bench's ``op_idx_list`` of ``arch``."""
        return [_INDEX[op] for op in self.validate(arch)]

    # -- sampling -------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        return {"ops": [BLOCKS[i] for i in rng.integers(0, len(BLOCKS), size=N_LAYERS)]}

    def largest(self) -> Arch:
        return {"ops": ["k5_e6"] * N_LAYERS}

    def smallest(self) -> Arch:
        return {"ops": ["skip"] * N_LAYERS}

    # -- encodings and Optuna -----------------------------------------------
    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """One-hot block per layer: float32, length 22 x 9 = 198 (layer-major). A lookup table is exactly
        linear in it."""
        x = np.zeros(self.encoding_size, dtype=np.float32)
        for i, op in enumerate(self.validate(arch)):
            x[i * len(BLOCKS) + _INDEX[op]] = 1.0
        return x

    def encoding_groups(self) -> np.ndarray:
        """Coarse groups of encoding features (rows): per block, its count over all layers (9), then per
        stage and block (7 x 9). Transfer shares strength through them when few target samples exist."""
        width = len(BLOCKS)
        stage_of = [s for s, n in enumerate(STAGE_LAYERS) for _ in range(n)]
        g = np.zeros((width * (1 + len(STAGE_LAYERS)), self.encoding_size), dtype=np.float32)
        for layer, stage in enumerate(stage_of):
            for b in range(width):
                g[b, layer * width + b] = 1.0
                g[width * (1 + stage) + b, layer * width + b] = 1.0
        return g

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {f"layer_{i:02d}": CategoricalDistribution(list(BLOCKS)) for i in range(N_LAYERS)}

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        try:
            arch = {"ops": [params[f"layer_{i:02d}"] for i in range(N_LAYERS)]}
        except KeyError as e:
            raise ArchError(f"FBNet params lack {e.args[0]!r}; expected keys layer_00 .. layer_21") from None
        self.validate(arch)
        return arch

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        return {f"layer_{i:02d}": op for i, op in enumerate(self.validate(arch))}

    # -- networks -------------------------------------------------------------
    def block_params(self, layer: int, op: str) -> int:
        """Trainable parameters of block ``op`` in ``layer`` (HW-NAS-Bench's ConvBlock / Skip)."""
        c_in, c_out, stride = self.layer_shapes[layer]
        if op == "skip":
            return 0 if stride == 1 and c_in == c_out else c_in * c_out + 2 * c_out
        k, e, g = BLOCK_SPEC[op]
        mid = c_in * e
        return (c_in // g) * mid + 2 * mid + mid * k * k + 2 * mid + (mid // g) * c_out + 2 * c_out

    def n_params(self, arch: Mapping[str, Any]) -> int:
        """Trainable parameters of ``build(arch)`` in closed form (tested equal to the built network): stem
        conv + BN, the 22 blocks, head 1x1 conv + BN, classifier."""
        ops = self.validate(arch)
        stem = self.in_channels * self.stem_width * 9 + 2 * self.stem_width
        c_last = self.layer_shapes[-1][1]
        head = c_last * self.head_width + 2 * self.head_width
        fc = self.head_width * self.num_classes + self.num_classes
        return stem + sum(self.block_params(i, op) for i, op in enumerate(ops)) + head + fc

    def build(self, arch: Mapping[str, Any]) -> Any:
        """The FBNet network for ``arch`` as HW-NAS-Bench builds it (randomly initialised)."""
        from search_spaces.fbnet_torch import FBNetNetwork

        return FBNetNetwork(self, self.validate(arch))

    def build_supernet(self) -> Any:
        """The one-shot network: every layer holds its 9 blocks; ``forward(x, arch)`` runs one per layer,
        ``forward_mixed(x, weights)`` their weighted sum (DNAS)."""
        from search_spaces.fbnet_torch import FBNetSuperNetwork

        return FBNetSuperNetwork(self)

    def extract(self, supernet: Any, arch: Mapping[str, Any]) -> Any:
        """A standalone network for ``arch`` holding copies of the supernet's weights."""
        from search_spaces.fbnet_torch import extract_fbnet

        return extract_fbnet(self, supernet, self.validate(arch))

    def input_shape(self, batch_size: int = 1) -> tuple[int, int, int, int]:
        """``(batch_size, in_channels, resolution, resolution)``."""
        return (batch_size, self.in_channels, self.resolution, self.resolution)
