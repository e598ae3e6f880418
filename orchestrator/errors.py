"""Exception types. Every user-facing error names the problem and the fix."""

from __future__ import annotations


class HwnasError(Exception):
    """Base class for errors raised by hwnas."""


class UnknownNameError(HwnasError, KeyError):
    """A name that no registry entry carries."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArchError(HwnasError, ValueError):
    """An architecture string or mapping that does not belong to the space."""


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
