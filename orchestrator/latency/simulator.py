"""Kept for imports written before issue 19: the simulated devices moved to
``orchestrator.latency.devices.simulated``; nothing in this repository imports this module."""

from orchestrator.latency.devices.simulated import *  # noqa: F403
