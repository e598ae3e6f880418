"""Elastic MobileNetV3 space (Once-for-All style).

Five stages of inverted-residual blocks after a fixed stem; per stage a depth
in {2, 3, 4}, per block a depthwise kernel size in {3, 5, 7} and an expand ratio
in {3, 4, 6}. The width multiplier is a space-level setting; the input resolution is
one too (``resolution``), unless the space option ``resolutions`` makes it a searchable dimension, as in
OFA's elastic resolution (``resolutions="ofa"``: 128 to 224 px in OFA's steps of 4).
Stage widths, strides, activations (ReLU / hard-swish) and squeeze-excite
placement follow MobileNetV3-Large as used by OFA (Cai et al., ICLR 2020).

An architecture is ``{"d": [5 depths], "ks": [[k per block] per stage],
"e": [[e per block] per stage]}`` (inner lists have the stage's depth). Its id
is compact and readable: stages joined by ``|``, blocks by ``-``::

    k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3

With elastic resolution the architecture also holds ``"r"`` (its input resolution in pixels, one of the
space's ``resolutions``) and its id ends with ``@<r>``::

    k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3@160

``parse`` also reads OFA's own subnet form (JSON with flat ``ks``/``e`` lists of 20 slots, four per stage,
``d`` per stage and ``r`` or ``image_size``), as in HELP's and OFA's released tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
DEFAULT_RESOLUTION = 224
# OFA's elastic resolution: training crops from 128 to 224 px in steps of 4 (its data loader's IMAGE_SIZE_SEG,
# continuous sizes), the grid its accuracy dataset and HELP's latency table use
OFA_RESOLUTION_STEP = 4
OFA_RESOLUTIONS: tuple[int, ...] = tuple(range(128, 224 + 1, OFA_RESOLUTION_STEP))
MIN_RESOLUTION = 32  # the network's stride
MAX_RESOLUTION = 1024


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (as in MobileNet)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _resolutions(value: Sequence[int] | str | None) -> tuple[tuple[int, ...] | None, list[str]]:
    """The sorted elastic resolutions of the option ``resolutions`` (None: fixed), and its problems."""
    if value is None:
        return None, []
    if isinstance(value, str):
        if value.strip().lower() == "ofa":
            return OFA_RESOLUTIONS, []
        return None, [f"resolutions {value!r}: give a list of input resolutions in pixels (e.g. [128, 160, 192, "
                      f"224]) or 'ofa' (OFA's {OFA_RESOLUTIONS[0]}-{OFA_RESOLUTIONS[-1]} in steps of "
                      f"{OFA_RESOLUTION_STEP})"]
    try:
        values = list(value)
    except TypeError:
        return None, [f"resolutions must be a list of input resolutions in pixels or 'ofa', got {value!r}"]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int | np.integer)
           or not MIN_RESOLUTION <= int(v) <= MAX_RESOLUTION]
    if bad:
        return None, [f"resolutions {bad} are not whole numbers of pixels in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]"]
    out = tuple(sorted({int(v) for v in values}))
    if len(out) < 2:
        return None, [f"resolutions {values} has fewer than 2 distinct values; for one resolution set "
                      f"'resolution' instead"]
    return out, []


@SPACES.register("mobilenetv3", help="OFA-style elastic MobileNetV3: depth {2,3,4}, kernel {3,5,7}, expand {3,4,6}"
                 "; optionally elastic input resolution (resolutions)")
class MobileNetV3Space:
    """The elastic MobileNetV3 space; ``width_mult`` is fixed per space, the input resolution too unless
    ``resolutions`` lists several (then each architecture carries its own, ``"r"``)."""

    name = "mobilenetv3"

    def __init__(self, width_mult: float = 1.0, resolution: int | None = None, num_classes: int = 1000,
                 feature_dim: int | None = None, in_channels: int = 3, dropout: float = 0.0,
                 resolutions: Sequence[int] | str | None = None) -> None:
        problems = []
        if not 0.1 <= width_mult <= 4.0:
            problems.append(f"width_mult must be in [0.1, 4], got {width_mult}")
        elastic, res_problems = _resolutions(resolutions)
        problems += res_problems
        if elastic is not None:
            if resolution is not None and resolution != max(elastic):
                problems.append(f"resolution {resolution} with resolutions {list(elastic)}: with elastic resolution "
                                f"the space's resolution is the largest ({max(elastic)}); drop 'resolution'")
            resolution = max(elastic)
        elif resolution is None:
            resolution = DEFAULT_RESOLUTION
        elif resolution < MIN_RESOLUTION or resolution % 32:
            problems.append(f"resolution must be a multiple of 32 and >= 32 (the network's stride), got {resolution}")
        if num_classes < 2:
            problems.append(f"num_classes must be >= 2, got {num_classes}")
        if feature_dim is not None and feature_dim < 8:
            problems.append(f"feature_dim must be >= 8, got {feature_dim}")
        if problems:
            raise SpaceError("MobileNetV3 space: " + "; ".join(problems))
        self.width_mult = float(width_mult)
        self.resolution = int(resolution)
        self.resolutions: tuple[int, ...] | None = elastic
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.dropout = float(dropout)
        self.stem_width = make_divisible(STEM_WIDTH * width_mult)
        self.stage_widths = [make_divisible(w * width_mult) for w, *_ in STAGES]
        self.final_width = make_divisible(STAGES[-1][0] * FINAL_EXPAND * width_mult)
        self.feature_dim = feature_dim or (make_divisible(FEATURE_DIM * width_mult) if width_mult > 1 else FEATURE_DIM)

    @property
    def elastic_resolution(self) -> bool:
        """Whether the input resolution is searched (each architecture has its own ``"r"``)."""
        return self.resolutions is not None

    def spec(self) -> SpaceSpec:
        """Everything that rebuilds this space (``spec().build()``), e.g. in a Ray actor. A fixed-resolution
        space's spec has no ``resolutions`` key (the same spec, and cache key, as before the option existed)."""
        options: dict[str, Any] = {
            "width_mult": self.width_mult, "resolution": self.resolution, "num_classes": self.num_classes,
            "feature_dim": self.feature_dim, "in_channels": self.in_channels, "dropout": self.dropout}
        if self.resolutions is not None:
            options["resolutions"] = list(self.resolutions)
        return SpaceSpec(name=self.name, options=options)

    # -- identity -----------------------------------------------------------
    @property
    def size(self) -> int:
        per_stage = sum((len(KERNELS) * len(EXPANDS)) ** d for d in DEPTHS)
        return per_stage**N_STAGES * (len(self.resolutions) if self.resolutions else 1)

    @property
    def encoding_size(self) -> int:
        return N_STAGES * (len(DEPTHS) + MAX_DEPTH * (len(KERNELS) + len(EXPANDS))) + len(self.resolutions or ())

    def _check_resolution(self, r: Any, where: str) -> int:
        if self.resolutions is None:
            raise ArchError(f"{where}: this space's input resolution is fixed ({self.resolution} px), so an "
                            f"architecture names none; set the space option 'resolutions' to search it")
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or int(r) not in self.resolutions:
            raise ArchError(f"{where}: input resolution {r!r} is not one of this space's resolutions "
                            f"{list(self.resolutions)}")
        return int(r)

    def validate(self, arch: Mapping[str, Any]) -> tuple[list[int], list[list[int]], list[list[int]]]:
        """(depths, kernels, expand ratios) of ``arch``; ArchError naming every problem. An elastic-resolution
        space also requires ``"r"`` (:meth:`resolution_of`), a fixed one refuses it."""
        keys = {"d", "ks", "e", "r"} if self.resolutions is not None else {"d", "ks", "e"}
        if not isinstance(arch, Mapping) or set(arch) != keys:
            form = "{'d': [...], 'ks': [[...]], 'e': [[...]]" + (", 'r': <px>}" if self.resolutions else "}")
            hint = ""
            if isinstance(arch, Mapping) and set(arch) ^ keys == {"r"}:
                hint = ("; this space searches the input resolution: add 'r', one of "
                        f"{list(self.resolutions)}" if self.resolutions else
                        f"; this space's input resolution is fixed ({self.resolution} px): drop 'r', or set the "
                        f"space option 'resolutions' to search it")
            raise ArchError(f"a MobileNetV3 architecture is {form}, got {arch!r}{hint}")
        d, ks, e = list(arch["d"]), [list(s) for s in arch["ks"]], [list(s) for s in arch["e"]]
        problems = []
        if len(d) != N_STAGES or len(ks) != N_STAGES or len(e) != N_STAGES:
            raise ArchError(f"a MobileNetV3 architecture has {N_STAGES} stages in d, ks and e; got "
                            f"{len(d)}, {len(ks)}, {len(e)}")
        if self.resolutions is not None:
            self._check_resolution(arch["r"], "invalid MobileNetV3 architecture")
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

    def resolution_of(self, arch: Mapping[str, Any]) -> int:
        """The input resolution (px) of ``arch``: its ``"r"`` with elastic resolution, else the space's."""
        self.validate(arch)
        return int(arch["r"]) if self.resolutions is not None else self.resolution

    def _with_resolution(self, arch: dict[str, Any], r: int | None) -> Arch:
        if self.resolutions is not None:
            arch["r"] = self.resolutions[-1] if r is None else int(r)
        return arch

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        _, ks, e = self.validate(arch)
        body = "|".join("-".join(f"k{k}e{x}" for k, x in zip(ks[s], e[s], strict=True)) for s in range(N_STAGES))
        return f"{body}@{int(arch['r'])}" if self.resolutions is not None else body

    def parse(self, arch_id: str) -> Arch:
        """The architecture of ``arch_id`` (this space's id, or OFA's JSON subnet form); ArchError naming the
        part that is wrong and showing the expected form."""
        example = "k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3"
        if self.resolutions is not None:
            example += f"@{self.resolutions[-1]}"
        if not isinstance(arch_id, str):
            raise ArchError(f"a MobileNetV3 arch id is text, got {type(arch_id).__name__}")
        text = arch_id.strip()
        if text.startswith("{"):
            return self._parse_ofa(text)
        body, at, res = text.partition("@")
        r: int | None = None
        if at:
            if not res.strip().isdigit():
                raise ArchError(f"malformed MobileNetV3 arch {arch_id!r}: the input resolution after '@' must be "
                                f"a whole number of pixels, got {res!r}; example: {example}")
            r = self._check_resolution(int(res), f"MobileNetV3 arch {arch_id!r}")
        elif self.resolutions is not None:
            raise ArchError(f"malformed MobileNetV3 arch {arch_id!r}: no input resolution; this space searches it: "
                            f"end the id with '@<px>', one of {list(self.resolutions)}; example: {example}")
        stages = body.split("|")
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
        arch = self._with_resolution({"d": d, "ks": ks, "e": e}, r)
        self.validate(arch)
        return arch

    def _parse_ofa(self, text: str) -> Arch:
        """OFA's subnet setting ``{"ks": [20], "e": [20], "d": [5], "r": px}`` (``image_size`` for ``r``; slots
        beyond a stage's depth are ignored, as OFA does)."""
        slots = N_STAGES * MAX_DEPTH
        where = f"OFA subnet {text[:80]!r}{'...' if len(text) > 80 else ''}"
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ArchError(f"{where}: not valid JSON ({err}); OFA's form is "
                            f'{{"ks": [{slots} kernels], "e": [{slots} expand ratios], "d": [{N_STAGES} depths], '
                            f'"r": <px>}}') from None
        if not isinstance(raw, dict) or not {"ks", "e", "d"} <= set(raw):
            raise ArchError(f"{where}: an OFA subnet has keys 'ks', 'e', 'd' (and 'r' or 'image_size')")
        unknown = sorted(set(raw) - {"ks", "e", "d", "r", "image_size", "w"})
        if unknown:
            raise ArchError(f"{where}: unknown key(s) {unknown}; an OFA subnet has 'ks', 'e', 'd', 'r'")
        ks, e, d = raw["ks"], raw["e"], raw["d"]
        for key, v, n in (("ks", ks, slots), ("e", e, slots), ("d", d, N_STAGES)):
            if not isinstance(v, list) or len(v) != n:
                raise ArchError(f"{where}: '{key}' must be a list of {n} numbers, got "
                                f"{len(v) if isinstance(v, list) else type(v).__name__}")
        if any(x not in DEPTHS for x in d):
            raise ArchError(f"{where}: 'd' {d} has a depth outside {DEPTHS}")
        r_raw = raw.get("r", raw.get("image_size"))
        r: int | None = None
        if r_raw is not None:
            if self.resolutions is None:
                if r_raw != self.resolution:
                    raise ArchError(f"{where}: input resolution {r_raw!r}, but this space's is fixed at "
                                    f"{self.resolution} px; set the space option 'resolutions' to search it")
            else:
                r = self._check_resolution(r_raw, where)
        elif self.resolutions is not None:
            raise ArchError(f"{where}: no input resolution ('r'); this space searches it, one of "
                            f"{list(self.resolutions)}")
        arch = {"d": [int(x) for x in d],
                "ks": [[int(k) for k in ks[s * MAX_DEPTH: s * MAX_DEPTH + d[s]]] for s in range(N_STAGES)],
                "e": [[int(x) for x in e[s * MAX_DEPTH: s * MAX_DEPTH + d[s]]] for s in range(N_STAGES)]}
        arch = self._with_resolution(arch, r)
        self.validate(arch)
        return arch

    # -- sampling -------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniform draw; the resolution (elastic only) is drawn last, so a fixed space's draws are unchanged."""
        d = [int(rng.choice(DEPTHS)) for _ in range(N_STAGES)]
        arch = {
            "d": d,
            "ks": [[int(rng.choice(KERNELS)) for _ in range(n)] for n in d],
            "e": [[int(rng.choice(EXPANDS)) for _ in range(n)] for n in d],
        }
        if self.resolutions is not None:
            arch["r"] = int(rng.choice(self.resolutions))
        return arch

    def uniform(self, depth: int, kernel: int, expand: int, resolution: int | None = None) -> Arch:
        """Every stage at ``depth``, every block (``kernel``, ``expand``); elastic: at ``resolution``
        (default the largest)."""
        return self._with_resolution({"d": [depth] * N_STAGES, "ks": [[kernel] * depth for _ in range(N_STAGES)],
                                      "e": [[expand] * depth for _ in range(N_STAGES)]}, resolution)

    def largest(self) -> Arch:
        return self.uniform(max(DEPTHS), max(KERNELS), max(EXPANDS))

    def smallest(self) -> Arch:
        return self.uniform(min(DEPTHS), min(KERNELS), min(EXPANDS),
                            None if self.resolutions is None else self.resolutions[0])

    # -- encodings and Optuna -----------------------------------------------
    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """Per stage: one-hot depth (3), then per block slot one-hot kernel (3) and
        expand (3), zeros for slots beyond the stage's depth (length 135); with elastic resolution a one-hot
        of the resolution follows (length 135 + len(resolutions))."""
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
        if self.resolutions is not None:
            x[N_STAGES * per_stage + self.resolutions.index(int(arch["r"]))] = 1.0
        return x

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        out: dict[str, Any] = {}
        for s in range(N_STAGES):
            out[f"s{s}_depth"] = CategoricalDistribution(list(DEPTHS))
            for b in range(MAX_DEPTH):
                out[f"s{s}_b{b}_kernel"] = CategoricalDistribution(list(KERNELS))
                out[f"s{s}_b{b}_expand"] = CategoricalDistribution(list(EXPANDS))
        if self.resolutions is not None:
            out["resolution"] = CategoricalDistribution(list(self.resolutions))
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
        if self.resolutions is not None:
            out["resolution"] = int(arch["r"])
        return out

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        try:
            d = [int(params[f"s{s}_depth"]) for s in range(N_STAGES)]
            arch = {
                "d": d,
                "ks": [[int(params[f"s{s}_b{b}_kernel"]) for b in range(d[s])] for s in range(N_STAGES)],
                "e": [[int(params[f"s{s}_b{b}_expand"]) for b in range(d[s])] for s in range(N_STAGES)],
            }
            if self.resolutions is not None:
                arch["r"] = int(params["resolution"])
        except KeyError as err:
            raise ArchError(f"MobileNetV3 params lack {err.args[0]!r}; expected keys like 's0_depth', "
                            f"'s0_b0_kernel', 's0_b0_expand'"
                            + (", 'resolution'" if self.resolutions is not None else "")) from None
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

    def input_shape(self, batch_size: int = 1, arch: Mapping[str, Any] | None = None) -> tuple[int, int, int, int]:
        """The input of the configured network: ``(batch_size, in_channels, r, r)`` with ``r`` the resolution of
        ``arch`` (elastic resolution), else the space's (with elastic resolution: the largest)."""
        r = self.resolution if arch is None else self.resolution_of(arch)
        return (batch_size, self.in_channels, r, r)
