"""The tables shipped in the package, by name (``orchestrator/data/README.md`` documents every column and its
source). The lowest layer: the latency tables (``latency.table``) and the accuracy tables
(``search.accuracy_table``) both resolve shipped names here, so neither imports the other for it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orchestrator.errors import TableError

# 'shipped' is the default NB201 table: the whole space.
SHIPPED_FILES = {
    "nb201-full": "nb201_full_15625.csv",  # all 15,625 cells, 200- and 12-epoch accuracies, 19 HELP devices
    "nb201-hwnasbench": "nb201_hwnasbench_6devices.csv",  # NB201's top 1,999 cells, HW-NAS-Bench's 6 devices
}
SHIPPED_DEFAULT = "nb201-full"
SHIPPED_SPACE = "nb201"  # the search space whose architectures every table above lists (NAS-Bench-201's cells)
SHIPPED_DEVICES = ("1080ti_1", "1080ti_256", "1080ti_32", "2080ti_1", "2080ti_256", "2080ti_32", "essential_ph_1",
                   "gold_6240", "pixel3", "samsung_a50", "samsung_s7", "silver_4114", "silver_4210r", "titanx_1",
                   "titanx_256", "titanx_32", "titanxp_1", "titanxp_256", "titanxp_32")
HWNASBENCH_DEVICES = ("edgegpu", "edgetpu", "eyeriss", "fpga", "pixel3", "raspi4")


def shipped_name(name: str) -> str:
    """The shipped table ``name`` stands for ('shipped': the default); TableError for an unknown name."""
    name = SHIPPED_DEFAULT if name == "shipped" else name
    if name not in SHIPPED_FILES:
        raise TableError(f"no shipped table {name!r}; shipped tables are 'shipped' (= {SHIPPED_DEFAULT}), "
                         f"{', '.join(SHIPPED_FILES)}; or give a CSV path")
    return name


def is_shipped(name: str) -> bool:
    return name == "shipped" or name in SHIPPED_FILES


def shipped_table_path(name: str = "shipped") -> Path:
    """Path of a shipped NB201 table (see orchestrator/data/README.md): the whole space by default."""
    return Path(str(resources.files("orchestrator") / "data" / SHIPPED_FILES[shipped_name(name)]))


