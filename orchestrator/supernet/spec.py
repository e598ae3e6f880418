"""Which space to build: a name and its settings, serialisable so that Ray actors
and checkpoints can rebuild (and check) exactly the same space."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import ConfigError
from search_spaces.base import get_space


class SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "mobilenetv3"
    options: dict[str, Any] = Field(default_factory=dict, description="keyword settings of the space")

    def spec(self, num_classes: int | None = None) -> dict[str, Any]:
        """The plain-dict spec; ``num_classes`` fills in the dataset's class count if the options lack it."""
        opts = dict(self.options)
        if num_classes is not None:
            opts.setdefault("num_classes", num_classes)
        return {"name": self.name, "options": opts}


def space_from_spec(spec: dict[str, Any]) -> Any:
    space = get_space(spec["name"], **spec.get("options", {}))
    if not hasattr(space, "build_supernet"):
        raise ConfigError(f"space {spec['name']!r} has no supernet (not one-shot); use a one-shot space")
    return space
