"""argparse types shared by the hwnas subcommands: counts with a minimum, and ``--space-option KEY=VALUE``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``low`` (anything else is an argument error naming the value)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {v}")
        return v

    return parse


positive_int = at_least(1)


def space_option(text: str) -> tuple[str, Any]:
    """argparse type of ``--space-option KEY=VALUE``: the value read as JSON where it parses, else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--space-option {text!r}: expected KEY=VALUE (e.g. resolution=32)")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def fraction(low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a number in [0, 1) (``low_open``: in (0, 1)); NaN and anything else an argument error."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (0 < v < 1 if low_open else 0 <= v < 1):  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be in {'(0' if low_open else '[0'}, 1), got {text}")
        return v

    return parse


def check_output_file(text: str, flag: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """The file a command will write, checked before any work: not a directory, with one of ``suffixes`` where
    given, in a folder that exists or can be made and takes a new file (a file is created there and removed).
    Raises ConfigError naming ``flag``, the problem and the fix."""
    import tempfile

    from orchestrator.errors import ConfigError

    path = Path(text).expanduser()
    if not text.strip() or path.is_dir():
        raise ConfigError(f"{flag} {text!r} is a directory (or empty); give a file path, e.g. "
                          f"{text.rstrip('/') or '.'}/out{suffixes[0] if suffixes else '.csv'}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {text!r}: the file name must end in {' or '.join(suffixes)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {text}: cannot write a file in {path.parent} ({e.strerror or e}); choose a "
                          f"writable folder") from None
    return path


def output_file(*suffixes: str) -> Callable[[str], str]:
    """argparse type of a file a command writes (``--out x.csv``): :func:`check_output_file` at parse time, so a
    bad one costs no work (it cost the whole measurement or evaluation before: break test, turn 16)."""

    def parse(text: str) -> str:
        from orchestrator.errors import ConfigError

        try:
            check_output_file(text, "", suffixes)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).strip()) from None
        return text

    return parse


def srcc_text(value: float) -> str:
    """An SRCC for a printed line: three decimals, or why there is none (NaN: a constant column, or fewer than 3
    architectures; was printed as 'nan': break test, turn 16)."""
    import math

    return f"{value:.3f}" if math.isfinite(value) else "undefined (a constant column, or fewer than 3 architectures)"
