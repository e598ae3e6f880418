"""Rank agreement of an accuracy estimate with the truth (issue 20), against brute force on synthetic data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from orchestrator.search.ranking import rank_agreement, top_recall


def brute_tau(e, t):
    """Kendall's tau-a by counting every pair (equal to tau-b without ties)."""
    s = 0
    for i, j in itertools.combinations(range(len(e)), 2):
        s += np.sign(e[i] - e[j]) * np.sign(t[i] - t[j])
    return s / (len(e) * (len(e) - 1) / 2)


def brute_srcc(e, t):
    """Spearman's rho without ties: 1 - 6 sum d^2 / (n (n^2 - 1))."""
    re = np.empty(len(e))
    rt = np.empty(len(t))
    re[np.argsort(e)] = np.arange(len(e))
    rt[np.argsort(t)] = np.arange(len(t))
    n = len(e)
    return 1 - 6 * ((re - rt) ** 2).sum() / (n * (n * n - 1))


def brute_recall(e, t, q):
    k = math.ceil(q * len(e))
    true_top = set(sorted(range(len(t)), key=lambda i: -t[i])[:k])
    est_top = set(sorted(range(len(e)), key=lambda i: -e[i])[:k])
    return len(true_top & est_top) / k


@pytest.mark.parametrize("noise", [0.0, 0.3, 1.0, 5.0])
def test_metrics_equal_brute_force_on_a_synthetic_ranking(noise):
    rng = np.random.default_rng(int(noise * 10))
    t = rng.normal(size=120)
    e = t + noise * rng.normal(size=120)
    got = rank_agreement(e, t, top_fraction=0.1)
    assert got["n"] == 120
    assert got["kendall_tau"] == pytest.approx(brute_tau(e, t), abs=1e-12)
    assert got["srcc"] == pytest.approx(brute_srcc(e, t), abs=1e-12)
    assert got["top_recall"] == pytest.approx(brute_recall(e, t, 0.1))
    if noise == 0.0:
        assert got["srcc"] == pytest.approx(1.0) and got["kendall_tau"] == pytest.approx(1.0)
        assert got["top_recall"] == 1.0


def test_reversed_and_tied_estimates():
    t = np.arange(20.0)
    got = rank_agreement(-t, t, top_fraction=0.05)
    assert got["srcc"] == pytest.approx(-1.0) and got["kendall_tau"] == pytest.approx(-1.0)
    assert got["top_recall"] == 0.0
    # a constant estimate ranks nothing: top recall is the chance share k / n, not credit by position
    assert top_recall(np.ones(20), t, 0.1) == pytest.approx(2 / 20)
    # NaN pairs are left out
    e = t.copy()
    e[3] = np.nan
    assert rank_agreement(e, t)["n"] == 19
