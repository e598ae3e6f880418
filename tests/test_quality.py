"""Front quality against the truth over the whole known domain: hypervolume ratio, IGD, budgets, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.search.pareto import hypervolume
from orchestrator.search.quality import LATENCY_SLACK, front_quality, reference_front


def brute_area(acc: np.ndarray, lat: np.ndarray, ref_acc: float, ref_lat: float) -> float:
    """Area of the union of the rectangles [lat, ref_lat] x [ref_acc, acc], cell by cell on the breakpoints."""
    keep = (acc > ref_acc) & (lat < ref_lat)
    acc, lat = acc[keep], lat[keep]
    xs = np.unique(np.r_[lat, ref_lat])
    ys = np.unique(np.r_[acc, ref_acc])
    area = 0.0
    for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
        for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if np.any((lat <= cx) & (acc >= cy)):
                area += (x1 - x0) * (y1 - y0)
    return area


def test_hypervolume_equals_brute_force_on_random_sets():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 25))
        acc, lat = rng.uniform(50, 95, n), rng.uniform(1, 20, n)
        if n > 3:
            acc[1], lat[1] = acc[0], lat[0]  # a duplicate
        ra, rl = float(rng.uniform(40, 80)), float(rng.uniform(10, 25))
        assert hypervolume(acc, lat, ra, rl) == pytest.approx(brute_area(acc, lat, ra, rl), rel=1e-12, abs=1e-12)


def test_reference_is_the_true_front_of_the_whole_domain():
    rng = np.random.default_rng(1)
    acc, true = rng.uniform(60, 95, 300), rng.uniform(1, 30, 300)
    true[5] = np.nan  # unknown rows are left out
    ref = reference_front(acc, true, (0.25, 0.5, 0.75))
    assert ref.n_domain == 299
    known = ~np.isnan(true)
    dominated = [i for i in np.flatnonzero(known)
                 if np.any((acc[known] >= acc[i]) & (true[known] <= true[i])
                           & ((acc[known] > acc[i]) | (true[known] < true[i])))]
    assert len(ref.accuracy) == known.sum() - len(dominated)
    assert ref.point == (pytest.approx(ref.accuracy.min()), pytest.approx(LATENCY_SLACK * ref.latency.max()))
    assert ref.hv == pytest.approx(brute_area(acc[known], true[known], *ref.point))
    assert list(ref.budgets) == [pytest.approx(np.quantile(ref.latency, q)) for q in (0.25, 0.5, 0.75)]


def test_quality_by_hand():
    # the true front over the domain: (70, 1), (80, 2), (90, 4); reference point (70, 4.4)
    acc = np.array([70.0, 80.0, 90.0, 60.0, 75.0])
    true = np.array([1.0, 2.0, 4.0, 3.0, 3.0])
    ref = reference_front(acc, true, (0.5,))
    assert ref.point == (70.0, pytest.approx(4.4)) and ref.hv == pytest.approx(10 * 2.4 + 10 * 0.4)
    assert front_quality(ref, acc[:3], true[:3])["hv_ratio"] == pytest.approx(1.0)
    q = front_quality(ref, acc[[0, 2]], true[[0, 2]])  # without (80, 2): budget 2 ms keeps only 70 %
    assert q["hv_ratio"] == pytest.approx(20 * 0.4 / 28.0) and q["acc_loss_q50"] == pytest.approx(10.0)
    assert q["unserved_budgets"] == 0.0 and q["igd"] > 0
    slow = front_quality(ref, acc[[2]], true[[2]])  # only the most accurate: the 2 ms budget gets nothing
    assert slow["unserved_budgets"] == 1.0 and slow["acc_loss_q50"] == pytest.approx(80.0)
    empty = front_quality(ref, np.zeros(0), np.zeros(0))
    assert empty["hv_ratio"] == 0.0 and empty["unserved_budgets"] == 1.0


def test_degenerate_members_do_not_flatter_the_ratio():
    """The old report's reference point spanned every candidate: a slow, inaccurate one inflated the ratio.
    Against the front region, a chosen set's ratio does not move when such a member is added."""
    rng = np.random.default_rng(2)
    acc, true = rng.uniform(80, 95, 400), rng.uniform(2, 20, 400)
    ref = reference_front(acc, true)
    chosen = rng.choice(400, 15, replace=False)
    base = front_quality(ref, acc[chosen], true[chosen])["hv_ratio"]
    with_junk = front_quality(ref, np.r_[acc[chosen], 10.0], np.r_[true[chosen], 500.0])["hv_ratio"]
    assert with_junk == pytest.approx(base) and base < 1.0


def test_pool_coverage_and_selection_are_separate():
    """A pool that misses the domain's fast end cannot reach 1, whatever is chosen from it; choosing its
    own true front reaches the pool's ratio exactly."""
    rng = np.random.default_rng(3)
    acc = rng.uniform(80, 95, 500)
    true = 1.0 + (acc - 80) / 3 + rng.uniform(0, 2, 500)
    ref = reference_front(acc, true)
    pool = np.flatnonzero(true > np.quantile(true, 0.3))  # no fast cells in the pool
    pool_q = front_quality(ref, acc[pool], true[pool])["hv_ratio"]
    from orchestrator.search.pareto import pareto_mask

    own = pool[pareto_mask(acc[pool], true[pool])]
    assert front_quality(ref, acc[own], true[own])["hv_ratio"] == pytest.approx(pool_q)
    assert pool_q < 0.95


def test_unserved_budgets_are_flagged_one_by_one():
    """unserved_q<NN> says which budget nothing chosen fits (its acc_loss is then the whole accuracy)."""
    acc = np.array([70.0, 80.0, 90.0])
    true = np.array([1.0, 2.0, 4.0])
    ref = reference_front(acc, true, (0.25, 0.5, 0.75))
    assert ref.budgets == pytest.approx((1.5, 2.0, 3.0))
    mid = front_quality(ref, acc[1:], true[1:])  # the 2 and 4 ms members: the 1.5 ms budget unserved
    assert [mid[f"unserved_q{q}"] for q in (25, 50, 75)] == [1.0, 0.0, 0.0] and mid["unserved_budgets"] == 1.0
    assert mid["acc_loss_q25"] == pytest.approx(70.0) and mid["acc_loss_q50"] == pytest.approx(0.0)
    slow = front_quality(ref, acc[[2]], true[[2]])  # only the 4 ms member: no budget served
    assert [slow[f"unserved_q{q}"] for q in (25, 50, 75)] == [1.0, 1.0, 1.0] and slow["unserved_budgets"] == 3.0
    assert slow["acc_loss_q50"] == pytest.approx(80.0)  # the whole accuracy at that budget
    full = front_quality(ref, acc, true)
    assert [full[f"unserved_q{q}"] for q in (25, 50, 75)] == [0.0, 0.0, 0.0]
    empty = front_quality(ref, np.zeros(0), np.zeros(0))
    assert all(empty[f"unserved_q{q}"] == 1.0 for q in (25, 50, 75))
