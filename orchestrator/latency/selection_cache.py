"""The multi transfer method's meta-learned selection (``transfer.select_multi``), kept in hwnas's disk cache
(``orchestrator/disk_cache.py``: where, how to turn it off, what a damaged entry costs).

The selection (a penalty triple or ``"loo"``, how many sources, measured or smoothed source columns) is a pure
function of the source set's encodings and latencies, its seed, the bucket of k and the number of draws, and it
is the costly part of preparing a source set: about 10 s per bucket on NB201's 1,999-cell table of six devices,
two buckets per sweep, on 2 cores (``docs/benchmarks.md``, turn 11). A run on the same table with the same seed
computes the same selection again; the cache keys it by a hash of:

- the inputs: the sources' names, encodings ``X``, latencies ``Y``, encoding groups, seed, k bucket and draws;
- the code: the text of the modules that compute it (``transfer``, ``ridge_dual``, ``predictors``,
  ``metrics`` and ``orchestrator.ranks``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from orchestrator import disk_cache
from orchestrator.disk_cache import ENV, cache_dir  # noqa: F401 - re-exported: where the entries live

SUBDIR = "multi-selection"
# The modules whose code decides the selection (relative to the orchestrator package).
CODE = ("latency/transfer.py", "latency/ridge_dual.py", "latency/predictors.py", "latency/metrics.py", "ranks.py")

Selection = tuple[tuple[float, float, float] | str, int, bool]


def code_version() -> str:
    """A hash of the text of the modules in ``CODE``."""
    return disk_cache.code_version(*CODE)


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


def _encode(value: Selection) -> list[Any]:
    choice, m, smooth = value
    return [list(choice) if isinstance(choice, tuple) else choice, int(m), bool(smooth)]


def lookup(key: str) -> Selection | None:
    """The selection stored under ``key``; None where there is none (or the cache is off, or the entry cannot
    be read)."""
    return disk_cache.lookup(SUBDIR, key, _decode)


def cached_selection(key: str, compute: Callable[[], Selection]) -> Selection:
    """The selection stored under ``key``, else ``compute()``, stored."""
    return disk_cache.cached(SUBDIR, key, compute, _encode, _decode)
