"""Registries of named components (timm style: register / get / names)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from search_spaces.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> component mapping whose lookup errors list the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` registers the decorated object."""

        def deco(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "") -> None:
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} must be non-empty without spaces at the ends")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self._items[name] = obj
        self._help[name] = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid {self.kind} names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self, name: str) -> str:
        self.get(name)
        return self._help[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
