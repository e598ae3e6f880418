"""The base exception types of hwnas. ``search_spaces`` is the lower layer: it imports nothing of
``orchestrator``, which re-exports these from ``orchestrator.errors``."""

from __future__ import annotations


class HwnasError(Exception):
    """Base class for errors raised by hwnas; the message names the problem and the fix."""


class UnknownNameError(HwnasError, KeyError):
    """A name that no registry entry carries."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArchError(HwnasError, ValueError):
    """An architecture string or mapping that does not belong to the space."""


class SpaceError(HwnasError, ValueError):
    """A search space that cannot be built with the settings given."""
