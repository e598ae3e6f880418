"""Latency tables: CSV files with a column ``arch`` and one latency column (ms)
per device. Blank cells mean "not measured". Every problem is reported with the
file, line and column that hold it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict

from orchestrator.errors import ArchError, TableError
from orchestrator.schema import Schema
from orchestrator.shipped import (  # the shipped tables' names, also importable from here
    HWNASBENCH_DEVICES as HWNASBENCH_DEVICES,
)
from orchestrator.shipped import (
    SHIPPED_DEFAULT as SHIPPED_DEFAULT,
)
from orchestrator.shipped import (
    SHIPPED_DEVICES as SHIPPED_DEVICES,
)
from orchestrator.shipped import (
    SHIPPED_FILES as SHIPPED_FILES,
)
from orchestrator.shipped import (
    is_shipped as is_shipped,
)
from orchestrator.shipped import (
    shipped_name as shipped_name,
)
from orchestrator.shipped import (
    shipped_table_path as shipped_table_path,
)
from search_spaces.base import SearchSpace


class TableRef(Schema):
    """Where a table was read from, so another process can read it again (a tabulated device's spec)."""

    model_config = ConfigDict(frozen=True)

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


# Columns that hold something other than a device's latency (indices, accuracies, encodings) in the tables
# hwnas ships or reads; a table read without a device prefix leaves them out instead of taking them for devices.
NON_LATENCY_COLUMNS = frozenset({"nb201_index", "help_index", "hwnas_id", "op_idx_list", "resolution", "ks", "e",
                                 "d", "layer", "op"})
NON_LATENCY_PREFIXES = ("acc_", "test_acc_", "valid_acc_", "train_acc_", "val_acc_")
LATENCY_PREFIX = "lat_ms_"
MAX_PROBLEMS_SHOWN = 20  # a table's cell problems listed in one error; the rest are counted


def device_columns(header: Sequence[str], device_prefix: str | None = None) -> list[tuple[int, str]]:
    """(column index, device name) of the latency columns of ``header``.

    With ``device_prefix``, the columns starting with it (prefix removed). Without: the ``lat_ms_`` columns
    where the header has any (prefix removed), else every column but ``arch`` and the known non-latency
    columns (``NON_LATENCY_COLUMNS``, names starting with one of ``NON_LATENCY_PREFIXES``).
    """
    if device_prefix is None and any(h.startswith(LATENCY_PREFIX) for h in header):
        device_prefix = LATENCY_PREFIX
    if device_prefix is not None:
        return [(c, h[len(device_prefix):]) for c, h in enumerate(header)
                if h != "arch" and h.startswith(device_prefix)]
    return [(c, h) for c, h in enumerate(header)
            if h != "arch" and h not in NON_LATENCY_COLUMNS and not h.startswith(NON_LATENCY_PREFIXES)]

MAX_DEVICES = 1_024  # device columns of one table (the config's sweep.targets has the same bound)
# One inference's latency above this is a typo or another unit, not a measurement; the transfer's fits overflow
# on numbers near float's range (an SVD that does not converge at 1e160 ms, NaN predictions at 1e306 ms).
MAX_LATENCY_MS = 1e7
# Below this (a femtosecond) a latency is another unit or float noise: the transfer's relative figures divide by
# it and its logarithms reach float's edge (1e-320 ms, a subnormal, was read: break test, turn 16).
MIN_LATENCY_MS = 1e-12


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

    The device columns are those of ``device_columns(header, device_prefix)``: with a prefix, the columns
    starting with it (prefix removed); without, the ``lat_ms_<device>`` columns if there are any, else every
    column but ``arch`` and known non-latency columns (``nb201_index``, accuracies, ...).

    Raises TableError: structural problems (no file, not UTF-8, no ``arch`` column, empty or repeated column
    names, a device column naming no device, no device column) at once; every row and cell problem (field
    count, unparsable or duplicate architecture, non-numeric, NaN, infinite, non-positive or over
    ``MAX_LATENCY_MS`` latency) together, the first ``MAX_PROBLEMS_SHOWN`` listed
    with line and column and the rest counted.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file; pass the path of a CSV with a column 'arch'")
    try:
        return _read_table(path, space, device_prefix, require_devices)
    except UnicodeDecodeError as e:
        raise TableError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the table as UTF-8 CSV "
                         f"(a spreadsheet's 'CSV UTF-8' format)") from None


