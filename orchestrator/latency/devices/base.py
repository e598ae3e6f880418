"""Kept for imports written before issue 19: the Device protocol moved to ``protocol.py``, the registries to
``registry.py``, the catalog to ``catalog.py``. Import from those (or from ``orchestrator.latency.devices``);
nothing in this repository imports this module."""

from orchestrator.latency.devices.catalog import DeviceCatalog, device_names, get_device, make_device
from orchestrator.latency.devices.protocol import Device, DeviceSpec, DeviceType, NoOptions, SampledDevice
from orchestrator.latency.devices.registry import DEVICES, PREFIXES

__all__ = ["DEVICES", "PREFIXES", "Device", "DeviceCatalog", "DeviceSpec", "DeviceType", "NoOptions",
           "SampledDevice", "device_names", "get_device", "make_device"]
