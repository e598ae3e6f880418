"""Device plug-ins: third-party device types registered through the ``hwnas.devices`` entry point group.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."hwnas.devices"]
    my-npu = "my_pkg.hwnas:NPU"          # an exact device name
    "board:" = "my_pkg.hwnas:BOARD"      # a prefix: board:<name>

Each entry point loads a :class:`~orchestrator.latency.devices.protocol.DeviceType` (or a callable taking no
arguments that returns one): its pydantic options model (``extra="forbid"``) and its factory
``build(name, space, options) -> Device``. A name ending in ``:`` registers a prefix (its ``pattern`` is shown
by ``hwnas list``). Plug-ins then appear in ``hwnas list``, ``hwnas validate`` and the catalog like built-ins.

A plug-in that fails to load, returns something else, or takes a built-in's name is skipped with a warning
naming its distribution and entry point; :func:`plugin_errors` lists those problems.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import EntryPoint, entry_points

from orchestrator.latency.devices.protocol import DeviceType
from orchestrator.latency.devices.registry import DEVICES, PREFIXES

log = logging.getLogger(__name__)

GROUP = "hwnas.devices"
_seen: set[tuple[str, str]] = set()  # (name, value) of entry points handled
_errors: dict[str, str] = {}
_path_loaded: tuple[str, ...] | None = None


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    who = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    return f"device plug-in {ep.name!r} = {ep.value!r} (from {who})"


def _register(ep: EntryPoint) -> None:
    obj = ep.load()
    if not isinstance(obj, DeviceType) and callable(obj):
        obj = obj()
    if not isinstance(obj, DeviceType):
        raise TypeError(f"loads a {type(obj).__name__}, not an orchestrator.latency.devices.protocol.DeviceType")
    dist = getattr(ep, "dist", None)
    help_ = f"{obj.help} [plug-in: {dist.name if dist is not None else ep.value}]"
    if ep.name.endswith(":"):
        if not obj.pattern:
            raise TypeError(f"prefix {ep.name!r} needs a DeviceType with a pattern, e.g. {ep.name}<name>")
        PREFIXES.add(ep.name, obj, help=help_)
    else:
        DEVICES.add(ep.name, obj, help=help_)


def load_plugins() -> None:
    """Register every ``hwnas.devices`` entry point not registered yet (rescanned when ``sys.path`` changes)."""
    global _path_loaded
    if _path_loaded == tuple(sys.path):
        return
    _path_loaded = tuple(sys.path)
    for ep in entry_points(group=GROUP):
        key = (ep.name, ep.value)
        if key in _seen:
            continue
        _seen.add(key)
        try:
            _register(ep)
        except Exception as e:  # a broken third-party package must not break the built-ins
            msg = f"{_describe(ep)} skipped: {type(e).__name__}: {e}"
            _errors[ep.name] = msg
            log.warning("%s", msg)


def plugin_errors() -> dict[str, str]:
    """Entry point name -> why that plug-in was skipped."""
    return dict(_errors)
