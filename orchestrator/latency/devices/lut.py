"""Lookup-table devices: latency as a base plus one delta per (layer, block) choice, exact for any architecture.

A lookup table (LUT) is a CSV with columns ``layer``, ``op`` and one ``lat_ms_<device>`` column per device
(milliseconds). Its first data row is the base (``layer`` starts with ``base``, ``op`` blank): the latency of a
reference network; every other row holds one layer's block and its latency difference to the reference::

    layer,op,lat_ms_pixel3
    base_all_k3_e1,,7.788973099
    0,k3_e1,0
    0,k3_e1_g2,0.165361
    ...

The latency of an architecture is ``base + sum over layers of delta[layer, block]`` (HW-NAS-Bench's FBNet
tables; ``orchestrator/data/fbnet_lut_pixel3.csv`` is Pixel 3). The space must be layer-wise (``choices()``:
the blocks of each layer) with a layer-major one-hot encoding, so the table is exactly an additive model on the
encoding (``LutDevice.additive()``): the MILP finds its exact fronts and DNAS takes its expected latency.

Device names: ``lut:<device>`` (the column ``lat_ms_<device>``); the table is ``latency.lut: PATH`` in a
config, or the option ``path``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import Field

from orchestrator.errors import ArchError, DeviceError, TableError
from orchestrator.latency.devices.protocol import DeviceSpec, DeviceType
from orchestrator.latency.devices.registry import PREFIXES
from orchestrator.schema import Schema
from search_spaces.base import SearchSpace

PREFIX = "lut:"
COLUMN_PREFIX = "lat_ms_"


@dataclass(frozen=True)
class LookupTable:
    """``base[d] + sum_l delta[d][l, choice_l]`` for each device ``d`` (ms). ``deltas[d]``: (layers, choices)."""

    devices: list[str]
    base: dict[str, float]
    deltas: dict[str, np.ndarray]
    choices: list[tuple[str, ...]]
    source: str

    def coef(self, device: str) -> np.ndarray:
        """The deltas flattened layer-major: the additive model's coefficients on the one-hot encoding."""
        return self.deltas[self._check(device)].ravel().copy()

    def _check(self, device: str) -> str:
        if device not in self.deltas:
            raise DeviceError(f"{self.source}: no device {device!r} in the lookup table; it has "
                              f"{', '.join(self.devices)} (columns {COLUMN_PREFIX}<device>)")
        return device


def _layerwise(space: SearchSpace) -> list[tuple[str, ...]]:
    if not hasattr(space, "choices"):
        raise DeviceError(f"a lookup-table device needs a layer-wise space (one block per layer, e.g. fbnet); "
                          f"space {space.name!r} is not")
    choices = [tuple(c) for c in space.choices()]
    if sum(len(c) for c in choices) != space.encoding_size:
        raise DeviceError(f"space {space.name!r}: its encoding is not the layer-major one-hot of its choices")
    return choices


def read_lut(path: str | Path, space: SearchSpace) -> LookupTable:
    """Read and check a lookup table against ``space``: every (layer, block) exactly once, a base row, positive
    base, finite deltas. Every problem names the file, line and column."""
    path = Path(path)
    choices = _layerwise(space)
    if not path.is_file():
        raise TableError(f"{path}: no such lookup table; pass a CSV with columns layer, op, lat_ms_<device>")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["layer", "op"]:
            raise TableError(f"{path}, line 1: the header must start with 'layer,op', got {header[:2]}")
        dev_cols = [(c, h[len(COLUMN_PREFIX):]) for c, h in enumerate(header) if h.startswith(COLUMN_PREFIX)]
        if not dev_cols:
            raise TableError(f"{path}, line 1: no {COLUMN_PREFIX}<device> columns")
        names = [n for _, n in dev_cols]
        base: dict[str, float] | None = None
        deltas = {n: np.full((len(choices), max(len(c) for c in choices)), np.nan) for n in names}
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise TableError(f"{path}, line {line}: {len(row)} fields, header has {len(header)}")
            vals = []
            for c, _ in dev_cols:
                try:
                    v = float(row[c])
                except ValueError:
                    raise TableError(f"{path}, line {line}, column {header[c]!r}: {row[c]!r} is not a number "
                                     f"(milliseconds)") from None
                if not math.isfinite(v):
                    raise TableError(f"{path}, line {line}, column {header[c]!r}: {row[c]!r} is not finite")
                vals.append(v)
            layer, op = row[0].strip(), row[1].strip()
            if layer.startswith("base"):
                if base is not None:
                    raise TableError(f"{path}, line {line}: a second base row; keep one")
                if any(v <= 0 for v in vals):
                    raise TableError(f"{path}, line {line}: the base latency must be positive")
                base = dict(zip(names, vals, strict=True))
                continue
            if not layer.isdigit() or int(layer) >= len(choices):
                raise TableError(f"{path}, line {line}, column 'layer': {layer!r} is not a layer of space "
                                 f"{space.name!r} (0..{len(choices) - 1}) or the base row")
            i = int(layer)
            if op not in choices[i]:
                raise TableError(f"{path}, line {line}, column 'op': layer {i} has no block {op!r}; its blocks: "
                                 f"{', '.join(choices[i])}")
            b = choices[i].index(op)
            if not np.isnan(deltas[names[0]][i, b]):
                raise TableError(f"{path}, line {line}: layer {i} block {op!r} appears twice; keep one row")
            for n, v in zip(names, vals, strict=True):
                deltas[n][i, b] = v
    if base is None:
        raise TableError(f"{path}: no base row (layer 'base...', op blank): the latency of the reference network")
    missing = [f"{i}:{op}" for i, ch in enumerate(choices) for b, op in enumerate(ch)
               if np.isnan(deltas[names[0]][i, b])]
    if missing:
        raise TableError(f"{path}: {len(missing)} (layer, block) rows missing, e.g. {', '.join(missing[:5])}; "
                         f"every layer needs a row per block")
    width = max(len(c) for c in choices)
    if any(len(c) != width for c in choices):  # ragged: keep only each layer's own columns (never happens here)
        raise TableError(f"{path}: layers with different numbers of blocks are not supported")
    return LookupTable(names, base, deltas, choices, str(path))


