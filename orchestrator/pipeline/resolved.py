"""What planning resolves once and the run passes on as objects: the search ``Domain`` and each ``Target``.

Before, the run carried strings: ``plan.domain`` was ``"table"`` or ``"space"`` and every stage wrote
``domain == "table" and table is not None`` again; a target was a name that each stage turned back into a
device (``plan.device(name)``) and asked "does it have a truth" in its own way. Planning now builds a
:class:`Domain` and one :class:`Target` per device (the proxy's too) once; nothing after planning resolves a
name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.latency.devices.catalog import DeviceCatalog
from orchestrator.latency.devices.protocol import Device, DeviceSpec
from search_spaces.base import SearchSpace

if TYPE_CHECKING:
    from orchestrator.latency.table import LatencyTable
    from orchestrator.search.driver import TableDomain

TABLE, SPACE = "table", "space"


def _max_exhaustive() -> int:
    from orchestrator.search.algorithms import MAX_EXHAUSTIVE

    return MAX_EXHAUSTIVE


@dataclass(eq=False)
class Domain:
    """The architectures the searches propose from: a latency table's rows (``kind`` 'table') or the whole
    space (``kind`` 'space').

    ``ids``: the table's rows (canonical arch ids), or None for the whole space. ``size``: how many
    architectures that is. ``finite``: whether an exhaustive search can list it (a table, or a space of at most
    ``search.algorithms.MAX_EXHAUSTIVE`` cells that can enumerate itself). ``enumeration(limit)``: every
    architecture, listed (cached), or None where the domain is larger than ``limit`` or cannot be listed.
    """

    kind: str
    space: SearchSpace
    ids: list[str] | None = None
    _listed: list[str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, kind: str, space: SearchSpace, table: LatencyTable | None) -> Domain:
        """The domain ``kind`` ('table' or 'space') of ``space``; 'table' restricts it to ``table``'s rows (a
        'table' domain without a table, which planning refuses, is the whole space)."""
        if kind not in (TABLE, SPACE):
            raise ValueError(f"domain kind {kind!r}: 'table' or 'space'")
        return cls(kind, space, list(table.archs) if kind == TABLE and table is not None else None)

    @property
    def size(self) -> int:
        return len(self.ids) if self.ids is not None else int(self.space.size)

    @property
    def finite(self) -> bool:
        return self.kind == TABLE or (hasattr(self.space, "enumerate") and self.space.size <= _max_exhaustive())

    def enumeration(self, limit: int | None = None) -> list[str] | None:
        """Every architecture of the domain (a table's rows; a space enumerated where it has at most ``limit``
        cells, default ``MAX_EXHAUSTIVE``), else None. The space's listing is built once."""
        if self.ids is not None:
            return list(self.ids)
        limit = _max_exhaustive() if limit is None else limit
        if not hasattr(self.space, "enumerate") or self.space.size > limit:
            return None
        if self._listed is None:
            self._listed = [self.space.arch_id(a) for a in self.space.enumerate()]
        return list(self._listed)

    def search_domain(self) -> TableDomain | None:
        """The domain as ``run_search`` takes it: a ``TableDomain`` of the table's rows, or None (the space)."""
        if self.ids is None:
            return None
        from orchestrator.search.driver import TableDomain

        return TableDomain(self.space, self.ids)


@dataclass(eq=False)
class Target:
    """A device of the run, resolved once at planning.

    ``name`` as configured; ``spec`` its name and options as configured (not the device's own spec, which
    carries resolved options such as the table in use); ``device`` built once; ``limits`` the cost limits an
    architecture must meet on it (``search.constraints`` and ``sweep.memory_mb``); ``has_truth`` the one
    answer to "is its latency known without measuring" (a table, a simulator: True; a measured runtime:
    False); ``domain`` the architectures it can report at all (a table's measured rows), None for any.
    """

    name: str
    spec: DeviceSpec
    device: Device
    limits: dict[str, float]
    has_truth: bool
    domain: list[str] | None

    @classmethod
    def build(cls, catalog: DeviceCatalog, spec: DeviceSpec, defaults: dict[str, Any],
              limits: dict[str, float]) -> Target:
        """Build the device of ``spec`` (options as configured; ``defaults`` fill those its type has)."""
        device = catalog.make(spec.name, spec.options, defaults)
        dom = device.domain()
        return cls(spec.name, spec, device, dict(limits), device.truth([]) is not None,
                   None if dom is None else list(dom))

    @property
    def kind(self) -> str:
        """The device's kind, a label for reports (never switched on)."""
        return self.device.kind

    @property
    def simulated(self) -> bool:
        """Whether the device's latencies come from a model of hardware (its optional ``simulated`` attribute;
        False for a device that does not say, e.g. a plug-in)."""
        return bool(getattr(self.device, "simulated", False))

    @property
    def options(self) -> dict[str, Any]:
        return self.spec.options

    def truth(self, ids: Sequence[str]) -> np.ndarray:
        """The true latency (ms) of ``ids`` (NaN where unknown). A ValueError for a device without a truth."""
        if not self.has_truth:
            raise ValueError(f"device {self.name!r} has no latency known without measuring")
        return np.asarray(self.device.truth(list(ids)), dtype=float)

    @property
    def known_truth(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        """``truth`` where the device has one, else None (what the judge takes)."""
        return self.truth if self.has_truth else None
