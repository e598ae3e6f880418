"""Devices: tabulated (latency tables), measured (real runtimes), remote (Ray nodes), command, lookup tables and
simulated (sim:<n>). ``protocol`` (the Device interface), ``registry`` (device types by name) and ``catalog``
(name resolution) are separate modules; the implementations import the first two only."""

from orchestrator.latency.devices.catalog import DeviceCatalog, device_names, get_device, make_device
from orchestrator.latency.devices.measured import MeasuredDevice
from orchestrator.latency.devices.protocol import Device, DeviceSpec
from orchestrator.latency.devices.registry import DEVICES
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
