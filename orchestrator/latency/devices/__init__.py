"""Devices: measured (real runtimes), tabulated (CSV tables), remote (Ray nodes)."""

from orchestrator.latency.devices.base import DEVICES, Device, MeasuredDevice, get_device
from orchestrator.latency.devices.reliability import ReliabilityReport, reliability_check
from orchestrator.latency.devices.remote import RemoteDevice, device_resources
from orchestrator.latency.devices.tabulated import TabulatedDevice

__all__ = [
    "DEVICES",
    "Device",
    "MeasuredDevice",
    "ReliabilityReport",
    "RemoteDevice",
    "TabulatedDevice",
    "device_resources",
    "get_device",
    "reliability_check",
]
