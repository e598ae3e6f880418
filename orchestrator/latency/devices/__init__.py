"""Devices: tabulated (latency tables), measured (real runtimes), remote (Ray nodes), simulated (sim:<n>)."""

from orchestrator.latency.devices.base import (
    DEVICES,
    Device,
    DeviceCatalog,
    DeviceSpec,
    device_names,
    get_device,
    make_device,
)
from orchestrator.latency.devices.measured import MeasuredDevice
from orchestrator.latency.devices.reliability import ReliabilityReport, reliability_check
from orchestrator.latency.devices.remote import RemoteDevice, device_resources
from orchestrator.latency.devices.tabulated import TabulatedDevice

__all__ = [
    "DEVICES",
    "Device",
    "DeviceCatalog",
    "DeviceSpec",
    "MeasuredDevice",
    "ReliabilityReport",
    "RemoteDevice",
    "TabulatedDevice",
    "device_names",
    "device_resources",
    "get_device",
    "make_device",
    "reliability_check",
]
