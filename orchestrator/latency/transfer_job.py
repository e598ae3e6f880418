"""Transfer to many targets at once: the engine behind `hwnas latency transfer`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.errors import TransferError
from orchestrator.latency.table import LatencyTable
from orchestrator.latency.transfer import MIN_SAMPLES, TRANSFERS, SourceSet, adapt
from search_spaces.base import SearchSpace, encode_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetResult:
    target: str
    k: int
    method: str
    predictions: np.ndarray


def validate_targets(sources: LatencyTable, targets: LatencyTable) -> None:
    """Every target has >= 3 samples and overlaps the sources; lists every problem at once."""
    problems = []
    src_rows = set(sources.archs)
    measured_by_any = ~np.all(np.isnan(sources.values), axis=1)
    src_measured = {a for a, m in zip(sources.archs, measured_by_any, strict=True) if m}
    for t in targets.devices:
        archs, _ = targets.measured(t)
        if len(archs) < MIN_SAMPLES:
            problems.append(f"target {t!r} has {len(archs)} measured architectures; measure at least {MIN_SAMPLES}")
        elif not (set(archs) & src_rows & src_measured):
            problems.append(
                f"target {t!r}: none of its {len(archs)} measured architectures is measured on the source devices; "
                f"measure the target on architectures from the sources' table"
            )
    if problems:
        raise TransferError(f"{targets.source}: " + "; ".join(problems))


def transfer_many(space: SearchSpace, sources: LatencyTable, targets: LatencyTable, predict_archs: Sequence[str],
                  method: str = "auto", seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> list[TargetResult]:
    """Adapt to every target column of ``targets`` and predict ``predict_archs``."""
    TRANSFERS.get(method)
    validate_targets(sources, targets)
    t0 = time.perf_counter()
    src = SourceSet.from_table(sources, space, seed=seed)
    X_pred = encode_ids(space, list(predict_archs))
    src.latency(X_pred)  # computed once, cached for every target
    log.info("sources %s ready in %.2fs", src.names, time.perf_counter() - t0)
    out = []
    for i, t in enumerate(targets.devices):
        archs, y = targets.measured(t)
        rng = np.random.default_rng([seed, i])
        pred = adapt(method, src, encode_ids(space, archs), y, rng)
        chosen = getattr(pred, "chosen_method", method)
        out.append(TargetResult(t, len(y), chosen, np.asarray(pred.predict(X_pred), dtype=float)))
        if progress is not None:
            progress(1)
    log.info("%d targets adapted in %.2fs", len(out), time.perf_counter() - t0)
    return out
