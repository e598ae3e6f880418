"""The device catalog: the one place device names are resolved (a column of the latency table in use, a
registered runtime such as ``torch-cpu``, or a pattern such as ``sim:<n>``, ``remote:<name>``) and devices built.

Each device type declares its options as a pydantic model with unknown keys rejected, so ``hwnas validate``
reports a bad option with the valid ones before any work. Importing this module registers every built-in
device type (it imports the implementations; none of them imports it back) and then the ``hwnas.devices``
plug-ins.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from orchestrator.errors import DeviceError, HwnasError, UnknownNameError
from orchestrator.latency.devices import (  # noqa: F401  (importing them registers their device types)
    command,
    extras,
    measured,
    plugins,
    remote,
    runtimes,
    simulated,
    tabulated,
)
from orchestrator.latency.devices import lut as lut_devices  # noqa: F401  (registers lut:<device>)
from orchestrator.latency.devices.protocol import Device, DeviceSpec, DeviceType
from orchestrator.latency.devices.registry import DEVICES, PREFIXES
from search_spaces.base import SearchSpace

if TYPE_CHECKING:
    from orchestrator.latency.table import LatencyTable


def load_builtin() -> None:
    """Register the plug-ins' device types (the built-ins are registered by this module's imports)."""
    plugins.load_plugins()  # third-party device types (entry point group hwnas.devices), after the built-ins


def _problems(model: type[BaseModel], options: Mapping[str, Any], what: str) -> list[str]:
    try:
        model.model_validate(dict(options))
    except ValidationError as e:
        fields = ", ".join(f for f in model.model_fields if f != "table")
        unknown = f"unknown option (valid options: {fields})" if fields else f"unknown option: {what} takes no options"
        out = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = unknown if err["type"] == "extra_forbidden" else err["msg"]
            out.append(f"{what} option {loc!r}: {msg}")
        return out
    return []


class DeviceCatalog:
    """Resolves device names for one space and the latency table in use, and builds devices.

    ``table``: the latency table whose columns are tabulated devices (a user's CSV); ``None`` means the
    space's shipped table where it has one (``latency.shipped_tables.SHIPPED_LATENCY``), else no table.
    ``lut``: the lookup table (CSV path) that ``lut:<device>`` names use unless their options give one
    (``latency.lut``).
    """

    def __init__(self, space: SearchSpace, table: LatencyTable | None = None, lut: str | None = None) -> None:
        load_builtin()
        self.space = space
        if table is None and isinstance(getattr(space, "name", None), str):  # the space's shipped table, if any
            from orchestrator.latency.shipped_tables import shipped_latency_table

            table = shipped_latency_table(space)
        self.table = table
        self.lut = lut

    def resolve(self, name: str) -> tuple[DeviceType, str]:
        """The device type of ``name`` and the name's argument (the part after a prefix)."""
        if self.table is not None and name in self.table.devices:
            return tabulated.TABLE_DEVICE, name
        if name in DEVICES:
            return DEVICES.get(name), name
        head, sep, tail = name.partition(":")
        if sep and f"{head}:" in PREFIXES:
            return PREFIXES.get(f"{head}:"), tail
        valid = self.names()
        close = difflib.get_close_matches(name, valid, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownNameError(f"unknown device {name!r}.{hint} Valid devices: {', '.join(valid)}")

    def names(self) -> list[str]:
        tab = list(self.table.devices) if self.table is not None else []
        return list(dict.fromkeys(tab + DEVICES.names() + [PREFIXES.get(p).pattern for p in PREFIXES.names()]))

    def shadowed(self, name: str) -> str | None:
        """Where ``name`` is a column of the table in use that is also a registered device's name (``torch-cpu``)
        or a prefixed one (``sim:3``): what the name would be without the table (the column wins), else None."""
        if self.table is None or name not in self.table.devices:
            return None
        if name in DEVICES:
            return f"the {DEVICES.get(name).kind} device {name!r}"
        head, sep, _ = name.partition(":")
        if sep and f"{head}:" in PREFIXES:
            return f"the {PREFIXES.get(f'{head}:').kind} device {name!r}"
        return None

    def kind(self, name: str) -> str:
        return self.resolve(name)[0].kind

    def problems(self, name: str, options: Mapping[str, Any] | None = None, where: str = "") -> list[str]:
        """Every problem with ``name`` and its options (empty: it can be built)."""
        what = where or f"device {name!r}"
        try:
            dtype, arg = self.resolve(name)
        except KeyError as e:
            return [f"{what}: {e}"]
        opts = self._with_table(name, options or {})
        problems = _problems(dtype.options, opts, what)
        if not problems:
            try:  # the name's argument (sim:<n>) and what only the device can check; building starts nothing
                dtype.build(arg, self.space, dtype.options.model_validate(opts))
            except HwnasError as e:
                problems.append(f"{what}: {e}")
        return problems

    def _with_table(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        opts = dict(options)
        if self.table is not None and name in self.table.devices:
            opts["table"] = self.table  # the catalog's own table (its reference goes into the device's spec)
        if self.lut is not None and name.startswith("lut:") and opts.get("path") is None:
            opts["path"] = self.lut
        return opts

    def make(self, name: str, options: Mapping[str, Any] | None = None,
             defaults: Mapping[str, Any] | None = None) -> Device:
        """Build the device ``name``. ``defaults`` fill options the device type has and ``options`` lack
        (the pipeline's measurement protocol and threads apply to measured devices only)."""
        dtype, arg = self.resolve(name)
        opts = {k: v for k, v in (defaults or {}).items() if k in dtype.options.model_fields}
        opts = self._with_table(name, {**opts, **(options or {})})
        problems = _problems(dtype.options, opts, f"device {name!r}")
        if problems:
            raise DeviceError("; ".join(problems))
        return dtype.build(arg, self.space, dtype.options.model_validate(opts))


def make_device(spec: DeviceSpec, space: SearchSpace) -> Device:
    """Rebuild a device from its spec (in a Ray actor or task)."""
    table = None
    if "table" in spec.options:
        from orchestrator.latency.table import TableRef, load_table_ref

        table = load_table_ref(TableRef.model_validate(spec.options["table"]), space)
    return DeviceCatalog(space, table).make(spec.name, {k: v for k, v in spec.options.items() if k != "table"})


def get_device(name: str, space: SearchSpace, /, **options: Any) -> Device:
    """Make the device ``name`` with ``options`` (the shipped table's devices for NB201)."""
    return DeviceCatalog(space).make(name, options)


def device_names(space: SearchSpace | None = None) -> list[str]:
    if space is None:
        from search_spaces.nb201 import NB201Space

        space = NB201Space()
    return DeviceCatalog(space).names()
