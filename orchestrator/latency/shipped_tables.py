"""The shipped latency table of each space that has one: a registry keyed by space name (``search_spaces``'
``SPACES`` names), so neither the plan nor the device catalog names a space to find its table.

Each entry declares the ``latency.table`` names that stand for its tables (``shipped``, the default, and any
named ones, e.g. NB201's ``nb201-full`` and ``nb201-hwnasbench``) and loads one for a configured space; it
answers None for a configuration of the space the shipped data did not measure (fbnet at other options, a
mobilenetv3 without OFA's resolutions): its latencies would be of another network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.errors import ConfigError
from orchestrator.latency.fbnet_data import shipped_fbnet_table
from orchestrator.latency.ofa_data import shipped_ofa_table
from orchestrator.latency.table import LatencyTable, shipped_table
from orchestrator.registry import Registry
from orchestrator.shipped import SHIPPED_FILES
from search_spaces.base import SearchSpace

SHIPPED = "shipped"  # latency.table: the space's default shipped table


@dataclass(frozen=True)
class ShippedLatency:
    """A space's shipped latency tables: ``load(space, name)`` for each of ``names`` (None: not for this
    configuration of the space); ``label`` names them in an error for another space ('an NB201 table')."""

    load: Callable[[SearchSpace, str], LatencyTable | None]
    names: tuple[str, ...] = (SHIPPED,)
    label: str = ""


SHIPPED_LATENCY: Registry[ShippedLatency] = Registry("space with a shipped latency table")
SHIPPED_LATENCY.add("nb201", ShippedLatency(shipped_table, (SHIPPED, *SHIPPED_FILES), "an NB201 table"),
                    help="NB201's cells: the whole space on 19 devices (nb201-full, the default) or HW-NAS-Bench's "
                         "1,999 cells on its 6 devices (nb201-hwnasbench)")
SHIPPED_LATENCY.add("fbnet", ShippedLatency(lambda space, name: shipped_fbnet_table(space)),
                    help="HW-NAS-Bench's 5,000 FBNet architectures on 19 devices (fbnet at its defaults)")
SHIPPED_LATENCY.add("mobilenetv3", ShippedLatency(lambda space, name: shipped_ofa_table(space)),
                    help="HELP's 5,000 OFA subnets on 6 GPUs (mobilenetv3 with resolutions: ofa)")


def is_shipped_latency(name: str) -> bool:
    """Whether ``latency.table`` ``name`` is a shipped table ('shipped' or a name some space declares)."""
    return name == SHIPPED or any(name in SHIPPED_LATENCY.get(s).names for s in SHIPPED_LATENCY)


def shipped_latency_table(space: SearchSpace, name: str = SHIPPED) -> LatencyTable | None:
    """The shipped latency table ``name`` (``latency.table``: 'shipped' or a named shipped table) of ``space``,
    as its ``SHIPPED_LATENCY`` entry declares it; None for 'shipped' where the space (or this configuration of
    it) has none. A named table of another space is a ConfigError naming the fix."""
    entry = SHIPPED_LATENCY.get(space.name) if space.name in SHIPPED_LATENCY else None
    if entry is not None and name in entry.names:
        return entry.load(space, name)
    if name == SHIPPED:
        return None
    owners = [s for s in SHIPPED_LATENCY if name in SHIPPED_LATENCY.get(s).names]
    if not owners:
        raise ConfigError(f"no shipped latency table {name!r}; give a CSV path")
    label = SHIPPED_LATENCY.get(owners[0]).label or f"a shipped table of space {owners[0]}"
    raise ConfigError(f"{name!r} is {label}; the space is {space.name}: give a CSV path")
