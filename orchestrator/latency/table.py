"""Latency tables: CSV files with a column ``arch`` and one latency column (ms)
per device. Blank cells mean "not measured". Every problem is reported with the
file, line and column that hold it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from orchestrator.errors import ArchError, TableError
from search_spaces.base import SearchSpace


class TableRef(BaseModel):
    """Where a table was read from, so another process can read it again (a tabulated device's spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    device_prefix: str | None = None


@dataclass(frozen=True)
class LatencyTable:
    """Latencies (ms) of architectures (canonical ids) on devices; NaN = not measured."""

    archs: list[str]
    devices: list[str]
    values: np.ndarray
    source: str = "<memory>"
    ref: TableRef | None = None  # None: built in memory, not readable elsewhere
    _row: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _col: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.archs), len(self.devices)):
            raise TableError(
                f"{self.source}: values have shape {self.values.shape}, expected "
                f"({len(self.archs)}, {len(self.devices)})"
            )
        self._row.update({a: i for i, a in enumerate(self.archs)})

    def column(self, device: str) -> np.ndarray:
        if len(self._col) != len(self.devices):  # a dict: column() per device stays linear in the devices
            self._col.clear()
            self._col.update({d: j for j, d in enumerate(self.devices)})
        j = self._col.get(device)
        if j is None:
            raise TableError(
                f"{self.source}: no device column {device!r}; columns are {', '.join(self.devices[:50])}"
                + (f" and {len(self.devices) - 50} more" if len(self.devices) > 50 else "")
            )
        return self.values[:, j]

    def measured(self, device: str) -> tuple[list[str], np.ndarray]:
        """The architectures measured on ``device`` and their latencies."""
        col = self.column(device)
        ok = ~np.isnan(col)
        return [a for a, m in zip(self.archs, ok, strict=True) if m], col[ok]

    def lookup(self, device: str, arch_ids: Sequence[str]) -> np.ndarray:
        """Latencies of ``arch_ids`` on ``device``; NaN where not in the table or not measured."""
        col = self.column(device)
        out = np.full(len(arch_ids), np.nan)
        for k, a in enumerate(arch_ids):
            i = self._row.get(a)
            if i is not None:
                out[k] = col[i]
        return out

    def select(self, devices: Sequence[str]) -> LatencyTable:
        idx = [self.devices.index(d) for d in devices if self.column(d) is not None]
        return LatencyTable(list(self.archs), list(devices), self.values[:, idx].copy(), self.source, self.ref)

    def row_index(self, arch_id: str) -> int | None:
        return self._row.get(arch_id)


MAX_DEVICES = 1_024  # device columns of one table (the config's sweep.targets has the same bound)


def _bounded_rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The CSV's rows, a malformed one (a cell over the csv module's field limit, a NUL byte) as a TableError
    naming the file and line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise TableError(f"{path}, line {reader.line_num}: not a readable CSV row ({e}); a latency table holds "
                             f"an arch id and numbers, each cell under {csv.field_size_limit():,} characters"
                             ) from None
        yield row


