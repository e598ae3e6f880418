"""The registries of device types: exact names (``torch-cpu``, ``onnxrt-cpu``, ``cuda``, ...) and name prefixes
(``sim:``, ``remote:``, ``lut:``, ``command:``). Each implementation module registers its types on import;
``catalog.py`` imports them all (and the ``hwnas.devices`` plug-ins) before it resolves a name."""

from __future__ import annotations

from orchestrator.latency.devices.protocol import DeviceType
from orchestrator.registry import Registry

DEVICES: Registry[DeviceType] = Registry("device")  # exact names: torch-cpu, onnxrt-cpu, cuda
PREFIXES: Registry[DeviceType] = Registry("device name prefix")  # sim:, remote:
