"""The one-proxy sweep on the shipped NB201 data: choosing k, the decision's bound, each target's
whole-domain search, and its quality against the truth over the whole table."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.latency.metrics import srcc
from orchestrator.latency.predictors import make_predictor
from orchestrator.latency.table import HWNASBENCH_DEVICES, shipped_accuracy
from orchestrator.latency.transfer import SourceSet
from orchestrator.search.accuracy import TableAccuracy
from orchestrator.search.pareto import pareto_mask
from orchestrator.sweep import (
    SweepSettings,
    SweepShared,
    TargetInput,
    decide,
    finalize,
    pick_k,
    propose,
    run_target,
    run_targets,
    srcc_lower_bound,
)
from search_spaces.base import encode_ids


@pytest.fixture(scope="module")
def oracle(space):
    return TableAccuracy(space, shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")).oracle()


@pytest.fixture(scope="module")
def proxy_model(space, shipped):
    ids, y = shipped.measured("fpga")
    return make_predictor("additive").fit(encode_ids(space, ids), y)


def make_shared(space, shipped, oracle, proxy_model, pool, algorithm="exhaustive", **settings):
    X = encode_ids(space, shipped.archs)
    pool_ms = proxy_model.predict(encode_ids(space, pool))
    acc = oracle.values(shipped.archs)
    pms = proxy_model.predict(X)
    front = [shipped.archs[i] for i in np.flatnonzero(pareto_mask(acc, pms))]
    return SweepShared(space.spec(), "fpga", proxy_model, oracle, list(pool), pool_ms, list(shipped.archs), X,
                       front, list(shipped.archs), list(shipped.archs),
                       SweepSettings(algorithm=algorithm, **settings))


def target(shared, shipped, name, k=10, share=1.0, among=None):
    ids, _ = shipped.measured(name)
    if among is not None:
        ids = [a for a in ids if a in set(among)]
    pms = shared.proxy_predictor.predict(encode_ids(shared.space_spec.build(), ids))
    k_ids = pick_k(ids, pms, k, shared.proxy_front_ids, share)
    return TargetInput(name, "tabulated", k_ids, shipped.lookup(name, k_ids),
                       truth=shipped.lookup(name, shared.truth_ids), domain=ids)


def judged(shared, shipped, rep):
    """The report judged against its table column's truth (the driver does this once accuracies are final)."""
    finalize(shared, rep, lambda ids: shipped.lookup(rep.name, list(ids)))
    return rep


def sources(space, shipped, name):
    return SourceSet.from_table(shipped.select([d for d in HWNASBENCH_DEVICES if d != name]), space, seed=0)


def test_pick_k_takes_both_ends_of_the_front_and_spreads_the_rest():
    ids = [f"a{i}" for i in range(100)]
    lat = np.random.default_rng(1).permutation(100).astype(float)
    front = [ids[int(np.argmin(lat))], ids[int(np.argsort(lat)[40])], ids[int(np.argmax(lat))], ids[7], ids[9]]
    got = pick_k(ids, lat, 10, front, 0.3)
    assert len(got) == 10 == len(set(got))
    by_lat = sorted(front, key=lambda a: lat[int(a[1:])])
    assert got[0] == by_lat[0] and by_lat[-1] in got[:3]  # three along the front, both ends
    ranks = sorted(int(lat[int(a[1:])]) for a in got[3:])
    assert ranks[0] <= 1 and ranks[-1] >= 98 and max(np.diff(ranks)) <= 20  # the rest spread over the range
    assert pick_k(ids, lat, 10) == [ids[i] for i in np.argsort(lat)[np.round(np.linspace(0, 99, 10)).astype(int)]]
    assert sorted(pick_k(ids[:4], lat[:4], 10)) == sorted(ids[:4])  # fewer than k: all


