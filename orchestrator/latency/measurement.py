"""The measurement protocol: warm-up, timed repeats, median and spread.

Timing uses ``time.perf_counter_ns`` around ``number`` back-to-back calls per
repeat; the sample's latency is the median over repeats and its spread the
coefficient of variation (std / mean) of the repeats.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from pydantic import ConfigDict, Field

from orchestrator.schema import Schema

log = logging.getLogger(__name__)


class MeasurementProtocol(Schema):
    model_config = ConfigDict(frozen=True)

    warmup: int = Field(5, ge=0, description="untimed calls before timing")
    repeats: int = Field(15, ge=3, description="timed repeats; the median is reported")
    number: int = Field(1, ge=1, description="minimum back-to-back calls per timed repeat")
    min_repeat_ms: float = Field(
        20.0, ge=0, description="raise the calls per repeat until one repeat takes at least this long"
    )


@dataclass(frozen=True)
class LatencySample:
    """One architecture's measured latency on one device."""

    arch: str
    median_ms: float
    cv: float
    repeats: int
    p10_ms: float
    p90_ms: float
    n_params: int | None = None  # parameters of the network timed (None: not a network, e.g. a simulator)

    def to_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)

    def with_params(self, n: int) -> LatencySample:
        return replace(self, n_params=int(n))


def summarize(arch: str, times_ms: Sequence[float]) -> LatencySample:
    t = np.asarray(times_ms, dtype=float)
    mean = float(t.mean())
    return LatencySample(
        arch=arch,
        median_ms=float(np.median(t)),
        cv=float(t.std() / mean) if mean > 0 else 0.0,
        repeats=len(t),
        p10_ms=float(np.percentile(t, 10)),
        p90_ms=float(np.percentile(t, 90)),
    )


def time_callable(arch: str, fn: Callable[[], object], protocol: MeasurementProtocol) -> LatencySample:
    """Time ``fn`` with ``protocol`` on the CPU clock (synchronous runtimes)."""
    for _ in range(protocol.warmup):
        fn()
    t0 = time.perf_counter_ns()
    fn()
    once_ms = max((time.perf_counter_ns() - t0) / 1e6, 1e-6)
    number = max(protocol.number, math.ceil(protocol.min_repeat_ms / once_ms))
    times = []
    for _ in range(protocol.repeats):
        t0 = time.perf_counter_ns()
        for _ in range(number):
            fn()
        times.append((time.perf_counter_ns() - t0) / 1e6 / number)
    return summarize(arch, times)


def pin_cores(cores: Sequence[int] | None) -> None:
    """Pin this process (and threads it starts later) to ``cores``, so devices
    measured side by side on one machine do not share cores."""
    if cores is None:
        return
    if not hasattr(os, "sched_setaffinity"):
        log.warning("core pinning is not supported on this platform; measuring unpinned")
        return
    available = os.sched_getaffinity(0)
    bad = sorted(set(cores) - available)
    if bad:
        from orchestrator.errors import DeviceError

        raise DeviceError(f"cannot pin to cores {bad}: this process may use cores {sorted(available)}")
    os.sched_setaffinity(0, set(cores))