def read_table(
    path: str | Path,
    space: SearchSpace,
    *,
    device_prefix: str | None = None,
    require_devices: bool = True,
) -> LatencyTable:
    """Read and validate a latency CSV.

    Every column but ``arch`` is a device's latency in ms, unless ``device_prefix``
    is given: then only columns starting with it are devices (prefix removed).
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file; pass the path of a CSV with a column 'arch'")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = _bounded_rows(csv.reader(f), path)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{path}: file is empty; expected a header line with 'arch' and device columns") from None
        header = [h.strip() for h in header]
        if len(header) - 1 > MAX_DEVICES:
            raise TableError(f"{path}, line 1: {len(header) - 1:,} device columns; a table holds at most "
                             f"{MAX_DEVICES:,} devices: split it, or keep the devices you sweep")
        if "arch" not in header:
            raise TableError(
                f"{path}, line 1: no column 'arch' in header {header}; the first line must name the "
                f"column 'arch' and one latency column per device"
            )
        seen: set[str] = set()
        for c, h in enumerate(header, start=1):
            if not h:
                raise TableError(f"{path}, line 1, column {c}: empty column name; name every column")
            if h in seen:
                raise TableError(f"{path}, line 1, column {c}: column {h!r} appears twice; names must be unique")
            seen.add(h)
        arch_col = header.index("arch")
        dev_cols = [
            (c, h if device_prefix is None else h[len(device_prefix):])
            for c, h in enumerate(header)
            if c != arch_col and (device_prefix is None or h.startswith(device_prefix))
        ]
        if require_devices and not dev_cols:
            raise TableError(f"{path}, line 1: no device columns; add one latency column (ms) per device")

        archs: list[str] = []
        first_line: dict[str, int] = {}
        rows: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise TableError(
                    f"{path}, line {line_no}: {len(row)} fields, header has {len(header)}; "
                    f"quote fields that contain commas"
                )
            raw = row[arch_col].strip()
            try:
                arch = space.arch_id(space.parse(raw))
            except ArchError as e:
                raise TableError(f"{path}, line {line_no}, column 'arch': {e}") from None
            if arch in first_line:
                raise TableError(
                    f"{path}, line {line_no}, column 'arch': duplicate architecture {raw!r} "
                    f"(first on line {first_line[arch]}); keep one row per architecture"
                )
            first_line[arch] = line_no
            vals: list[float] = []
            for c, _name in dev_cols:
                cell = row[c].strip()
                if not cell:
                    vals.append(math.nan)
                    continue
                try:
                    v = float(cell)
                except ValueError:
                    raise TableError(
                        f"{path}, line {line_no}, column {header[c]!r}: latency {cell!r} is not a number; "
                        f"write milliseconds as a number, or leave the cell blank if not measured"
                    ) from None
                if not math.isfinite(v) or v <= 0:
                    raise TableError(
                        f"{path}, line {line_no}, column {header[c]!r}: latency {cell!r} must be a positive, "
                        f"finite number of milliseconds (leave the cell blank if not measured)"
                    )
                vals.append(v)
            archs.append(arch)
            rows.append(vals)
    if not rows:
        raise TableError(f"{path}: a header but no architectures; add one row per architecture under it")
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(dev_cols))
    return LatencyTable(archs, [name for _, name in dev_cols], values, str(path),
                        TableRef(path=str(path.resolve()), device_prefix=device_prefix))


def load_table_ref(ref: TableRef, space: SearchSpace) -> LatencyTable:
    """The table ``ref`` points to (read once per process and space)."""
    return _cached_table(ref, space.spec().key(), space)


@lru_cache(maxsize=16)
def _cached_table(ref: TableRef, space_key: str, space: SearchSpace) -> LatencyTable:
    return read_table(ref.path, space, device_prefix=ref.device_prefix)


def write_table(path: str | Path, table: LatencyTable, *, precision: int = 6) -> None:
    """Write ``table`` as CSV (blank for NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["arch", *table.devices])
        for a, row in zip(table.archs, table.values, strict=True):
            w.writerow([a, *("" if math.isnan(v) else f"{v:.{precision}g}" for v in row)])


SHIPPED_DEVICES = ("edgegpu", "edgetpu", "eyeriss", "fpga", "pixel3", "raspi4")


def shipped_table_path() -> Path:
    """Path of the shipped NB201 latency table (HW-NAS-Bench via OneProxy; see data/README.md)."""
    return Path(str(resources.files("orchestrator") / "data" / "nb201_hwnasbench_6devices.csv"))


SHIPPED_REF = TableRef(path=str(shipped_table_path().resolve()), device_prefix="lat_ms_")


def shipped_table(space: SearchSpace | None = None) -> LatencyTable:
    """The shipped NB201 latency table: 1,999 cells on six devices."""
    if space is None:
        from search_spaces.nb201 import NB201Space

        space = NB201Space()
    return load_table_ref(SHIPPED_REF, space)


def shipped_accuracy(column: str = "acc_cifar10") -> dict[str, float]:
    """NAS-Bench-201 test accuracy (%) of the shipped cells, by arch id."""
    from search_spaces.nb201 import NB201Space

    t = read_table(shipped_table_path(), NB201Space(), device_prefix=column, require_devices=True)
    return {a: float(v) for a, v in zip(t.archs, t.values[:, 0], strict=True)}


def read_archs(path: str | Path, space: SearchSpace) -> list[str]:
    """Read a CSV with a column ``arch`` (other columns ignored); canonical ids in file order."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file; pass a CSV with a column 'arch'")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "arch" not in header:
            raise TableError(f"{path}, line 1: no column 'arch' in header {header}")
        col = header.index("arch")
        out = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if col >= len(row):
                raise TableError(f"{path}, line {line_no}: row has no 'arch' field")
            try:
                out.append(space.arch_id(space.parse(row[col].strip())))
            except ArchError as e:
                raise TableError(f"{path}, line {line_no}, column 'arch': {e}") from None
    if not out:
        raise TableError(f"{path}: no architectures; list one per line under the header 'arch'")
    return out
