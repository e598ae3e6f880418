"""argparse types shared by the hwnas subcommands: counts with a minimum, and ``--space-option KEY=VALUE``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
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


def output_file(*suffixes: str) -> Callable[[str], str]:
    """argparse type of a file a command writes (``--out x.csv``), checked before any work: not a directory, in
    a directory that exists or can be made and is writable, with one of ``suffixes`` where given (a bad one
    cost the whole measurement or evaluation before: break test, turn 16)."""
    import os
    from pathlib import Path

    def parse(text: str) -> str:
        p = Path(text)
        if not text or p.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name (e.g. {text.rstrip('/')}"
                                             f"/out{suffixes[0] if suffixes else '.csv'})")
        if suffixes and p.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text!r}: the file name must end in {' or '.join(suffixes)}")
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text!r}: cannot write there ({parent} is not a writable "
                                             f"directory)")
        return text

    return parse


def srcc_text(value: float) -> str:
    """An SRCC for a printed line: three decimals, or why there is none (NaN: a constant column, or fewer than 3
    architectures; was printed as 'nan': break test, turn 16)."""
    import math

    return f"{value:.3f}" if math.isfinite(value) else "undefined (a constant column, or fewer than 3 architectures)"
