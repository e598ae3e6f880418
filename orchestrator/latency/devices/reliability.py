"""Test-retest reliability: are a device's latency rankings signal or noise?"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.errors import DeviceError
from orchestrator.latency.metrics import srcc

log = logging.getLogger(__name__)

RELIABLE_SRCC = 0.9


@dataclass(frozen=True)
class ReliabilityReport:
    device: str
    n: int
    srcc: float
    first_ms: list[float]
    second_ms: list[float]

    @property
    def reliable(self) -> bool:
        return self.srcc >= RELIABLE_SRCC

    def as_dict(self) -> dict[str, Any]:
        return {"retest_n": self.n, "retest_srcc": self.srcc, "retest_reliable": self.reliable}


def reliability_check(device: Any, arch_ids: Sequence[str], rng: np.random.Generator,
                      first_ms: Sequence[float] | None = None) -> ReliabilityReport:
    """Measure ``arch_ids`` (again, if ``first_ms`` holds a first pass) in another order and report the
    test-retest SRCC; logs a warning below 0.9."""
    ids = list(arch_ids)
    if len(ids) < 3:
        raise DeviceError(f"a reliability check needs at least 3 architectures, got {len(ids)}")
    first = np.asarray(first_ms if first_ms is not None else device.latency_ms(ids), dtype=float)
    order = rng.permutation(len(ids))
    second = np.empty(len(ids))
    second[order] = device.latency_ms([ids[i] for i in order])
    rep = ReliabilityReport(device.name, len(ids), srcc(first, second), [float(v) for v in first],
                            [float(v) for v in second])
    if not rep.reliable:
        log.warning("device %s: test-retest SRCC %.3f < %.1f over %d architectures: its latency rankings are "
                    "mostly noise; raise repeats/batch size, measure on an idle machine or use a launch-free "
                    "timer", device.name, rep.srcc, RELIABLE_SRCC, rep.n)
    return rep
