"""Names that become file names, MLflow keys or MLflow filter values, and URLs whose secrets must not be written.

A device name comes from a user's latency table (any text a CSV header holds: ``jetson(fp16)``, ``v1.5``,
``../../x``) or from the catalog (``sim:3``). Everywhere it becomes a file name it goes through
:func:`file_stem` (one safe path component, never ``.``/``..``, never a hidden file, never a suffix that a
``with_suffix`` could eat), and a plan whose devices would share a stem is refused (:func:`stem_clashes`).
Everywhere a name becomes an MLflow key it goes through :func:`is_mlflow_key` (a mapping with an unsafe key is
recorded as one JSON value instead, see ``tracking.flatten``); tag filters are built by :func:`tag_filter`.
Passwords in URLs (``postgresql://user:PASSWORD@host/db``, ``?password=``) are replaced by ``***`` in any text
by :func:`redact` before it is written or printed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_STEM = 100  # characters of a device's file stem (file systems allow 255 bytes; suffixes and _refined added)
RESERVED_STEMS = ("proxy", "proxy_projections")  # fronts/proxy.*, fronts/proxy_projections.png
REFINED = "_refined"  # fronts/<stem>_refined.* beside fronts/<stem>.*

_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9_.\-]")
_MLFLOW_KEY = re.compile(r"^[A-Za-z0-9_.\- :]+$")  # MLflow's own rule (non-Windows), ASCII only, no '/'
MAX_KEY = 250  # MLflow's limit on a param / metric / tag key


def file_stem(name: str) -> str:
    """The file stem of a device's files (``fronts/<stem>.csv``, ``targets/<stem>.json``, ``exports/<stem>/``).

    Every character but ASCII letters, digits, ``_``, ``-`` and ``.`` becomes ``_``, and leading dots do too,
    so the stem is one path component that is never ``.``, ``..`` or a hidden file (``sim:0`` -> ``sim_0``,
    ``../../x`` -> ``_.._x``, ``v1.5`` -> ``v1.5``). A stem longer than ``MAX_STEM`` is cut and ends with 8 hex
    digits of the name's SHA-256. Distinct names can share a stem (``a:b``, ``a_b``): ``stem_clashes`` finds them.
    """
    s = _UNSAFE_FILE.sub("_", name)
    dots = len(s) - len(s.lstrip("."))
    s = "_" * dots + s[dots:]
    if len(s) > MAX_STEM:
        s = s[:MAX_STEM - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return s or "_"


def stem_clashes(names: Iterable[str]) -> list[str]:
    """Problems (empty: none) where two devices would write the same files: equal stems, also on a
    case-insensitive file system (macOS, Windows), a stem of the proxy's own files, or one device's stem equal
    to another's refined front (``<stem>_refined``)."""
    owners: dict[str, list[str]] = {}
    for n in dict.fromkeys(names):
        owners.setdefault(file_stem(n).casefold(), []).append(n)
    problems = []
    for stem, who in owners.items():
        if len(who) > 1:
            problems.append(f"devices {who} would all write the files fronts/{file_stem(who[0])}.* (a device's "
                            f"file name keeps letters, digits, '_', '-', '.'; other characters become '_', and "
                            f"case is ignored); rename one (its table column or sweep.targets entry)")
        if stem in RESERVED_STEMS:
            problems.append(f"device {who[0]!r} would write fronts/{file_stem(who[0])}.*, the proxy search's own "
                            f"files; rename it")
        if stem.endswith(REFINED) and stem[:-len(REFINED)] in owners:
            base = owners[stem[:-len(REFINED)]][0]
            problems.append(f"device {who[0]!r} would write fronts/{file_stem(who[0])}.*, the refined front of "
                            f"device {base!r}; rename one")
    return problems


def is_mlflow_key(key: str) -> bool:
    """True where MLflow takes ``key`` as a param, metric or tag key on any store: ASCII letters, digits, ``_``,
    ``-``, ``.``, space and ``:``, at most 250 characters, not a path that normalises to another name."""
    return bool(_MLFLOW_KEY.match(key)) and len(key) <= MAX_KEY and key.strip(". ") == key and ".." not in key


def mlflow_key(key: str) -> str:
    """``key`` made an MLflow key (for keys built from a name, e.g. a device's): unsafe characters as ``_``,
    cut to 250 characters (the last 9 a hash of the whole); a safe key is returned unchanged."""
    if is_mlflow_key(key):
        return key
    s = re.sub(r"[^A-Za-z0-9_.\-:]", "_", key).replace("..", "__").strip(". ") or "_"
    if len(s) > MAX_KEY or s != key:
        s = s[:MAX_KEY - 9] + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return s


def tag_filter(key: str, value: Any) -> str:
    """An MLflow search filter on tag ``key`` that matches every run whose tag equals ``value``, whatever
    characters ``value`` holds: a string literal in the quote it lacks (MLflow's filter grammar has no escape
    inside a literal); where it holds both quotes, a ``LIKE`` pattern with ``_`` for each quote, which can also
    match a few other values: callers compare the tag exactly on the runs it returns."""
    s = str(value)
    name = f"tags.`{key.replace('`', '')}`"
    if "'" not in s:
        return f"{name} = '{s}'"
    if '"' not in s:
        return f'{name} = "{s}"'
    pattern = s.replace("'", "_").replace('"', "_")
    return f"{name} LIKE '{pattern}'"


_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*:)[^\s'\"]*@")
_QUERY_SECRET = re.compile(r"([?&;](?:password|passwd|pwd|pass|token|secret|api_key|apikey|access_key|"
                           r"secret_key)=)[^&;\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every password of a URL in it replaced by ``***``: the one in ``scheme://user:PASSWORD@host``
    and the values of ``password=`` / ``token=`` / ``secret=`` query parameters. Other text is unchanged."""
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def redact_tree(obj: Any) -> Any:
    """A copy of a JSON-like tree (a config's ``model_dump``) with every string redacted."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        return {k: redact_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_tree(v) for v in obj]
    return obj


def has_secret(text: str) -> bool:
    return redact(text) != text
