"""The shipped OFA MobileNetV3 data (see data/README.md): HELP's 5,000 once-for-all subnets (ImageNet network,
input resolution 128-224 in OFA's steps of 4) with latency on two GPUs at three batch sizes, a latency table
whose six columns are tabulated devices of the ``mobilenetv3`` space with OFA's elastic resolution.

The table's ``arch`` column is OFA's own subnet form (JSON ``ks``/``e``/``d``/``r``), which the space parses;
its ids are ``<the hwnas_id column>@<resolution>``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orchestrator.latency.table import LatencyTable, TableRef, load_table_ref
from search_spaces.base import SearchSpace, SpaceSpec

# the table's devices: GPU and batch size (milliseconds per batch)
OFA_DEVICES = ("2080ti_1", "2080ti_32", "2080ti_64", "titan_xp_1", "titan_xp_32", "titan_xp_64")
# the space the table measured: OFA's MobileNetV3 (width 1.0, ImageNet's 1,000 classes) at OFA's resolutions
OFA_SPACE = SpaceSpec(name="mobilenetv3", options={"resolutions": "ofa"})
LATENCY_OPTIONS = ("width_mult", "resolution", "num_classes", "feature_dim", "in_channels", "resolutions")


def shipped_ofa_table_path() -> Path:
    return Path(str(resources.files("orchestrator") / "data" / "ofa_mbv3_5000.csv"))


OFA_REF = TableRef(path=str(shipped_ofa_table_path().resolve()), device_prefix="lat_ms_")


def is_ofa_mbv3(space: SearchSpace) -> bool:
    """Whether ``space`` is the network the shipped OFA table measured: mobilenetv3 with OFA's resolutions
    (``resolutions: ofa``) and otherwise its defaults (dropout, which inference ignores, may differ)."""
    if space.name != "mobilenetv3":
        return False
    mine, ofa = space.spec().options, OFA_SPACE.build().spec().options
    return all(mine.get(k) == ofa.get(k) for k in LATENCY_OPTIONS)


def shipped_ofa_table(space: SearchSpace) -> LatencyTable | None:
    """The 5,000-subnet table (devices ``OFA_DEVICES``) for OFA's MobileNetV3 with elastic resolution; None for
    any other configuration (its latencies would be of another network, or of resolutions it lacks)."""
    return load_table_ref(OFA_REF, space) if is_ofa_mbv3(space) else None
