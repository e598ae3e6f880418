"""Tabulated devices: a column of a latency table (the shipped HW-NAS-Bench one, or a user's CSV)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ConfigDict

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.protocol import DeviceSpec, DeviceType
from orchestrator.latency.table import LatencyTable
from orchestrator.schema import Schema
from search_spaces.base import SearchSpace


class TableOptions(Schema):
    """Set by the device catalog (the table in use); a tabulated device takes no options of its own."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    table: LatencyTable


class TabulatedDevice:
    """Latencies someone measured: a column of a table. Known exactly where measured; NaN elsewhere."""

    kind = "tabulated"
    deterministic = True

    def __init__(self, name: str, table: LatencyTable) -> None:
        table.column(name)  # the column exists
        self.name = name
        self.table = table

    def latency_ms(self, arch_ids: Sequence[str]) -> np.ndarray:
        return self.table.lookup(self.name, list(arch_ids))

    def truth(self, arch_ids: Sequence[str]) -> np.ndarray:
        return self.latency_ms(arch_ids)

    def domain(self) -> list[str]:
        """The architectures measured on this device."""
        return self.table.measured(self.name)[0]

    def measured(self) -> tuple[list[str], np.ndarray]:
        return self.table.measured(self.name)

    def cluster_resources(self) -> dict[str, float]:
        return {}

    def spec(self) -> DeviceSpec:
        if self.table.ref is None:
            raise DeviceError(f"tabulated device {self.name!r} comes from a table built in memory; write it to a "
                              f"CSV (write_table) so another process can read it")
        return DeviceSpec(name=self.name, options={"table": self.table.ref.model_dump()})

    def close(self) -> None:
        pass


def _build(name: str, space: SearchSpace, options: Any) -> TabulatedDevice:
    return TabulatedDevice(name, options.table)


TABLE_DEVICE = DeviceType("tabulated", TableOptions, _build,
                          help="a column of the latency table in use (for NB201 the shipped whole-space table, "
                               "nb201-hwnasbench, or latency.table: your CSV)")
