"""Ties and ranks: values equal within float rounding are equal, and tied values share their average rank.

Latencies that differ only by float rounding (a predictor's output for cells it cannot tell apart, a constant
device) are one value; a source that reports whole milliseconds has many exact ties. Ranking ties by their
position in the input (what ``argsort`` does) makes every figure depend on the order of the rows; average
ranks (Spearman's convention, ``scipy.stats.rankdata``'s default) do not.
"""

from __future__ import annotations

import numpy as np

RTOL = 1e-9  # relative difference below which two values are the same value (float rounding, not a measurement)


def snap(values: np.ndarray, rtol: float = RTOL) -> np.ndarray:
    """``values`` (1-D, NaN kept) with every run of values within ``rtol`` (relative) of its neighbour in sorted
    order replaced by the run's smallest value: equal within rounding becomes exactly equal."""
    v = np.asarray(values, dtype=float)
    out = v.copy()
    ok = np.flatnonzero(np.isfinite(v))
    if len(ok) < 2:
        return out
    order = ok[np.argsort(v[ok], kind="stable")]
    s = v[order]
    gap = np.diff(s) > rtol * np.maximum(np.abs(s[1:]), np.abs(s[:-1]))
    start = np.concatenate([[0], np.flatnonzero(gap) + 1])
    group = np.cumsum(np.concatenate([[False], gap]))
    out[order] = s[start][group]
    return out


def is_constant(values: np.ndarray, rtol: float = RTOL) -> bool:
    """Whether the finite entries of ``values`` are all equal within rounding (fewer than two: True)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return len(v) < 2 or bool(np.ptp(v) <= rtol * np.max(np.abs(v)))


def average_ranks(P: np.ndarray, axis: int = 0, rtol: float = RTOL) -> np.ndarray:
    """Ranks along ``axis`` (1-based), values equal within rounding sharing their average rank (Spearman's
    convention): independent of the order of the entries. ``P`` 1-D or 2-D, no NaN; same shape out."""
    P = np.asarray(P, dtype=float)
    if P.ndim == 1:
        return average_ranks(P[:, None], 0, rtol)[:, 0]
    if axis == 1:
        return average_ranks(P.T, 0, rtol).T
    n = P.shape[0]
    if n == 0:
        return np.empty(P.shape)
    # Each column sorted as a contiguous row of the transpose (argsort along axis 0 of a C-order array strides
    # through memory), with the default (unstable) sort: the order among equal values does not matter, every
    # member of a run of equal values gets the run's average rank. The meta-learning of the multi transfer ranks
    # 2,000 x 100 blocks hundreds of times per source set: this was most of its time.
    Q = np.ascontiguousarray(P.T)
    order = np.argsort(Q, axis=1)
    s = np.take_along_axis(Q, order, axis=1)
    a = np.abs(s)
    new = np.ones(Q.shape, dtype=bool)  # where a run of equal values starts, in sorted order
    np.greater(s[:, 1:] - s[:, :-1], rtol * np.maximum(a[:, 1:], a[:, :-1]), out=new[:, 1:])
    starts = np.flatnonzero(new)  # flat index of each run's first member (every row begins with one)
    lengths = np.diff(starts, append=new.size)
    rank = np.repeat(starts % n + (lengths - 1) / 2 + 1, lengths)  # each run's average rank, in sorted order
    R = np.empty(Q.shape)
    R.ravel()[(order + (np.arange(Q.shape[0]) * n)[:, None]).ravel()] = rank
    return np.ascontiguousarray(R.T)
