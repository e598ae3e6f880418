"""Quality metrics of latency predictions."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from orchestrator.ranks import is_constant, snap

SRCC_DIGITS = 12  # decimals kept of a rank correlation (see srcc)


def srcc(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally long vectors (NaN pairs dropped; ties, within float rounding,
    at their average rank). NaN where it is undefined: fewer than 3 pairs, or a side constant (within rounding):
    a ranking against a constant is no agreement and no disagreement.

    Rounded to ``SRCC_DIGITS`` decimals: the coefficient is a ratio of integers (ranks), and the float noise of
    computing it (0.8999999999999998 for one swapped pair of five, 0.9999999999999999 for a perfect ranking)
    must not decide a comparison with a threshold such as ``srcc_threshold: 0.9``."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok], b[ok]
    if is_constant(a) or is_constant(b):
        return float("nan")
    return round(float(spearmanr(snap(a), snap(b))[0]), SRCC_DIGITS)


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE (ms), MAPE (%), share within +-10% (%), and SRCC."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    rel = np.abs(y_pred - y_true) / y_true
    return {
        "rmse_ms": float(np.sqrt(np.mean((y_pred - y_true) ** 2))),
        "mape_pct": float(100 * rel.mean()),
        "within10_pct": float(100 * (rel <= 0.10).mean()),
        "srcc": srcc(y_true, y_pred),
        "n": float(len(y_true)),
    }
