"""Exception types. Every user-facing error names the problem and the fix."""

from __future__ import annotations

from search_spaces.errors import ArchError, HwnasError, SpaceError, UnknownNameError

__all__ = ["ArchError", "CheckpointError", "ConfigError", "DataError", "DeviceError", "HwnasError", "PredictorError",
           "SpaceError", "TableError", "TransferError", "UnknownNameError"]


class TableError(HwnasError, ValueError):
    """A latency table (CSV) that cannot be used; the message names file, line and column."""


class TransferError(HwnasError, ValueError):
    """Transfer to a target device is impossible with the data given."""


class DeviceError(HwnasError, RuntimeError):
    """A device that cannot measure (missing runtime, missing cluster resource)."""


class PredictorError(HwnasError, ValueError):
    """A predictor used before fitting, or a saved predictor that cannot be loaded."""


class DataError(HwnasError, ValueError):
    """A dataset that cannot be read; the message says what to put where."""


class CheckpointError(HwnasError, RuntimeError):
    """A checkpoint that is truncated, foreign or from another configuration; names the file."""


class ConfigError(HwnasError, ValueError):
    """A configuration that cannot be used; lists every problem with its path."""
