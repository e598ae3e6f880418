"""The supernet's space: a :class:`SpaceSpec` with the dataset's class count filled in, checked to be one-shot.

Actors, checkpoints and run files carry the spec (``SpaceSpec.model_dump()``), never a space object, so
every process rebuilds (and checks) exactly the same space.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import ConfigError
from search_spaces.base import SearchSpace, SpaceSpec


def with_classes(spec: SpaceSpec | dict[str, Any], num_classes: int | None) -> SpaceSpec:
    """``spec`` with ``num_classes`` set to the dataset's count unless its options set one."""
    spec = spec if isinstance(spec, SpaceSpec) else SpaceSpec(**spec)
    if num_classes is None or "num_classes" in spec.options:
        return spec
    return spec.with_options(num_classes=num_classes)


def one_shot_space(spec: SpaceSpec | dict[str, Any]) -> SearchSpace:
    """Build the space of ``spec`` and check it has a supernet."""
    spec = spec if isinstance(spec, SpaceSpec) else SpaceSpec(**spec)
    space = spec.build()
    if not hasattr(space, "build_supernet"):
        raise ConfigError(f"space {spec.name!r} has no supernet (not one-shot); use a one-shot space")
    return space
