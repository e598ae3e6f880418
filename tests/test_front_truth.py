"""Fronts chosen on an estimate, judged at the truth (issue 20, turn 7): ``judge_estimate_front`` against a
brute-force computation on a synthetic domain."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.search.front_truth import judge_estimate_front


def brute_front(acc: np.ndarray, lat: np.ndarray, idx: np.ndarray) -> list[int]:
    """Members of ``idx`` no other member dominates (accuracy up, latency down), by pairwise comparison."""
    return [i for i in idx if not any((acc[j] >= acc[i] and lat[j] <= lat[i]) and (acc[j] > acc[i] or lat[j] < lat[i])
                                      for j in idx)]


def brute_hv(acc: np.ndarray, lat: np.ndarray, ra: float, rl: float) -> float:
    """The area {(a, l): ra <= a <= acc_i, lat_i <= l <= rl} united over the points, strip by strip between
    consecutive distinct latencies."""
    xs = sorted({*(v for v in lat if v < rl), rl})
    area = 0.0
    for lo, hi in zip(xs[:-1], xs[1:], strict=True):
        h = max([a - ra for a, v in zip(acc, lat, strict=True) if v <= lo and a > ra], default=0.0)
        area += h * (hi - lo)
    return area


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coverage_selection_and_losses_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 60
    lat = rng.uniform(1.0, 10.0, n)
    truth = 40 + 5 * np.log(lat) + rng.normal(0, 3, n)  # slower tends to be more accurate: a real trade-off
    estimate = truth + rng.normal(0, 4, n)  # a noisy estimate
    estimate[rng.choice(n, 10, replace=False)] = np.nan  # not scored: never chosen
    pool = np.sort(rng.choice(n, 25, replace=False))

    got = judge_estimate_front(estimate, truth, lat, pool)

    everything = np.arange(n)
    ref_idx = brute_front(truth, lat, everything)
    ra, rl = min(truth[ref_idx]), 1.1 * max(lat[ref_idx])
    hv_ref = brute_hv(truth[ref_idx], lat[ref_idx], ra, rl)
    scored = np.array([i for i in pool if np.isfinite(estimate[i])])
    chosen = brute_front(estimate, lat, scored)
    best = brute_front(truth, lat, pool)
    hv_chosen = brute_hv(truth[chosen], lat[chosen], ra, rl)
    hv_pool = brute_hv(truth[best], lat[best], ra, rl)
    assert got["chosen_hv_ratio"] == pytest.approx(hv_chosen / hv_ref)
    assert got["coverage"] == pytest.approx(hv_pool / hv_ref)
    assert got["selection"] == pytest.approx(hv_chosen / hv_pool)
    assert got["chosen_hv_ratio"] == pytest.approx(got["coverage"] * got["selection"])
    assert got["n_chosen"] == len(chosen) and got["n_pool"] == len(pool)
    for q in (0.25, 0.5, 0.75):
        budget = np.quantile(lat[ref_idx], q)
        top = max(truth[i] for i in ref_idx if lat[i] <= budget)
        fit_c = [truth[i] for i in chosen if lat[i] <= budget]
        fit_p = [truth[i] for i in best if lat[i] <= budget]
        assert got[f"acc_loss_q{round(100 * q)}"] == pytest.approx(top - (max(fit_c) if fit_c else 0.0))
        assert got[f"pool_acc_loss_q{round(100 * q)}"] == pytest.approx(top - (max(fit_p) if fit_p else 0.0))


def test_an_estimate_in_the_truths_order_selects_perfectly_and_a_reversed_one_does_not():
    rng = np.random.default_rng(3)
    lat = rng.uniform(1.0, 10.0, 80)
    truth = 40 + 5 * np.log(lat) + rng.normal(0, 3, 80)
    pool = np.arange(0, 80, 2)
    same = judge_estimate_front(2 * truth + 7, truth, lat, pool)  # any increasing function of the truth
    assert same["selection"] == pytest.approx(1.0)
    assert same["chosen_hv_ratio"] == pytest.approx(same["coverage"]) and same["coverage"] < 1.0
    whole = judge_estimate_front(truth, truth, lat, np.arange(80))
    assert whole["chosen_hv_ratio"] == pytest.approx(1.0) and whole["acc_loss_q50"] == pytest.approx(0.0)
    assert judge_estimate_front(-truth, truth, lat, pool)["selection"] < 0.9
