"""Costs of the real network (parameters, MACs, peak activation memory), N-objective fronts and hypervolume,
and cost constraints / extra objectives in the searches, the config and the sweep."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.pipeline.plan import make_plan
from orchestrator.search.accuracy import AccuracyOracle
from orchestrator.search.algorithms import SearchProblem, SearchSettings, run_search
from orchestrator.search.driver import TableDomain
from orchestrator.search.pareto import ParetoError, hypervolume, hypervolume_nd, pareto_mask_nd
from orchestrator.sweep.target import SweepSettings, front_of
from search_spaces.base import SpaceSpec, get_space
from search_spaces.costs import CostModel, arch_costs, count_params, hooked_layers


@pytest.mark.parametrize("options", [{}, {"channels": 8, "cells_per_stage": 2, "num_classes": 100}])
def test_nb201_closed_form_params_equal_the_built_network(options):
    space = get_space("nb201", **options)
    rng = np.random.default_rng(0)
    for arch in [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(12))]:
        built = sum(p.numel() for p in space.build(arch).parameters())
        assert space.n_params(arch) == built, space.arch_id(arch)


def test_costs_of_mobilenet_come_from_the_configured_network():
    space = get_space("mobilenetv3", width_mult=0.5, resolution=64, num_classes=10)
    rng = np.random.default_rng(1)
    a, b = space.smallest(), space.sample(rng)
    for arch in (a, b):
        net = space.build(arch)
        assert count_params(space, arch) == sum(p.numel() for p in net.parameters())
        layers = hooked_layers(space, arch)
        c = arch_costs(space, arch)
        assert c.macs_m == pytest.approx(sum(x.macs_per_out * x.n_out for x in layers) / 1e6)
        assert c.peak_mem_mb == pytest.approx(max(x.n_in + x.n_out for x in layers) * 4 / 2**20)
    small, other = arch_costs(space, a), arch_costs(space, b)
    assert small.params_m < other.params_m and small.macs_m < other.macs_m  # the smallest is smallest
    wide = arch_costs(get_space("mobilenetv3", width_mult=1.0, resolution=64, num_classes=10), a)
    assert wide.params_m > small.params_m  # the options matter


def test_cost_model_round_trips_through_pickle_and_masks_limits():
    import pickle

    model = CostModel(SpaceSpec(name="nb201"))
    space = model.space
    ids = [space.arch_id(space.smallest()), space.arch_id(space.largest())]
    p = model.values(ids, "params_m")
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.values(ids, "params_m"), p)
    assert again.within(ids, {"params_m": float(p.mean())}).tolist() == [True, False]
    assert again.matrix(ids, ["params_m", "macs_m"]).shape == (2, 2)


def _brute_mask(p):
    n = len(p)
    return np.array([not any(np.all(p[j] <= p[i]) and np.any(p[j] < p[i]) for j in range(n) if j != i)
                     for i in range(n)])


def test_pareto_mask_nd_against_brute_force():
    rng = np.random.default_rng(2)
    for d in (2, 3, 4):
        p = rng.integers(0, 5, size=(40, d)).astype(float)  # many ties and duplicates
        assert np.array_equal(pareto_mask_nd(p), _brute_mask(p))


def _hv_by_inclusion_exclusion(p, ref):
    total = 0.0
    for r in range(1, len(p) + 1):
        for sub in itertools.combinations(range(len(p)), r):
            corner = p[list(sub)].max(axis=0)
            total += (-1) ** (r + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


def test_hypervolume_nd_exact_on_small_sets_and_equal_to_2d():
    rng = np.random.default_rng(3)
    for d in (3, 4):
        p = rng.random((8, d))
        ref = np.full(d, 1.0)
        assert hypervolume_nd(p, ref) == pytest.approx(_hv_by_inclusion_exclusion(p, ref), rel=1e-9)
    acc, lat = rng.random(30), rng.random(30)
    assert hypervolume_nd(np.c_[-acc, lat], [0.0, 1.0]) == pytest.approx(hypervolume(acc, lat, 0.0, 1.0))
    assert hypervolume_nd(np.ones((3, 3)), [1, 1, 1]) == 0.0  # nothing strictly inside the reference
    with pytest.raises(ParetoError, match="objectives"):
        hypervolume_nd(p, [1.0, 1.0])


def test_front_of_with_an_extra_objective_keeps_a_smaller_slower_network():
    acc = np.array([0.9, 0.8, 0.7])
    lat = np.array([1.0, 2.0, 3.0])
    assert front_of(acc, lat) == [0]  # in two objectives the first dominates
    params = np.array([[5.0], [1.0], [1.0]])
    assert front_of(acc, lat, params) == [0, 1]  # the second has fewer parameters; the third nothing better


@pytest.fixture(scope="module")
def table_problem(shipped):
    space = get_space("nb201")
    ids = list(shipped.archs[:400])
    acc = dict(zip(ids, np.random.default_rng(4).uniform(50, 90, len(ids)), strict=True))
    oracle = AccuracyOracle(acc, "table", lambda a: np.full(len(a), np.nan), predictions_final=True)
    return space, ids, oracle, (lambda a: shipped.lookup("pixel3", list(a)))


def test_nsga2_with_three_objectives_and_a_constraint(table_problem):
    space, ids, oracle, latency = table_problem
    costs = CostModel(space.spec())
    limit = float(np.median(costs.values(ids, "params_m")))
    problem = SearchProblem(space, oracle, latency, domain=TableDomain(space, ids), objectives=("params_m",),
                            constraints={"params_m": limit}, costs=costs)
    res = run_search(problem, "nsga2", SearchSettings(n_trials=60, population=20, seed=0))
    assert len(res.candidates) == 60
    for c in res.candidates:
        (p,) = c.extra
        assert p == pytest.approx(costs.values([c.arch_id], "params_m")[0])  # the real network's count
        assert c.feasible == (p <= limit)
    assert any(not c.feasible for c in res.candidates) and len(res.feasible()) >= 10
    ex = run_search(problem, "exhaustive", SearchSettings())
    assert ex.candidates and all(costs.values([c.arch_id], "params_m")[0] <= limit for c in ex.candidates)
    assert len(ex.candidates) == int((costs.values(ids, "params_m") <= limit).sum())  # the rest not evaluated
    with pytest.raises(ConfigError, match="milp"):
        run_search(problem, "milp", SearchSettings())


def test_memory_limit_is_per_target_and_the_tighter_one_wins():
    s = SweepSettings(constraints={"params_m": 1.0, "peak_mem_mb": 2.0}, memory_mb={"tiny": 0.5, "big": 9.0})
    assert s.limits("tiny") == {"params_m": 1.0, "peak_mem_mb": 0.5}
    assert s.limits("big") == {"params_m": 1.0, "peak_mem_mb": 2.0}
    assert s.limits("other") == {"params_m": 1.0, "peak_mem_mb": 2.0}


def _config(**over):
    data = {"name": "c", "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep"},
            "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
            "search": {"domain": "table"}}
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return make_plan(parse_config(data)).cfg


def test_config_refuses_bad_costs_with_the_fix():
    with pytest.raises(ConfigError, match="unknown cost 'params'.*params_m, macs_m, peak_mem_mb"):
        _config(search={"objectives": ["params"]})
    with pytest.raises(ConfigError, match=r"search.constraints.params_m: 0.001, but the smallest params_m of the "
                                          r"search domain is 0.3\d*: nothing fits; raise it to at least"):
        _config(search={"constraints": {"params_m": 0.001}})
    with pytest.raises(ConfigError, match="sweep.memory_mb: 'nonesuch' is not a target"):
        _config(sweep={"memory_mb": {"nonesuch": 1.0}})
    with pytest.raises(ConfigError, match=r"sweep.memory_mb.pixel3: 0.01, but the smallest peak_mem_mb"):
        _config(sweep={"memory_mb": {"pixel3": 0.01}})
    with pytest.raises(ConfigError, match="'milp' solves accuracy against latency without cost limits"):
        _config(search={"algorithm": "milp", "constraints": {"params_m": 1.0}},
                latency={"predictor": "additive"})
    cfg = _config(search={"objectives": ["params_m", "macs_m"], "constraints": {"macs_m": 100}},
                  sweep={"memory_mb": {"pixel3": 1.0}})
    assert cfg.search.objectives == ["params_m", "macs_m"]
