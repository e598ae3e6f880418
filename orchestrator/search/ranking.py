"""How well an accuracy estimate ranks architectures against their true accuracy.

``rank_agreement(estimate, truth, top_fraction)``: Spearman's rho and Kendall's tau-b (scipy; ties get
average ranks) and the top-q recall: of the ceil(q n) architectures with the highest true accuracy, the share
that are also among the ceil(q n) with the highest estimate (ties in the estimate broken against the
architecture, so a constant estimate does not get credit by position).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr


def top_recall(estimate: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray,
               top_fraction: float = 0.05) -> float:
    """Share of the true top ceil(q n) that the estimate's top ceil(q n) holds (ties counted pessimistically)."""
    e = np.asarray(estimate, dtype=float)
    t = np.asarray(truth, dtype=float)
    if len(e) != len(t) or len(e) == 0:
        raise ValueError(f"estimate and truth need the same non-zero length, got {len(e)} and {len(t)}")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must lie in (0, 1], got {top_fraction}")
    k = math.ceil(top_fraction * len(e))
    true_top = np.argsort(-t, kind="stable")[:k]
    # the estimate's k-th best value; an architecture of the true top counts only if strictly above it, or
    # at it while there is room for every architecture tied there
    kth = np.sort(e)[::-1][k - 1]
    above = e > kth
    room = k - int(above.sum())
    tied = int((e == kth).sum())
    hits = float(above[true_top].sum()) + (e[true_top] == kth).sum() * (room / tied if tied else 0.0)
    return float(hits) / k


def rank_agreement(estimate: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray,
                   top_fraction: float = 0.05) -> dict[str, float]:
    """{'n', 'srcc', 'kendall_tau', 'top_recall'} of ``estimate`` against ``truth`` (NaN pairs left out)."""
    e = np.asarray(estimate, dtype=float)
    t = np.asarray(truth, dtype=float)
    ok = ~(np.isnan(e) | np.isnan(t))
    e, t = e[ok], t[ok]
    if len(e) < 3:
        raise ValueError(f"rank agreement needs at least 3 architectures with both values, got {len(e)}")
    return {"n": float(len(e)), "srcc": float(spearmanr(e, t)[0]), "kendall_tau": float(kendalltau(e, t)[0]),
            "top_recall": top_recall(e, t, top_fraction)}
