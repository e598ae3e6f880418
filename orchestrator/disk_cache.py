"""hwnas's disk cache: small results of pure computations that every run would otherwise compute again, kept as
one file per entry (JSON; arrays as a compressed ``.npz``), each keyed by a hash of everything it depends on
(its inputs and the text of the modules that compute it, so a change to either starts a new entry rather than
reading an old one).

Where: ``$HWNAS_CACHE_DIR`` if set (``off`` turns the cache off), else ``$XDG_CACHE_HOME/hwnas``, else
``~/.cache/hwnas``; one folder per kind of entry. A file that cannot be read or written is ignored (computed
instead; a debug log line says why): the cache only ever saves time, and a hit is exactly the computed value
(JSON keeps a float's every digit; ``.npz`` keeps the arrays' bytes). What uses it: the multi transfer's
meta-learned selection (``latency/selection_cache.py``), the t copula's correlation grid (``sweep/decision.py``)
and the simulated devices' layer profiles of a whole domain (``latency/devices/simulated.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

log = logging.getLogger(__name__)

ENV = "HWNAS_CACHE_DIR"
OFF = "off"
T = TypeVar("T")


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
def code_version(*modules: str) -> str:
    """A hash of the text of ``modules`` (paths relative to the orchestrator package, e.g. 'ranks.py'; a sibling
    package's as '../search_spaces/base.py')."""
    root = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=16)
    for rel in modules:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def lookup(kind: str, key: str, decode: Callable[[Any], T]) -> T | None:
    """``decode`` of the JSON stored under ``kind``/``key``; None where there is none, the cache is off, or the
    entry cannot be read or decoded (``decode`` raises ValueError or TypeError for a value it does not take)."""
    root = cache_dir()
    if root is None:
        return None
    path = root / kind / f"{key}.json"
    try:
        hit = decode(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, IndexError) as e:  # damaged: computed again, rewritten
        log.debug("cache entry %s not used (%s); computing it", path, e)
        return None
    log.debug("from the cache: %s", path)
    return hit


def store(kind: str, key: str, value: Any) -> None:
    """Keep the JSON of ``value`` under ``kind``/``key`` (atomically: a temp file renamed); an unwritable cache
    is skipped."""
    text = json.dumps(value)
    _write(kind, f"{key}.json", lambda f: f.write(text.encode()))


def lookup_arrays(kind: str, key: str, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` stored under ``kind``/``key`` by :func:`store_arrays`; None where there are none,
    the cache is off, or the entry cannot be read or lacks one of ``names``."""
    root = cache_dir()
    if root is None:
        return None
    path = root / kind / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {n: z[n] for n in names}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # damaged: computed again
        log.debug("cache entry %s not used (%s); computing it", path, e)
        return None
    log.debug("from the cache: %s", path)
    return arrays


def store_arrays(kind: str, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Keep ``arrays`` (numeric, not objects) under ``kind``/``key`` as one compressed ``.npz``, atomically; an
    unwritable cache is skipped."""
    _write(kind, f"{key}.npz", lambda f: np.savez_compressed(f, **arrays))


def _write(kind: str, name: str, write: Callable[[BinaryIO], object]) -> None:
    """``write`` the entry ``kind``/``name`` into a temp file beside it, then rename it into place (a reader
    never sees half an entry); an unwritable cache is skipped with a debug line."""
    root = cache_dir()
    if root is None:
        return
    path = root / kind / name
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("not cached at %s: %s", path, e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached(kind: str, key: str, compute: Callable[[], T], encode: Callable[[T], Any],
           decode: Callable[[Any], T]) -> T:
    """The value stored under ``kind``/``key``, else ``compute()``, stored as ``encode(value)``."""
    hit = lookup(kind, key, decode)
    if hit is not None:
        return hit
    value = compute()
    store(kind, key, encode(value))
    return value