@lru_cache(maxsize=16)
def _cached(path: str, space_key: str, space: SearchSpace) -> LookupTable:
    return read_lut(path, space)


def load_lut(path: str | Path, space: SearchSpace) -> LookupTable:
    """The lookup table at ``path`` for ``space`` (read once per process)."""
    return _cached(str(Path(path).resolve()), space.spec().key(), space)


class LutOptions(Schema):
    """A lookup-table device's options."""

    path: str | None = Field(None, description="the lookup-table CSV (set from latency.lut when omitted)")


class LutDevice:
    """A device whose latency is a lookup table's sum: exact and free for every architecture of the space."""

    kind = "lookup"
    deterministic = True

    def __init__(self, device: str, space: SearchSpace, path: str) -> None:
        self.table = load_lut(path, space)
        self.device = self.table._check(device)
        self.name = PREFIX + device
        self.space = space
        self.path = str(Path(path).resolve())
        self.coef = self.table.coef(device)
        self.base = float(self.table.base[device])

    def latency_ms(self, arch_ids: Sequence[str]) -> np.ndarray:
        if not len(arch_ids):
            return np.zeros(0)
        X = np.stack([self.space.encode(self.space.parse(a)) for a in arch_ids]).astype(np.float64)
        return X @ self.coef + self.base

    def truth(self, arch_ids: Sequence[str]) -> np.ndarray:
        return self.latency_ms(arch_ids)

    def domain(self) -> None:
        return None

    def additive(self) -> object:
        """The exact additive predictor (``coef_`` on the encoding, ``intercept_`` = base): the table itself."""
        from orchestrator.latency.predictors import AdditivePredictor

        model = AdditivePredictor()
        model.set_state({"coef_": self.coef, "intercept_": np.array(self.base)})
        return model

    def cluster_resources(self) -> dict[str, float]:
        return {}

    def spec(self) -> DeviceSpec:
        return DeviceSpec(name=self.name, options={"path": self.path})

    def close(self) -> None:
        pass


def _build(arg: str, space: SearchSpace, options: LutOptions) -> LutDevice:
    if not arg:
        raise DeviceError("a lookup-table device is named lut:<device> (the table's column lat_ms_<device>)")
    if options.path is None:
        raise DeviceError(f"device {PREFIX + arg!r} needs a lookup table: set latency.lut: PATH in the config (or "
                          f"the device option path)")
    try:
        return LutDevice(arg, space, options.path)
    except ArchError as e:
        raise DeviceError(str(e)) from None


LUT_DEVICE = DeviceType("lookup", LutOptions, _build, help="latency = a lookup table's base + per-layer block deltas "
                                                           "(latency.lut: PATH); exact for every architecture",
                        pattern="lut:<device>")
PREFIXES.add(PREFIX, LUT_DEVICE, help=LUT_DEVICE.help)



def lut_path(path: str, space: SearchSpace) -> str:
    """``latency.lut`` resolved ('shipped': HW-NAS-Bench's Pixel 3 table, fbnet only) and checked against
    ``space`` (read once); the absolute path."""
    if path == "shipped":
        from orchestrator.latency.fbnet_data import is_hwnasbench_fbnet, shipped_lut_path

        if not is_hwnasbench_fbnet(space):
            raise DeviceError(f"'shipped' is HW-NAS-Bench's Pixel 3 table of the fbnet space at its defaults (the "
                              f"network it measured); space {space.name!r} {space.spec().options} is not that "
                              f"network: give a lookup table of your own")
        path = str(shipped_lut_path())
    load_lut(path, space)
    return str(Path(path).resolve())
