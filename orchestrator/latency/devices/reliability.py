"""Test-retest reliability: are a measured device's rankings signal or noise?"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.latency.metrics import srcc

log = logging.getLogger(__name__)

RELIABLE_SRCC = 0.9


@dataclass(frozen=True)
class ReliabilityReport:
    device: str
    n: int
    srcc: float
    median_cv: float
    first_ms: list[float]
    second_ms: list[float]

    @property
    def reliable(self) -> bool:
        return self.srcc >= RELIABLE_SRCC


def reliability_check(device: Any, archs: Sequence[Mapping[str, Any]], rng: np.random.Generator,
                      progress: Callable[[int], None] | None = None) -> ReliabilityReport:
    """Measure ``archs`` twice (second pass in another order) and report the
    test-retest SRCC; logs a warning below 0.9."""
    if len(archs) < 3:
        from orchestrator.errors import DeviceError

        raise DeviceError(f"a reliability check needs at least 3 architectures, got {len(archs)}")
    first = device.measure_many(archs, progress)
    order = rng.permutation(len(archs))
    second_perm = device.measure_many([archs[i] for i in order], progress)
    second = [None] * len(archs)
    for pos, i in enumerate(order):
        second[i] = second_perm[pos]
    a = [s.median_ms for s in first]
    b = [s.median_ms for s in second]  # type: ignore[union-attr]
    rep = ReliabilityReport(device.name, len(archs), srcc(np.array(a), np.array(b)),
                            float(np.median([s.cv for s in first])), a, b)
    if not rep.reliable:
        log.warning("device %s: test-retest SRCC %.3f < %.1f over %d architectures: its latency rankings are "
                    "mostly noise; raise repeats/batch size or use a launch-free timer", device.name, rep.srcc,
                    RELIABLE_SRCC, rep.n)
    return rep
