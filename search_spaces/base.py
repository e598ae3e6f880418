"""The SearchSpace protocol and the registry of spaces.

An architecture is a plain, JSON-serialisable mapping; every space gives it a
canonical string id (``arch_id``) and parses ids back (``parse``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from orchestrator.registry import Registry

Arch = dict[str, Any]


@runtime_checkable
class SearchSpace(Protocol):
    name: str

    def sample(self, rng: np.random.Generator) -> Arch: ...

    def parse(self, arch_id: str) -> Arch: ...

    def arch_id(self, arch: Mapping[str, Any]) -> str: ...

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray: ...

    def distributions(self) -> dict[str, Any]: ...

    def from_params(self, params: Mapping[str, Any]) -> Arch: ...

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]: ...

    def build(self, arch: Mapping[str, Any], **kwargs: Any) -> Any: ...

    @property
    def size(self) -> int: ...

    @property
    def encoding_size(self) -> int: ...


def encode_many(space: SearchSpace, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Stack the encodings of ``archs`` into a float32 matrix (n, encoding_size)."""
    rows = [space.encode(a) for a in archs]
    if not rows:
        return np.zeros((0, space.encoding_size), dtype=np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


def encode_ids(space: SearchSpace, arch_ids: Sequence[str]) -> np.ndarray:
    """Parse and encode a sequence of arch ids."""
    return encode_many(space, (space.parse(a) for a in arch_ids))


SPACES: Registry[type] = Registry("search space")


def get_space(name: str, **kwargs: Any) -> SearchSpace:
    """Instantiate the registered space ``name``."""
    return SPACES.get(name)(**kwargs)