def test_the_round_rules():
    from orchestrator.sweep import Rounds

    assert Rounds(k=10, adaptive=0.5).split() == (5, 5)
    assert Rounds(k=10, adaptive=0.0).split() == (10, 0)  # one round
    assert Rounds(k=10, adaptive=0.9).split() == (3, 7)  # the first round keeps 3 (a decision needs an SRCC)
    assert Rounds(k=10, adaptive=0.5, reference_cells=7).split() == (7, 3)  # it holds every reference cell
    r = Rounds(k=10, retest=6)
    assert r.retest_n(10, deterministic=False) == 6 and r.retest_n(4, deterministic=False) == 4
    assert r.retest_n(10, deterministic=True) == 0 and r.retest_n(2, deterministic=False) == 0


def test_srcc_lower_bound():
    rng = np.random.default_rng(0)
    x = np.arange(10.0)
    # ten in order: the t1-copula bound (the calibrated one: 0.959, the Gaussian-copula bound alone: 0.985)
    assert srcc_lower_bound(x, 2 * x + 1, 0.9, rng) == pytest.approx(0.95, abs=0.002)
    noisy = x + rng.normal(0, 2.5, 10)
    lb90 = srcc_lower_bound(x, noisy, 0.9, np.random.default_rng(1))
    lb99 = srcc_lower_bound(x, noisy, 0.99, np.random.default_rng(1))
    assert lb99 < lb90 < srcc(x, noisy)
    many = np.arange(200.0)
    lb_many = srcc_lower_bound(many, many + rng.normal(0, 25, 200), 0.9, np.random.default_rng(1))
    assert lb_many > lb90  # more samples, a tighter bound


def test_decision_is_monotone_in_the_bound():
    rng = np.random.default_rng(3)
    x = np.arange(12.0)
    y = x + rng.normal(0, 2.0, 12)
    lb = srcc_lower_bound(x, y, 0.9, np.random.default_rng(0))
    seen = []
    for thr in np.linspace(-0.5, 1.0, 31):
        d = decide(x, y, threshold=thr, rule="bound", confidence=0.9, rng=np.random.default_rng(0))
        assert d.srcc_lb == pytest.approx(lb) and (d.decision == "reuse") == (lb >= thr)
        seen.append(d.decision)
    assert seen == sorted(seen, key=lambda s: s == "adapt")  # reuse ... reuse, adapt ... adapt
    assert decide(x, y, threshold=0.5, rule="point", confidence=0.9, rng=rng).decision == "reuse"
    assert decide(x, y, threshold=0.5, rule="bound", confidence=0.9, rng=rng, can_adapt=False).decision == "reuse"


def test_an_srcc_exactly_at_the_threshold_reuses():
    """One swapped pair of five is SRCC 0.9 exactly (computed as 0.8999999999999998), a perfect ranking 1.0
    (0.9999999999999999): the point rule reuses at thresholds 0.9 and 1.0 (a break test found both adapting)."""
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    swapped = np.array([1.0, 3.0, 2.0, 4.0, 5.0])
    assert decide(x, swapped, threshold=0.9, rule="point", confidence=0.9, rng=rng).decision == "reuse"
    assert decide(x, 2 * x + 1, threshold=1.0, rule="point", confidence=0.9, rng=rng).decision == "reuse"
    assert decide(x, swapped, threshold=0.9000001, rule="point", confidence=0.9, rng=rng).decision == "adapt"
    assert srcc(x, swapped) == 0.9 and srcc(x, 2 * x + 1) == 1.0