def _read_table(path: Path, space: SearchSpace, device_prefix: str | None, require_devices: bool) -> LatencyTable:
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
        dev_cols = device_columns(header, device_prefix)
        for c, name in dev_cols:
            if not name.strip():
                raise TableError(f"{path}, line 1, column {c + 1}: column {header[c]!r} names no device; write the "
                                 f"device after the prefix ({header[c]}<device>)")
        if require_devices and not dev_cols:
            others = [h for h in header if h != "arch"]
            if device_prefix and others:  # e.g. `hwnas latency export-shipped`'s plain device columns
                raise TableError(f"{path}, line 1: no device columns: here a device's latency column is named "
                                 f"'{device_prefix}<device>' (ms), and the columns {others[:4]}"
                                 f"{' ...' if len(others) > 4 else ''} are not; rename them (e.g. "
                                 f"{device_prefix}{others[0]})")
            raise TableError(f"{path}, line 1: no device columns; add one latency column (ms) per device")

        archs: list[str] = []
        first_line: dict[str, int] = {}
        rows: list[list[float]] = []
        problems: list[str] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                problems.append(f"line {line_no}: {len(row)} fields, header has {len(header)}; "
                                f"quote fields that contain commas")
                continue
            raw = row[arch_col].strip()
            arch: str | None = None
            try:
                arch = space.arch_id(space.parse(raw))
            except ArchError as e:
                problems.append(f"line {line_no}, column 'arch': {e}")
            if arch is not None and arch in first_line:
                problems.append(f"line {line_no}, column 'arch': duplicate architecture {raw!r} "
                                f"(first on line {first_line[arch]}); keep one row per architecture")
                arch = None
            vals: list[float] = []
            for c, _name in dev_cols:
                cell = row[c].strip()
                if not cell:
                    vals.append(math.nan)
                    continue
                try:
                    if "_" in cell:  # Python's float() reads 5_000 as 5000; a CSV number has no underscores
                        raise ValueError(cell)
                    v = float(cell)
                except ValueError:
                    problems.append(f"line {line_no}, column {header[c]!r}: latency {cell!r} is not a number; "
                                    f"write milliseconds as a number, or leave the cell blank if not measured")
                    continue
                if not math.isfinite(v) or v <= 0:
                    problems.append(f"line {line_no}, column {header[c]!r}: latency {cell!r} must be a positive, "
                                    f"finite number of milliseconds (leave the cell blank if not measured)")
                    continue
                if v < MIN_LATENCY_MS:
                    problems.append(f"line {line_no}, column {header[c]!r}: latency {cell!r} ms is under "
                                    f"{MIN_LATENCY_MS:.0e} ms for one inference: a column in another unit? write "
                                    f"milliseconds")
                    continue
                if v > MAX_LATENCY_MS:
                    problems.append(f"line {line_no}, column {header[c]!r}: latency {cell!r} ms is over "
                                    f"{MAX_LATENCY_MS:.0e} ms ({MAX_LATENCY_MS / 3.6e6:.1f} hours) for one inference:"
                                    f" a typo, or a column in another unit? write milliseconds")
                    continue
                vals.append(v)
            if arch is not None:
                first_line[arch] = line_no
                if len(vals) == len(dev_cols):
                    archs.append(arch)
                    rows.append(vals)
    if len(problems) == 1:
        raise TableError(f"{path}, {problems[0]}")
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise TableError(f"{path}: {len(problems)} problem(s) in its rows:\n" + "\n".join(f"    {p}" for p in shown)
                         + (f"\n    ... and {more} more" if more else ""))
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


def shipped_ref(name: str = "shipped") -> TableRef:
    return TableRef(path=str(shipped_table_path(name).resolve()), device_prefix="lat_ms_")


SHIPPED_REF = shipped_ref()


def shipped_table(space: SearchSpace | None = None, name: str = "shipped") -> LatencyTable:
    """A shipped NB201 latency table: by default the whole space (15,625 cells on 19 devices);
    ``nb201-hwnasbench``: 1,999 cells on HW-NAS-Bench's six devices."""
    if space is None:
        from search_spaces.nb201 import NB201Space

        space = NB201Space()
    return load_table_ref(shipped_ref(name), space)


def shipped_accuracy(column: str = "test_acc_cifar10_200ep", name: str = "shipped") -> dict[str, float]:
    """NAS-Bench-201 test accuracy (%) of a shipped table's cells, by arch id (validated; see accuracy_table)."""
    from orchestrator.search.accuracy_table import read_accuracy
    from search_spaces.nb201 import NB201Space

    return read_accuracy(name, NB201Space(), column).values


def read_archs(path: str | Path, space: SearchSpace) -> list[str]:
    """Read a CSV with a column ``arch`` (other columns ignored); canonical ids in file order."""
    path = Path(path)
    if path.is_dir():
        raise TableError(f"{path} is a directory; pass a CSV file with a column 'arch'")
    if not path.is_file():
        raise TableError(f"{path}: no such file; pass a CSV with a column 'arch'")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TableError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); save the CSV as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if "arch" not in header:
        raise TableError(f"{path}, line 1: no column 'arch' in header {header}")
    if header.count("arch") > 1:
        raise TableError(f"{path}, line 1: {header.count('arch')} columns named 'arch'; keep one")
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
