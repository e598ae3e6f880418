"""Tabulated devices: latencies someone measured and brought as a CSV table."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.base import DEVICES
from orchestrator.latency.table import SHIPPED_DEVICES, LatencyTable, read_table, shipped_table
from search_spaces.base import SearchSpace


class TabulatedDevice:
    kind = "tabulated"

    def __init__(self, name: str, table: LatencyTable, column: str | None = None) -> None:
        self.name = name
        self.table = table
        self.column = column or name
        table.column(self.column)  # validates the column exists

    @classmethod
    def from_csv(cls, path: str | Path, column: str, space: SearchSpace) -> TabulatedDevice:
        return cls(column, read_table(path, space), column)

    def lookup(self, arch_id: str) -> float | None:
        """The tabulated latency (ms), or None where the table has no measurement."""
        v = self.table.lookup(self.column, [arch_id])[0]
        return None if v != v else float(v)

    def measured(self) -> tuple[list[str], Any]:
        return self.table.measured(self.column)

    def lookup_arch(self, space: SearchSpace, arch: Mapping[str, Any]) -> float | None:
        return self.lookup(space.arch_id(arch))


@cache
def _shipped() -> LatencyTable:
    return shipped_table()


def _shipped_factory(column: str):
    def make(space: SearchSpace, **kwargs: Any) -> TabulatedDevice:
        if getattr(space, "name", None) != "nb201":
            raise DeviceError(f"device {column!r} is a table of NB201 cells; use it with --space nb201")
        if kwargs:
            raise DeviceError(f"tabulated device {column!r} takes no options, got {sorted(kwargs)}")
        return TabulatedDevice(column, _shipped(), column)

    make.__doc__ = f"tabulated: HW-NAS-Bench {column} latencies of 1,999 NB201 cells (shipped)"
    return make


for _col in SHIPPED_DEVICES:
    DEVICES.add(_col, _shipped_factory(_col))
