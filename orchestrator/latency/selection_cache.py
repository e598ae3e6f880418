"""A disk cache of the ``multi`` transfer method's meta-learned selection (``transfer.select_multi``).

The selection (a penalty triple or ``"loo"``, how many sources, measured or smoothed source columns) is a pure
function of the source set's encodings and latencies, its seed, the bucket of k and the number of draws, and it
is the costly part of preparing a source set: about 10 s per bucket on NB201's 1,999-cell table of six devices,
two buckets per sweep, on 2 cores (``docs/benchmarks.md``). A run on the same table with the same seed computes
the same selection again; this cache keeps it on disk, keyed by a hash of everything it depends on:

- the inputs: the sources' names, encodings ``X``, latencies ``Y``, encoding groups, seed, k bucket and draws;
- the code: the text of the modules that compute it (``transfer``, ``ridge_dual``, ``predictors``,
  ``metrics`` and ``orchestrator.ranks``), so any change to them starts a new entry rather than reading an
  old one.

A hit returns exactly what the computation returns. Where: ``$HWNAS_CACHE_DIR`` if set (``off`` turns the cache
off), else ``$XDG_CACHE_HOME/hwnas``, else ``~/.cache/hwnas``; one small JSON file per entry under
``multi-selection/``. A file that cannot be read or written is ignored (computed instead; a debug log line
says why): the cache only ever saves time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ENV = "HWNAS_CACHE_DIR"
OFF = "off"
SUBDIR = "multi-selection"
# The modules whose code decides the selection (relative to the orchestrator package).
CODE = ("latency/transfer.py", "latency/ridge_dual.py", "latency/predictors.py", "latency/metrics.py", "ranks.py")

Selection = tuple[tuple[float, float, float] | str, int, bool]


def cache_dir() -> Path | None:
    """The cache's root directory (see the module doc); None when ``$HWNAS_CACHE_DIR`` is ``off``."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() == OFF:
        return None
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hwnas"


@functools.cache
def code_version() -> str:
    """A hash of the text of the modules in ``CODE``."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=16)
    for rel in CODE:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def selection_key(names: list[str], X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None, seed: int, k: int,
                  draws: int) -> str:
    """The entry's name: a hash of the inputs of ``select_multi`` and of ``code_version()``."""
    h = hashlib.blake2b(digest_size=20)
    h.update(code_version().encode())
    h.update(json.dumps([list(names), int(seed), int(k), int(draws)]).encode())
    for a in (X, Y, groups):
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _decode(raw: Any) -> Selection:
    choice, m, smooth = raw
    if isinstance(choice, list):
        if len(choice) != 3:
            raise ValueError(f"a penalty triple has 3 numbers, got {choice!r}")
        choice = (float(choice[0]), float(choice[1]), float(choice[2]))
    elif not isinstance(choice, str):
        raise ValueError(f"not a selection: {raw!r}")
    if not isinstance(m, int) or not isinstance(smooth, bool):
        raise ValueError(f"not a selection: {raw!r}")
    return choice, m, smooth


def lookup(key: str) -> Selection | None:
    """The selection stored under ``key``; None where there is none (or the cache is off, or the entry cannot be
    read: a debug log line says why)."""
    root = cache_dir()
    if root is None:
        return None
    path = root / SUBDIR / f"{key}.json"
    try:
        hit = _decode(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:  # unreadable or damaged: computed again, and rewritten
        log.debug("multi selection cache entry %s not used (%s); computing it", path, e)
        return None
    log.debug("multi selection from the cache: %s", path)
    return hit


def store(key: str, value: Selection) -> None:
    """Keep ``value`` under ``key`` (atomically: a temp file renamed); an unwritable cache is skipped."""
    root = cache_dir()
    if root is None:
        return
    path = root / SUBDIR / f"{key}.json"
    choice, m, smooth = value
    text = json.dumps([list(choice) if isinstance(choice, tuple) else choice, int(m), bool(smooth)])
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("multi selection not cached at %s: %s", path, e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached_selection(key: str, compute: Callable[[], Selection]) -> Selection:
    """The selection stored under ``key``, else ``compute()``, stored."""
    hit = lookup(key)
    if hit is not None:
        return hit
    value = compute()
    store(key, value)
    return value
