"""The base of every settings model of hwnas (a config's sections, device options, protocols, data settings).

``Schema`` is a pydantic model that refuses unknown keys and refuses a boolean where a number is expected. Pydantic
reads ``true`` as 1 for an ``int`` field (and 1.0 for a ``float``), and YAML 1.1 reads ``yes``, ``on`` and
``true`` as booleans: ``threads: yes`` or ``k: true`` would silently become 1. A field whose type admits a boolean
(``bool``, ``Any``, a union or ``Literal`` holding one) takes it as before.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_SEED = 2**63 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="a seed: 0 .. 2**63 - 1 (what numpy's SeedSequence "
                                                             "and torch's generators take)")]


def admits_bool(annotation: Any) -> bool:
    """Whether a field annotated ``annotation`` may hold ``True``/``False`` (``bool``, ``Any``, ``object``, an
    unannotated field, a union or ``Literal`` holding one)."""
    if annotation in (bool, Any, object, None):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(admits_bool(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return admits_bool(typing.get_args(annotation)[0])
    return False


class Schema(BaseModel):
    """A settings model: unknown keys refused (``extra="forbid"``); a boolean given to a field that does not
    admit one refused (pydantic would read ``true`` as 1). Subclasses may add to ``model_config`` (e.g.
    ``frozen=True``); pydantic merges it with this one."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and not admits_bool(field.annotation):
                raise ValueError(f"got the boolean {str(value).lower()} where {expected(field.annotation)} is "
                                 f"expected (YAML reads true/false, yes/no, on/off as booleans); write the value")
        return value


_NAMES = {int: "an integer", float: "a number", str: "a string"}


def expected(annotation: Any) -> str:
    """What a field annotated ``annotation`` holds, in words (``int | None`` -> "an integer")."""
    if annotation in _NAMES:
        return _NAMES[annotation]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return expected(args[0])
    return f"a value of type {getattr(annotation, '__name__', annotation)}"
