"""Pareto utilities, by hand on small cases and against brute force on the shipped NB201 data."""

import numpy as np
import pytest

from orchestrator.latency.table import shipped_accuracy
from orchestrator.search.pareto import (
    ParetoError,
    accuracy_loss_at_budgets,
    best_accuracy_at_budgets,
    hypervolume,
    igd,
    pareto_front,
    pareto_mask,
)


def test_front_by_hand():
    acc = [0.5, 0.7, 0.6, 0.9, 0.9, 0.4]
    lat = [1.0, 2.0, 2.5, 4.0, 5.0, 0.5]
    assert pareto_mask(acc, lat).tolist() == [True, True, False, True, False, True]
    idx, a, lat_f = pareto_front(acc, lat)
    assert idx.tolist() == [5, 0, 1, 3] and np.all(np.diff(lat_f) > 0) and np.all(np.diff(a) > 0)
    assert pareto_mask([0.5, 0.5], [1.0, 1.0]).tolist() == [True, True]  # duplicates both kept


def test_hypervolume_by_hand():
    # staircase of (acc, lat): (0.5, 1), (0.7, 2), (0.9, 4); reference (0, 5)
    hv = hypervolume([0.5, 0.7, 0.9], [1.0, 2.0, 4.0], ref_accuracy=0.0, ref_latency=5.0)
    expected = 0.5 * (2 - 1) + 0.7 * (4 - 2) + 0.9 * (5 - 4)
    assert hv == pytest.approx(expected)
    # dominated points and points beyond the reference change nothing
    assert hypervolume([0.5, 0.7, 0.9, 0.6, 0.95], [1.0, 2.0, 4.0, 3.0, 6.0], 0.0, 5.0) == pytest.approx(expected)
    assert hypervolume([0.5], [9.0], 0.0, 5.0) == 0.0


def test_igd_and_budgets():
    ref_a, ref_l = [0.5, 0.7, 0.9], [1.0, 2.0, 4.0]
    assert igd(ref_a, ref_l, ref_a, ref_l) == 0.0
    assert igd([0.5], [1.0], ref_a, ref_l) > 0.3
    assert best_accuracy_at_budgets(ref_a, ref_l, [0.5, 1.5, 10]).tolist()[1:] == [0.5, 0.9]
    loss = accuracy_loss_at_budgets([0.5, 0.8], [1.0, 4.0], ref_a, ref_l, [0.5, 2.0, 4.0])
    assert np.isnan(loss[0]) and loss[1] == pytest.approx(0.2) and loss[2] == pytest.approx(0.1)


def test_bad_input():
    with pytest.raises(ParetoError, match="same length"):
        pareto_mask([1, 2], [1])
    with pytest.raises(ParetoError, match="NaN"):
        hypervolume([np.nan], [1.0], 0, 2)


def test_shipped_nb201_front_matches_brute_force(shipped):
    acc_by_arch = shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")
    lat = shipped.column("pixel3")
    acc = np.array([acc_by_arch[a] for a in shipped.archs])
    ok = ~np.isnan(lat)
    acc, lat = acc[ok], lat[ok]
    mask = pareto_mask(acc, lat)
    brute = np.array([not np.any((acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i])))
                      for i in range(len(acc))])
    assert np.array_equal(mask, brute) and 3 <= mask.sum() < 100
    ref = (acc.min() - 1, lat.max() * 1.1)
    assert hypervolume(acc, lat, *ref) == pytest.approx(hypervolume(acc[mask], lat[mask], *ref))
