"""The Device protocol: what every device answers, the spec that rebuilds one, and how a device type is described.

A device answers one question: the latency (ms) of architectures, by id.
Several kinds implement it: *tabulated* (a column of a latency table), *measured*
(a runtime on this machine: PyTorch, ONNX Runtime, CUDA), *remote* (a measured
runtime on the Ray node carrying ``device:<name>``), *command*, *lookup* and
*simulated* (a roofline model). Everything else asks the device, never its kind:

- ``latency_ms(arch_ids)``: measure, look up or simulate (NaN where a table has no value);
- ``truth(arch_ids)``: the latency where it is known without cost (tables, simulators), else ``None``;
- ``domain()``: the architectures it can report at all (a table's rows), ``None`` for any;
- ``deterministic``: whether a second measurement would give the same numbers (no noise check needed);
- ``simulated`` (optional, default False): whether its latencies come from a model of hardware, not from
  hardware or a table of real measurements (``resolved.Target.simulated`` reads it);
- ``cluster_resources()``: what the Ray cluster must carry for it (a GPU, ``device:<name>``);
- ``spec()``: a :class:`DeviceSpec` that rebuilds it in another process (``catalog.make_device``);
- ``close()``: release what it holds (a measured device's actor); the device's owner calls it when done.

This module imports no device implementation: the registries live in ``registry.py``, the name
resolution in ``catalog.py``, the implementations beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.schema import Schema
from search_spaces.base import SearchSpace


class DeviceSpec(Schema):
    """A device's name and options: what crosses a process boundary instead of a device object."""

    model_config = ConfigDict(frozen=True)

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class Device(Protocol):
    name: str
    kind: str  # a label for reports and MLflow tags: tabulated, measured, remote, simulated, ...
    deterministic: bool

    def latency_ms(self, arch_ids: Sequence[str]) -> np.ndarray: ...

    def truth(self, arch_ids: Sequence[str]) -> np.ndarray | None: ...

    def domain(self) -> list[str] | None: ...

    def cluster_resources(self) -> dict[str, float]: ...

    def spec(self) -> DeviceSpec: ...

    def close(self) -> None: ...


class SampledDevice:
    """What every device that times a real runtime shares (measured here or on a remote node): noisy samples,
    no truth known without measuring, any architecture, options that make its spec. Subclasses give
    ``samples(arch_ids, progress)``."""

    kind = "measured"
    deterministic = False
    name: str
    options: BaseModel

    def samples(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None) -> list[Any]:
        raise NotImplementedError

    def latency_ms(self, arch_ids: Sequence[str]) -> np.ndarray:
        return np.array([s.median_ms for s in self.samples(arch_ids)], dtype=float)

    def spec(self) -> DeviceSpec:
        return DeviceSpec(name=self.name, options=self.options.model_dump(mode="json"))

    def truth(self, arch_ids: Sequence[str]) -> None:
        return None

    def domain(self) -> None:
        return None

    def close(self) -> None:
        pass


class NoOptions(Schema):
    """The options of a device type that takes none."""


@dataclass(frozen=True)
class DeviceType:
    """How one kind of device is built: its options model and a factory ``build(name, space, options)``.

    ``pattern`` is the name's form for prefix types (``sim:<n>``); exact names have none.
    """

    kind: str
    options: type[BaseModel]
    build: Callable[[str, SearchSpace, Any], Device]
    help: str = ""
    pattern: str = ""
