"""The one-proxy sweep on the shipped NB201 data: choosing k, the decision, the Pareto loss."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.latency.table import shipped_accuracy
from orchestrator.latency.transfer import SourceSet
from orchestrator.search.pareto import pareto_mask
from orchestrator.sweep import ProxyCandidates, TargetInput, decide_target, pareto_loss, pick_k, run_targets


@pytest.fixture(scope="module")
def cands(shipped):
    rng = np.random.default_rng(0)
    idx = rng.choice(len(shipped.archs), 400, replace=False)
    ids = [shipped.archs[i] for i in idx]
    acc = shipped_accuracy("acc_cifar10")
    return ProxyCandidates("fpga", ids, [acc[a] for a in ids], shipped.lookup("fpga", ids))


def _target(shipped, cands, name, k=10):
    k_ids = pick_k(cands.ids, cands.proxy_latency, k)
    return TargetInput(name, "tabulated", k_ids, shipped.lookup(name, k_ids), truth=shipped.lookup(name, cands.ids))


def _sources(shipped, space, target):
    names = [d for d in shipped.devices if d != target]
    return SourceSet.from_table(shipped.select(names), space, seed=0)


def test_pick_k_spans_the_proxy_range():
    ids = [f"a{i}" for i in range(100)]
    lat = np.random.default_rng(1).permutation(100).astype(float)
    got = pick_k(ids, lat, 10)
    ranks = sorted(int(lat[int(a[1:])]) for a in got)
    assert len(got) == 10 == len(set(got))
    assert ranks[0] == 0 and ranks[-1] == 99
    assert max(np.diff(ranks)) <= 12  # evenly spaced ranks
    assert sorted(pick_k(ids[:4], lat[:4], 10)) == sorted(ids[:4])  # fewer candidates than k: all


def test_pareto_loss_by_hand():
    acc = np.array([70.0, 80.0, 90.0, 60.0, 85.0])
    lat = np.array([1.0, 2.0, 4.0, 3.0, 3.5])  # front: 0, 1, 4, 2
    true_front = list(np.flatnonzero(pareto_mask(acc, lat)))
    assert sorted(true_front) == [0, 1, 2, 4]
    m, budgets = pareto_loss(acc, lat, true_front, [0.5])
    assert m["hv_ratio"] == pytest.approx(1.0) and m["igd"] == pytest.approx(0.0)
    assert m["acc_loss_q50"] == pytest.approx(0.0)
    # drop the 85 % point (3.5 ms) from the chosen set
    m2, _ = pareto_loss(acc, lat, [0, 1, 2], [0.9])
    assert m2["hv_ratio"] < 1.0 and m2["igd"] > 0
    budget = float(np.quantile([1.0, 2.0, 3.5, 4.0], 0.9))  # 3.85 ms: true best 85, chosen best 80
    assert m2["acc_loss_q90"] == pytest.approx(5.0) and budget == pytest.approx(3.85)
    # NaN truth rows are left out; an empty choice has zero hypervolume
    truth = lat.copy()
    truth[3] = np.nan
    m3, _ = pareto_loss(acc, truth, [], [0.5])
    assert m3["hv_ratio"] == 0.0 and m3["n_truth"] == 4


def test_target_equal_to_proxy_reuses_with_no_loss(space, shipped, cands):
    rep = decide_target(space, cands, _target(shipped, cands, "fpga"), _sources(shipped, space, "fpga"),
                        threshold=0.9, method="multi", quantiles=[0.25, 0.5], seed=0)
    assert rep.decision == "reuse" and rep.srcc_k == pytest.approx(1.0)
    assert rep.metrics["hv_ratio"] == pytest.approx(1.0)
    assert rep.metrics["acc_loss_q50"] == pytest.approx(0.0)
    assert rep.n_measurements == 10


def test_low_srcc_target_is_adapted_and_adaptation_helps(space, shipped, cands):
    # on NB201 the FPGA's ranking is a poor guide to the edge GPU's (SRCC ~0.5)
    rep = decide_target(space, cands, _target(shipped, cands, "edgegpu", k=20),
                        _sources(shipped, space, "edgegpu"), threshold=0.9, method="multi",
                        quantiles=[0.5], seed=0)
    assert rep.srcc_k < 0.9 and rep.decision == "adapt"
    assert rep.metrics["transfer_srcc"] > rep.metrics["proxy_srcc"] + 0.1
    assert rep.metrics["hv_ratio"] >= rep.metrics["hv_ratio_reuse"]
    assert rep.front == sorted(rep.front, key=lambda i: rep.predicted[i])


def test_no_sources_means_reuse(space, shipped, cands):
    rep = decide_target(space, cands, _target(shipped, cands, "edgegpu"), None, threshold=0.9, method="multi",
                        quantiles=[0.5], seed=0)
    assert rep.decision == "reuse" and rep.srcc_k < 0.9


def test_run_targets_on_ray_matches_local(space, shipped, cands, ray_cluster):
    names = ["eyeriss", "edgegpu", "pixel3"]
    targets = [_target(shipped, cands, n) for n in names]
    sets = {n: _sources(shipped, space, n) for n in names}
    seen = []
    kw = {"threshold": 0.9, "method": "multi", "quantiles": [0.5], "seed": 0}
    remote = run_targets(space, cands, targets, sets.get, progress=lambda r: seen.append(r.name), **kw)
    local = run_targets(space, cands, targets, sets.get, use_ray=False, **kw)
    assert [r.name for r in remote] == names and sorted(seen) == sorted(names)
    for a, b in zip(remote, local, strict=True):
        assert a.decision == b.decision and a.front == b.front
        np.testing.assert_allclose(a.predicted, b.predicted, rtol=1e-9)
