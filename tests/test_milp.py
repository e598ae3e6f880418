"""The MILP front is exact: it equals the brute-force front of the same additive objectives."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchestrator.errors import ConfigError
from orchestrator.search.milp import milp_front, space_model, table_model
from orchestrator.search.pareto import pareto_mask
from search_spaces.base import get_space
from search_spaces.nb201 import OPS


@pytest.fixture(scope="module")
def all_nb201(space):
    ids = [space.arch_id({"ops": list(ops)}) for ops in itertools.product(OPS, repeat=6)]
    from search_spaces.base import encode_ids

    return ids, encode_ids(space, ids)


def _front_values(acc, lat):
    m = pareto_mask(acc, lat)
    return sorted(zip(np.round(acc[m], 9), np.round(lat[m], 9), strict=True))


def test_encoding_is_exact_for_every_nb201_cell(space, all_nb201):
    """E v reproduces the 60-feature encoding (live edges included) of all 15,625 cells: maximising
    random linear objectives over the MILP gives the brute-force optimum."""
    ids, X = all_nb201
    model = space_model(space)
    rng = np.random.default_rng(0)
    for _ in range(4):
        c = rng.normal(size=X.shape[1])
        front = milp_front(model, c, 0.0, np.zeros_like(c), 0.0, max_points=1)
        best = front.points[0]
        assert best.accuracy == pytest.approx((X @ c).max(), abs=1e-9)
        assert np.dot(X[ids.index(best.arch_id)], c) == pytest.approx(best.accuracy, abs=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_nb201_front_equals_brute_force(space, all_nb201, seed):
    ids, X = all_nb201
    rng = np.random.default_rng(seed)
    a = rng.normal(size=X.shape[1])
    lat_c = np.abs(rng.normal(size=X.shape[1]))  # latency: positive per-op costs
    front = milp_front(space_model(space), a, 70.0, lat_c, 1.0)
    assert front.complete
    got = sorted((round(p.accuracy, 9), round(p.latency_ms, 9)) for p in front.points)
    assert got == _front_values(X @ a + 70.0, X @ lat_c + 1.0)
    for p in front.points:  # decoded architectures carry the values reported
        x = X[ids.index(p.arch_id)]
        assert x @ a + 70.0 == pytest.approx(p.accuracy) and x @ lat_c + 1.0 == pytest.approx(p.latency_ms)


def test_table_model_matches_table_front(space, shipped):
    ids = shipped.archs[:300]
    from search_spaces.base import encode_ids

    X = encode_ids(space, ids)
    rng = np.random.default_rng(3)
    a, lat_c = rng.normal(size=X.shape[1]), np.abs(rng.normal(size=X.shape[1]))
    front = milp_front(table_model(space, ids), a, 0.0, lat_c, 0.0)
    got = sorted((round(p.accuracy, 9), round(p.latency_ms, 9)) for p in front.points)
    assert got == _front_values(X @ a, X @ lat_c)
    assert all(p.arch_id in set(ids) for p in front.points)
    with pytest.raises(ConfigError, match="no architectures"):
        table_model(space, [])


def test_mobilenet_model_is_valid_and_optimal():
    space = get_space("mobilenetv3", resolution=32, num_classes=10)
    model = space_model(space)
    rng = np.random.default_rng(4)
    c = rng.normal(size=space.encoding_size)
    best = milp_front(model, c, 0.0, np.zeros_like(c), 0.0, max_points=1).points[0]
    # per stage independently: the best depth with each used slot's best kernel and expand
    from search_spaces.mobilenet import DEPTHS, EXPANDS, KERNELS, MAX_DEPTH, N_STAGES

    per = len(DEPTHS) + MAX_DEPTH * (len(KERNELS) + len(EXPANDS))
    total = 0.0
    for s in range(N_STAGES):
        cs = c[s * per:(s + 1) * per]
        slots = [cs[len(DEPTHS) + b * 6: len(DEPTHS) + b * 6 + 3].max()
                 + cs[len(DEPTHS) + b * 6 + 3: len(DEPTHS) + b * 6 + 6].max() for b in range(MAX_DEPTH)]
        total += max(cs[i] + sum(slots[:d]) for i, d in enumerate(DEPTHS))
    assert best.accuracy == pytest.approx(total, abs=1e-9)
    x = space.encode(space.parse(best.arch_id))  # a valid architecture whose encoding scores it
    assert x @ c == pytest.approx(best.accuracy, abs=1e-9)
    lat = np.abs(rng.normal(size=space.encoding_size))
    front = milp_front(model, c, 0.0, lat, 0.0, max_points=30)
    accs = [p.accuracy for p in front.points]
    lats = [round(p.latency_ms, 9) for p in front.points]
    assert accs == sorted(accs, reverse=True) and lats == sorted(lats, reverse=True)
    assert len(set(p.arch_id for p in front.points)) == len(front.points)


def test_unknown_space_names_the_choices(space):
    from orchestrator.search.milp import MODELS

    with pytest.raises(Exception, match="nb201"):
        MODELS.get("resnet")


def test_grid_points_lie_on_the_front(space, all_nb201):
    ids, X = all_nb201
    rng = np.random.default_rng(7)
    a, lat_c = rng.normal(size=X.shape[1]), np.abs(rng.normal(size=X.shape[1]))
    true = set(_front_values(X @ a, X @ lat_c))
    front = milp_front(space_model(space), a, 0.0, lat_c, 0.0, grid=6)
    assert 2 <= len(front.points) <= 6
    assert {(round(p.accuracy, 9), round(p.latency_ms, 9)) for p in front.points} <= true
    lats = [round(p.latency_ms, 9) for p in front.points]
    assert max(lats) == max(v[1] for v in true) and min(lats) == min(v[1] for v in true)  # both ends
