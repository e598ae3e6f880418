"""The shipped FBNet data (HW-NAS-Bench's CIFAR-100 setting; see data/README.md): 5,000 architectures measured
on 19 devices (a latency table) and the Pixel 3 lookup table."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from orchestrator.latency.table import LatencyTable, TableRef, load_table_ref
from search_spaces.base import SearchSpace, SpaceSpec


def _data(name: str) -> Path:
    return Path(str(resources.files("orchestrator") / "data" / name))


def shipped_fbnet_table_path() -> Path:
    return _data("fbnet_5000.csv")


def shipped_lut_path() -> Path:
    """HW-NAS-Bench's Pixel 3 lookup table of the FBNet space (``latency.lut``)."""
    return _data("fbnet_lut_pixel3.csv")


FBNET_REF = TableRef(path=str(shipped_fbnet_table_path().resolve()), device_prefix="lat_ms_")


@cache
def _hwnasbench_spec() -> SpaceSpec:
    return SpaceSpec(name="fbnet").build().spec()


def is_hwnasbench_fbnet(space: SearchSpace) -> bool:
    """Whether ``space`` is the network the shipped FBNet data measured (fbnet at its defaults: its spec, name
    included)."""
    return space.spec() == _hwnasbench_spec()


def shipped_fbnet_table(space: SearchSpace) -> LatencyTable | None:
    """The 5,000-architecture table (19 devices, ``lat_ms_<device>`` columns) for HW-NAS-Bench's FBNet network;
    None for any other configuration (its latencies would be of another network)."""
    return load_table_ref(FBNET_REF, space) if is_hwnasbench_fbnet(space) else None
