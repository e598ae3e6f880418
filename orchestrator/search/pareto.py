"""Pareto utilities for (accuracy up, latency down).

Points are given as two arrays, ``accuracy`` (higher is better) and
``latency`` (lower is better), in any units. The hypervolume is exact: in two
dimensions, a sweep over the front sorted by latency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.errors import HwnasError
from orchestrator.ranks import snap


class ParetoError(HwnasError, ValueError):
    """Objective arrays that cannot be compared (shapes, NaN, reference point)."""


def _arrays(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(accuracy, dtype=float).ravel()
    lat = np.asarray(latency, dtype=float).ravel()
    if a.shape != lat.shape:
        raise ParetoError(f"accuracy and latency need the same length, got {a.size} and {lat.size}")
    if np.isnan(a).any() or np.isnan(lat).any():
        raise ParetoError("accuracy and latency must not contain NaN; drop unevaluated points first")
    return a, lat


def pareto_mask(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points. A point is dominated if another has accuracy >= and
    latency <= with at least one strict; values equal within float rounding are equal (``ranks.snap``: six
    predictions of 5.0 ms that differ in the 15th digit are one latency); exact duplicates are all kept."""
    a, lat = _arrays(accuracy, latency)
    a, lat = snap(a), snap(lat)
    order = np.lexsort((-a, lat))  # by latency ascending, then accuracy descending
    mask = np.zeros(a.size, dtype=bool)
    best = -np.inf
    prev: tuple[float, float] | None = None
    for i in order:
        if a[i] > best:
            mask[i] = True
            best = a[i]
            prev = (a[i], lat[i])
        elif prev is not None and a[i] == prev[0] and lat[i] == prev[1]:
            mask[i] = True  # an exact duplicate of a front point
    return mask


def pareto_front(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, accuracy, latency) of the non-dominated points, sorted by latency."""
    a, lat = _arrays(accuracy, latency)
    idx = np.where(pareto_mask(a, lat))[0]
    idx = idx[np.argsort(lat[idx], kind="stable")]
    return idx, a[idx], lat[idx]


def hypervolume(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray,
                ref_accuracy: float, ref_latency: float) -> float:
    """Area dominated by the points and bounded by the reference point (worst accuracy, worst latency).
    Points that do not dominate the reference point contribute nothing."""
    a, lat = _arrays(accuracy, latency)
    keep = (a > ref_accuracy) & (lat < ref_latency)
    if not keep.any():
        return 0.0
    _, fa, fl = pareto_front(a[keep], lat[keep])  # by latency ascending, so accuracy ascending
    # the staircase: each front point owns the slab from its latency to the next one's (or the reference)
    right = np.append(fl[1:], ref_latency)
    return float(np.sum((right - fl) * (fa - ref_accuracy)))


def igd(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray,
        ref_accuracy: Sequence[float] | np.ndarray, ref_latency: Sequence[float] | np.ndarray) -> float:
    """Inverted generational distance: mean, over the reference front's points, of the distance to the
    nearest point found, each objective scaled by the reference front's range (0 = front recovered)."""
    a, lat = _arrays(accuracy, latency)
    ra, rl = _arrays(ref_accuracy, ref_latency)
    if a.size == 0 or ra.size == 0:
        raise ParetoError("igd needs at least one point and one reference point")
    sa = max(float(np.ptp(ra)), 1e-12)
    sl = max(float(np.ptp(rl)), 1e-12)
    d = np.hypot((ra[:, None] - a[None, :]) / sa, (rl[:, None] - lat[None, :]) / sl)
    return float(d.min(axis=1).mean())


def best_accuracy_at_budgets(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray,
                             budgets: Sequence[float]) -> np.ndarray:
    """Best accuracy among points with latency <= budget, per budget (NaN where none fits)."""
    a, lat = _arrays(accuracy, latency)
    out = np.full(len(budgets), np.nan)
    for j, b in enumerate(budgets):
        fit = lat <= b
        if fit.any():
            out[j] = a[fit].max()
    return out


def accuracy_loss_at_budgets(accuracy: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray,
                             ref_accuracy: Sequence[float] | np.ndarray, ref_latency: Sequence[float] | np.ndarray,
                             budgets: Sequence[float]) -> np.ndarray:
    """Accuracy lost against a reference front at each latency budget (reference best minus found best;
    NaN where the reference has nothing under the budget, the reference best where nothing found fits)."""
    ref = best_accuracy_at_budgets(ref_accuracy, ref_latency, budgets)
    got = best_accuracy_at_budgets(accuracy, latency, budgets)
    return np.where(np.isnan(ref), np.nan, ref - np.nan_to_num(got, nan=0.0))


# -- N objectives (all minimised) ------------------------------------------------------------------------------

def _points(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    if p.ndim != 2:
        raise ParetoError(f"points must be a 2-D array (n points, d objectives), got shape {p.shape}")
    if np.isnan(p).any():
        raise ParetoError("points must not contain NaN; drop unevaluated points first")
    return p


def pareto_mask_nd(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``points`` (every objective minimised; negate one to maximise it). A row is
    dominated if another is <= in every objective and < in one; values equal within float rounding are equal;
    exact duplicates are all kept."""
    p = _points(points)
    p = np.column_stack([snap(c) for c in p.T]) if p.size else p
    n = len(p)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated_by = np.all(p <= p[i], axis=1) & np.any(p < p[i], axis=1)
        if dominated_by.any():
            mask[i] = False
            continue
        # i dominates these: drop them now (fewer rows to test later)
        mask &= ~(np.all(p[i] <= p, axis=1) & np.any(p[i] < p, axis=1))
    return mask


def hypervolume_nd(points: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float]) -> float:
    """Exact hypervolume of ``points`` (every objective minimised) bounded by ``ref``: slices along the
    last objective down to the two-dimensional staircase. Points not strictly better than ``ref`` in every
    objective add nothing. Exponential in the dimension: meant for 2-4 objectives and fronts of hundreds."""
    p = _points(points)
    r = np.asarray(ref, dtype=float).ravel()
    if p.size and p.shape[1] != r.size:
        raise ParetoError(f"points have {p.shape[1]} objectives, the reference point {r.size}")
    p = p[np.all(p < r, axis=1)] if p.size else p
    if len(p) == 0:
        return 0.0
    p = p[pareto_mask_nd(p)]
    return _hv(p, r)


def _hv(p: np.ndarray, r: np.ndarray) -> float:
    d = p.shape[1]
    if d == 1:
        return float(r[0] - p[:, 0].min())
    if d == 2:
        # maximise -x0 against latency-like x1: reuse the staircase (accuracy = -x0)
        return hypervolume(-p[:, 0], p[:, 1], -r[0], r[1])
    order = np.argsort(p[:, -1], kind="stable")
    p = p[order]
    total = 0.0
    for i in range(len(p)):
        upper = p[i + 1, -1] if i + 1 < len(p) else r[-1]
        depth = upper - p[i, -1]
        if depth <= 0:
            continue
        sub = p[: i + 1, :-1]
        total += depth * _hv(sub if sub.shape[1] <= 2 else sub[pareto_mask_nd(sub)], r[:-1])
    return float(total)
