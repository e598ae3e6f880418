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
