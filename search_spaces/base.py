"""The SearchSpace protocol, the space spec and the registry of spaces.

An architecture is a plain, JSON-serialisable mapping; every space gives it a
canonical string id (``arch_id``) and parses ids back (``parse``). A space is
named and configured by a :class:`SpaceSpec` (name + options): every process
boundary (Ray actors and tasks, checkpoints, run files) carries the spec, and
``spec.build()`` rebuilds exactly the configured space (``space.spec()`` round-trips).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from search_spaces.errors import SpaceError
from search_spaces.registry import Registry

Arch = dict[str, Any]


class SpaceSpec(BaseModel):
    """Which space, with which settings: what crosses a process boundary instead of a space object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="a registered space (hwnas list)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword settings of the space")

    def build(self) -> SearchSpace:
        """The space this spec names; unknown names and options are errors that list the valid ones."""
        cls = SPACES.get(self.name)
        valid = space_options(self.name)
        bad = sorted(set(self.options) - set(valid))
        if bad:
            raise SpaceError(f"space {self.name!r}: unknown option(s) {bad}; valid options: {', '.join(valid)}")
        try:
            return cls(**self.options)
        except SpaceError:
            raise
        except (TypeError, ValueError) as e:  # a value of the wrong type met deep in the space's constructor
            raise SpaceError(f"space {self.name!r}: options {self.options} cannot be used ({e}); check each "
                             f"value's type (hwnas list shows the spaces' options)") from None

    def with_options(self, **options: Any) -> SpaceSpec:
        return SpaceSpec(name=self.name, options={**self.options, **options})

    def key(self) -> str:
        """A canonical string of the spec (a cache key)."""
        return json.dumps({"name": self.name, "options": self.options}, sort_keys=True, default=str)


class Layer(NamedTuple):
    """One layer of a network as a cost model sees it (batch 1): ``kind`` is conv, dwconv, linear, pool or
    elementwise; ``n_in`` / ``n_out`` the input and output elements; ``weights`` the weight elements;
    ``macs_per_out`` the multiply-adds per output element (conv, linear; 0 otherwise)."""

    kind: str
    n_in: int
    n_out: int
    weights: int = 0
    macs_per_out: int = 0


def space_options(name: str) -> list[str]:
    """The settings the space ``name`` accepts (its constructor's keyword arguments)."""
    params = inspect.signature(SPACES.get(name)).parameters
    return [p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]


@runtime_checkable
class SearchSpace(Protocol):
    name: str

    def spec(self) -> SpaceSpec: ...

    def sample(self, rng: np.random.Generator) -> Arch: ...

    def parse(self, arch_id: str) -> Arch: ...

    def arch_id(self, arch: Mapping[str, Any]) -> str: ...

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray: ...

    def distributions(self) -> dict[str, Any]: ...

    def from_params(self, params: Mapping[str, Any]) -> Arch: ...

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]: ...

    def build(self, arch: Mapping[str, Any]) -> Any: ...

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]: ...

    @property
    def size(self) -> int: ...

    @property
    def encoding_size(self) -> int: ...


def distinct_sample(space: SearchSpace, n: int, rng: np.random.Generator, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` distinct architecture ids drawn uniformly (none of ``exclude``); bounded work whatever ``n``.

    More than the space holds is an error naming the limit. Rejection sampling while it is cheap; where the
    space is small enough to list and most of it is wanted, a draw without replacement from the list.
    """
    skip = set(exclude)
    room = space.size - len(skip)
    if n > room:
        raise SpaceError(f"{n:,} distinct architectures asked of space {space.name!r}, which has "
                         f"{space.size:,}" + (f" ({len(skip):,} excluded)" if skip else "") + f": ask at most "
                         f"{max(room, 0):,}")
    seen: dict[str, None] = {}
    for _ in range(20 * n + 100):  # a coupon-collector bound, far above what a sparse draw needs
        if len(seen) >= n:
            break
        a = space.arch_id(space.sample(rng))
        if a not in skip:
            seen.setdefault(a, None)
    if len(seen) >= n:
        return list(seen)[:n]
    if not hasattr(space, "enumerate"):
        raise SpaceError(f"could not draw {n:,} distinct architectures of space {space.name!r}; ask fewer")
    pool = [a for a in (space.arch_id(x) for x in space.enumerate()) if a not in skip and a not in seen]
    rest = [pool[i] for i in rng.choice(len(pool), size=n - len(seen), replace=False)]
    return [*seen, *rest]


def arch_input_shape(space: SearchSpace, arch: Mapping[str, Any] | str, batch_size: int = 1) -> tuple[int, ...]:
    """The input of ``arch``'s network, ``(batch_size, channels, height, width)``: its own resolution in a space
    that searches it (one with ``resolution_of``, e.g. mobilenetv3 with ``resolutions``), else the space's
    ``input_shape``. ``arch`` may be an id."""
    if not hasattr(space, "resolution_of"):
        return tuple(space.input_shape(batch_size))
    if isinstance(arch, str):
        arch = space.parse(arch)
    return tuple(space.input_shape(batch_size, arch=arch))  # type: ignore[call-arg]


def searched_resolution(space: SearchSpace, arch: Mapping[str, Any]) -> int | None:
    """The input resolution (px) ``arch`` names where the space searches it (``elastic_resolution``), else
    None (the network runs at whatever the data holds, as configured)."""
    if not getattr(space, "elastic_resolution", False):
        return None
    return int(space.resolution_of(arch))  # type: ignore[attr-defined]


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
    """Instantiate the registered space ``name`` (the same checks as ``SpaceSpec(...).build()``)."""
    return SpaceSpec(name=name, options=kwargs).build()
