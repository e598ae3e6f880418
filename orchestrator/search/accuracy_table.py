"""Accuracy tables the user brings: any CSV with a column ``arch`` and accuracy columns (top-1, percent).

``accuracy: {source: table, table: PATH | shipped-name, table_column: NAME}``; without ``table`` the latency
table in use is read. ``read_accuracy`` reads one column and ``check_coverage`` checks it against the
architectures the run needs (the latency table's rows); both raise :class:`AccuracyTableError` listing every
problem at once (file, line, column; counts and examples), so a config is refused before any work.

Shipped tables (``orchestrator/data/README.md``): ``nb201-full`` (= ``shipped``; ``test_acc_cifar10_200ep``,
``test_acc_cifar100_200ep``, ``test_acc_imagenet16_200ep``, ``valid_acc_cifar10valid_200ep`` and the 12-epoch
``test_acc_*_12ep``) and ``nb201-hwnasbench`` (1,999 cells; its ``acc_*`` columns are NB201's 12-epoch
figures, so they are offered as ``test_acc_*_12ep``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orchestrator.errors import ArchError, TableError
from orchestrator.shipped import (
    SHIPPED_DEFAULT,
    SHIPPED_FILES,
    SHIPPED_SPACE,
    is_shipped,
    shipped_name,
    shipped_table_path,
)
from search_spaces.base import SearchSpace

DEFAULT_COLUMN = "test_acc_cifar10_200ep"
EXAMPLES = 3  # examples shown per kind of problem

# shipped tables whose file names a column otherwise than the code and docs do: {public name: file column}
_RENAMED = {
    "nb201-hwnasbench": {"test_acc_cifar10_12ep": "acc_cifar10", "test_acc_cifar100_12ep": "acc_cifar100",
                         "test_acc_imagenet16_12ep": "acc_imagenet16"},
}


class AccuracyTableError(TableError):
    """An accuracy table that cannot be used; the message lists every problem with its place and the fix."""


@dataclass(frozen=True)
class AccuracyTable:
    """Accuracy (%) per canonical arch id, from ``column`` of ``source``."""

    values: dict[str, float]
    column: str
    source: str

    def __len__(self) -> int:
        return len(self.values)


def _resolve(table: str) -> tuple[Path, str, dict[str, str]]:
    """(path, label, {public column: file column}) of a shipped name or a path."""
    if is_shipped(table):
        name = shipped_name(table)
        return shipped_table_path(name), name, _RENAMED.get(name, {})
    return Path(table).expanduser(), table, {}


def read_accuracy(table: str | Path, space: SearchSpace, column: str = DEFAULT_COLUMN) -> AccuracyTable:
    """Read and validate ``column`` of an accuracy CSV (a path, or a shipped table's name).

    Every value must be a number in [0, 100] (percent; blank or NaN is refused), every ``arch`` a valid
    architecture of ``space``, listed once. Raises AccuracyTableError naming every problem (a missing column:
    the columns that are there; a shipped name for a space other than ``SHIPPED_SPACE``: that it has none).
    Read once per process, table, space and column.
    """
    if is_shipped(str(table)) and space.name != SHIPPED_SPACE:
        raise AccuracyTableError(f"accuracy table {str(table)!r} is a shipped table of {SHIPPED_SPACE}'s cells; "
                                 f"space {space.name!r} has no shipped accuracy table: give a CSV with a column "
                                 f"'arch' and accuracy columns (percent), or another accuracy source")
    path, label, renamed = _resolve(str(table))
    stamp = path.stat().st_mtime_ns if path.is_file() else 0
    return _read(str(path), label, tuple(sorted(renamed.items())), space.spec().key(), space, column, stamp)


@lru_cache(maxsize=16)
def _read(path_s: str, label: str, renamed_items: tuple[tuple[str, str], ...], space_key: str, space: SearchSpace,
          column: str, stamp: int) -> AccuracyTable:
    path, renamed = Path(path_s), dict(renamed_items)
    if not path.is_file():
        raise AccuracyTableError(f"accuracy table {label}: no such file; give the path of a CSV with a column "
                                 f"'arch' and accuracy columns (percent), or a shipped table's name: shipped "
                                 f"(= {SHIPPED_DEFAULT}), {', '.join(SHIPPED_FILES)}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise AccuracyTableError(f"{path}: file is empty; expected a header with 'arch' and accuracy columns")
        if "arch" not in header:
            raise AccuracyTableError(f"{path}, line 1: no column 'arch' in header {header}; name the architecture "
                                     f"column 'arch'")
        public = {v: k for k, v in renamed.items()}
        names = [public.get(h, h) for h in header]
        if column not in names:
            cols = [n for n in names if n != "arch" and not n.startswith("lat_ms_")]
            lat = len(names) - 1 - len(cols)
            also = f" (and {lat} latency columns lat_ms_*)" if lat else ""
            raise AccuracyTableError(f"{path}: no accuracy column {column!r}; the columns there are "
                                     f"{', '.join(cols) or 'none but arch'}{also}; set accuracy.table_column to "
                                     f"one of them")
        a_col, v_col = header.index("arch"), names.index(column)
        values: dict[str, float] = {}
        first: dict[str, int] = {}
        bad: dict[str, list[str]] = {"arch": [], "number": [], "nan": [], "range": [], "dup": []}
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                bad["number"].append(f"line {line_no}: {len(row)} fields, header has {len(header)}")
                continue
            raw = row[a_col].strip()
            try:
                arch = space.arch_id(space.parse(raw))
            except ArchError as e:
                bad["arch"].append(f"line {line_no}: {e}")
                continue
            if arch in first:
                bad["dup"].append(f"line {line_no} repeats line {first[arch]}")
                continue
            first[arch] = line_no
            cell = row[v_col].strip()
            try:
                v = float(cell) if cell else math.nan
            except ValueError:
                bad["number"].append(f"line {line_no}: {cell!r}")
                continue
            if math.isnan(v):
                bad["nan"].append(f"line {line_no}")
            elif not 0.0 <= v <= 100.0:
                bad["range"].append(f"line {line_no}: {cell}")
            else:
                values[arch] = v
    what = {"arch": "architectures that do not parse", "number": "values that are not numbers",
            "nan": "blank or NaN values (every architecture needs an accuracy; drop the row or fill it)",
            "range": "values outside [0, 100] (accuracies are top-1 percent; a 0-1 fraction times 100)",
            "dup": "duplicate architectures (keep one row per architecture)"}
    problems = [f"{len(v)} {what[k]}, e.g. {'; '.join(v[:EXAMPLES])}" for k, v in bad.items() if v]
    if problems:
        raise AccuracyTableError(f"{path}, column {column!r}: " + "; ".join(problems))
    if not values:
        raise AccuracyTableError(f"{path}: a header but no architectures; add one row per architecture")
    return AccuracyTable(values, column, label)


def check_coverage(acc: AccuracyTable, archs: Sequence[str], what: str = "the latency table") -> None:
    """Every architecture of ``archs`` (canonical ids) must have an accuracy; AccuracyTableError with the count
    and examples otherwise."""
    missing = [a for a in archs if a not in acc.values]
    if missing:
        raise AccuracyTableError(
            f"accuracy table {acc.source} (column {acc.column!r}) lacks {len(missing):,} of the {len(archs):,} "
            f"architectures of {what}, e.g. {', '.join(missing[:EXAMPLES])}; add rows for them or use a latency "
            f"table restricted to the architectures it has")
