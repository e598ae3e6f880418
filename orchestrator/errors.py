"""Exception types. Every user-facing error names the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search_spaces.errors import ArchError, HwnasError, SpaceError, UnknownNameError

__all__ = ["ArchError", "ArchitectureRefused", "CheckpointError", "ConfigError", "DataError", "DeviceError",
           "HwnasError", "PredictorError", "SpaceError", "TableError", "TransferError", "UnknownNameError"]


class TableError(HwnasError, ValueError):
    """A latency table (CSV) that cannot be used; the message names file, line and column."""


class TransferError(HwnasError, ValueError):
    """Transfer to a target device is impossible with the data given."""


class DeviceError(HwnasError, RuntimeError):
    """A device that cannot measure (missing runtime, missing cluster resource)."""


class ArchitectureRefused(DeviceError):
    """This device cannot faithfully measure this one architecture: the artefact it built for ``arch_id`` failed
    its output or parameter check (an int8 network out of tolerance, a compiled network that differs from eager
    PyTorch), or a command's output for it has no latency. The device itself works: a sweep skips the
    architecture and goes on with the others (a device-level failure stays a plain :class:`DeviceError`).

    ``partial``: what the same call measured before the refusal, in order (``LatencySample`` objects of
    ``orchestrator.latency.measurement``), so nothing already measured is lost; the refused architecture is the
    one after them. Survives pickling (a Ray actor or task raising it): ``__reduce__`` carries both."""

    def __init__(self, message: str, arch_id: str, partial: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.arch_id = arch_id
        self.partial: list[Any] = list(partial)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.arch_id, list(self.partial))

    def after(self, measured: Sequence[Any]) -> ArchitectureRefused:
        """This refusal with ``measured`` (the samples a caller measured before the call that raised it) put
        before its ``partial``; returns itself."""
        self.partial = [*measured, *self.partial]
        return self


class PredictorError(HwnasError, ValueError):
    """A predictor used before fitting, or a saved predictor that cannot be loaded."""


class DataError(HwnasError, ValueError):
    """A dataset that cannot be read; the message says what to put where."""


class CheckpointError(HwnasError, RuntimeError):
    """A checkpoint that is truncated, foreign or from another configuration; names the file."""


class ConfigError(HwnasError, ValueError):
    """A configuration that cannot be used; lists every problem with its path."""