def test_a_fast_end_outside_the_pool_is_reached(space, shipped, oracle, proxy_model):
    """The proxy search's pool holds no fast cell: re-ranking it (the old sweep) cannot serve small budgets;
    the whole-domain search on the adapted predictor reaches the table's fast end."""
    fpga = shipped.lookup("fpga", shipped.archs)
    slow_pool = [a for a, v in zip(shipped.archs, fpga, strict=True) if v > np.quantile(fpga, 0.6)][:200]
    kw = {"threshold": 1.0, "rule": "point", "quantiles": (0.25, 0.5, 0.75)}
    whole = make_shared(space, shipped, oracle, proxy_model, slow_pool, **kw)
    pool_only = make_shared(space, shipped, oracle, proxy_model, slow_pool, algorithm="none", **kw)
    src = sources(space, shipped, "pixel3")
    rep = judged(whole, shipped, run_target(whole, target(whole, shipped, "pixel3"), src))
    # the old sweep: k spread over the pool's proxy-latency ranks, the pool re-ranked
    old = judged(pool_only, shipped,
                 run_target(pool_only, target(pool_only, shipped, "pixel3", share=0.0, among=slow_pool), src))
    assert rep.decision.decision == "adapt" and rep.metrics["n_reference"] == len(shipped.archs)
    assert old.metrics["unserved_budgets"] >= 1 and rep.metrics["unserved_budgets"] == 0
    assert rep.metrics["hv_ratio"] > old.metrics["hv_ratio"] + 0.3
    fastest = min(rep.true_ms[i] for i in rep.front)
    assert fastest <= rep.budgets_ms[0] < min(rep.true_ms[i] for i in old.front)
    assert rep.metrics["pool_hv_ratio"] >= rep.metrics["hv_ratio"]  # coverage bounds selection
    assert rep.metrics["hv_ratio_reuse"] == pytest.approx(old.metrics["hv_ratio_reuse"])


def test_measured_architectures_keep_their_latency(space, shipped, oracle, proxy_model):
    shared = make_shared(space, shipped, oracle, proxy_model, list(shipped.archs[:150]))
    t = target(shared, shipped, "edgegpu")
    # one source set for both: its meta-learned penalties are cached per bucket of k and seeded by the bucket
    # alone, so the second call reuses them and gets what a fresh set would (a fresh one meta-learned again)
    src = sources(space, shipped, "edgegpu")
    more = propose(shared, t, src, 4)
    assert len(more) == 4 and not set(more) & set(t.k_ids) and set(more) <= set(t.domain)
    rep = run_target(shared, t, src)
    pos = {a: i for i, a in enumerate(rep.options)}
    for a, v in zip(t.k_ids, t.k_latency, strict=True):
        if a in pos:
            assert rep.predicted[pos[a]] == pytest.approx(v)
    assert rep.front == sorted(rep.front, key=lambda i: rep.predicted[i])


def test_target_equal_to_proxy_reuses_with_its_own_front(space, shipped, oracle, proxy_model):
    shared = make_shared(space, shipped, oracle, proxy_model, list(shipped.archs[:300]))
    rep = judged(shared, shipped, run_target(shared, target(shared, shipped, "fpga", k=20),
                                             sources(space, shipped, "fpga")))
    assert rep.decision.decision == "reuse" and rep.decision.srcc_lb >= 0.9
    assert rep.metrics["hv_ratio"] > 0.95 and rep.metrics["unserved_budgets"] == 0


def test_run_targets_on_ray_matches_local(space, shipped, oracle, proxy_model, ray_cluster):
    shared = make_shared(space, shipped, oracle, proxy_model, list(shipped.archs[:200]))
    names = ["eyeriss", "edgegpu", "pixel3"]
    targets = [target(shared, shipped, n) for n in names]
    sets = {n: sources(space, shipped, n) for n in names}
    seen = []
    remote = run_targets(shared, targets, sets.get, progress=lambda r: seen.append(r.name))
    local = run_targets(shared, targets, sets.get, use_ray=False)
    assert [r.name for r in remote] == names and sorted(seen) == sorted(names)
    assert all(r.reference is None and "hv_ratio" not in r.metrics for r in remote)  # the tasks judge nothing
    for a, b in zip(remote, local, strict=True):
        judged(shared, shipped, a), judged(shared, shipped, b)
        assert a.decision == b.decision and a.front_ids() == b.front_ids()
        np.testing.assert_allclose(a.predicted, b.predicted, rtol=1e-9)
        assert a.metrics["hv_ratio"] == pytest.approx(b.metrics["hv_ratio"])
