"""Zero-cost proxies (issue 20): each score against a value computed by hand on a tiny network; the scorer,
the zero_cost accuracy source and the predictor on zero-cost features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from orchestrator.errors import UnknownNameError
from orchestrator.search.zero_cost import PROXIES, ZeroCostScorer, score_network, transform
from search_spaces.nb201 import NB201Space

W1 = [[1.0, -2.0], [3.0, 4.0]]
W2 = [[0.5, -1.0], [2.0, 1.0]]


def two_layer() -> nn.Module:
    """x (B, 1, 1, 2) -> flatten -> W1 -> ReLU -> W2: two outputs, no biases."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(W1))
        net[3].weight.copy_(torch.tensor(W2))
    return net


def test_synflow_by_hand():
    # |W1| 1 = [3, 7] (ReLU passes it), R = sum(|W2| [3, 7]) = 8.5 + 13 = 21.5.
    # Layer 2: sum |w| dR/dw = sum_ij |W2_ij| h_j = 21.5; layer 1: dR/dh = column sums of |W2| = [2.5, 2],
    # sum_jk |W1_jk| dR/dh_j = 3 * 2.5 + 7 * 2 = 21.5. Synflow = 43.
    x = torch.zeros(5, 1, 1, 2)
    assert PROXIES.get("synflow")(two_layer(), x, torch.zeros(5, dtype=torch.long)) == pytest.approx(43.0)


def test_naswot_by_hand():
    # images e1, e2: W1 x = [1, 3] -> codes [1, 1]; [-2, 4] -> [0, 1]. K = C C^T + (1-C)(1-C)^T
    # = [[2, 1], [1, 1]] + [[0, 0], [0, 1]] = [[2, 1], [1, 2]]; log det K = log 3.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 1, 2)
    assert PROXIES.get("naswot")(two_layer(), x, torch.zeros(2, dtype=torch.long)) == pytest.approx(math.log(3))


def test_snip_grad_norm_params_by_hand():
    # One linear layer W1, image e1, label 0: logits [1, 3], p = softmax = [1, e^2] / (1 + e^2);
    # dL/dlogits = p - [1, 0] = [-q, q] with q = e^2 / (1 + e^2); dL/dW = [[-q, 0], [q, 0]].
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(W1))
    x, y = torch.tensor([[1.0, 0.0]]).reshape(1, 1, 1, 2), torch.tensor([0])
    q = math.e ** 2 / (1 + math.e ** 2)
    got = score_network(net, x, y, ["snip", "grad_norm", "params"])
    assert got["snip"] == pytest.approx(1 * q + 3 * q, rel=1e-6)
    assert got["grad_norm"] == pytest.approx(math.sqrt(2) * q, rel=1e-6)
    assert got["params"] == 4.0
    # the network handed in is left as it was (proxies work on copies)
    assert torch.equal(net[1].weight, torch.tensor(W1)) and net[1].weight.grad is None


def test_unknown_proxy_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="synflow"):
        ZeroCostScorer(NB201Space(channels=4, cells_per_stage=1), "jacov", torch.zeros(2, 3, 8, 8),
                       torch.zeros(2, dtype=torch.long))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core machine several threads per tiny network are ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    space = NB201Space(channels=4, cells_per_stage=1)
    g = torch.Generator().manual_seed(0)
    return space, torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)


def test_scorer_standardises_on_reference_cells_and_floors_dead_cells(tiny):
    space, x, y = tiny
    sc = ZeroCostScorer(space, "ensemble", x, y, seed=0, reference=8)
    dead = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    raw = sc.raw([dead, best])
    assert raw["synflow"][0] == 0.0 and np.isneginf(transform("synflow", raw["synflow"]))[0]
    z = sc.zscores(raw)
    assert z["synflow"][0] == ZeroCostScorer.FLOOR and z["synflow"][1] > z["synflow"][0]
    ens = sc.scores([dead, best])
    # ensemble: the lowest of the three z-scores (the dead cell: synflow's floor); ensemble_mean: their mean
    zs = np.array([z[n] for n in ("synflow", "naswot", "params")])
    assert ens == pytest.approx(np.maximum(50 + 10 * zs.min(axis=0), 1.0)) and ens[0] == 1.0
    assert ens[1] == pytest.approx(50 + 10 * min(z["synflow"][1], z["naswot"][1], z["params"][1]))
    mean = ZeroCostScorer(space, "ensemble_mean", x, y, seed=0, reference=8)
    assert mean.names == sc.names == ["synflow", "naswot", "params"]
    assert mean.scores([dead, best]) == pytest.approx(np.maximum(50 + 10 * zs.mean(axis=0), 1.0))
    # a cell's value does not depend on the others scored with it; scoring is deterministic
    assert sc.scores([best])[0] == pytest.approx(ens[1])
    again = ZeroCostScorer(space, "ensemble", x, y, seed=0, reference=8)
    assert again.scores([dead, best]) == pytest.approx(ens)


def test_the_default_zero_cost_proxy_is_the_min_ensemble_and_every_choice_is_accepted():
    from orchestrator.config import AccuracySection, ZeroCostSection
    from orchestrator.search.zero_cost import ENSEMBLES, proxy_names

    assert ZeroCostSection().proxy == "ensemble" and ENSEMBLES["ensemble"] is np.min
    assert AccuracySection().zero_cost.proxy == "ensemble"
    assert set(proxy_names()) == {"synflow", "naswot", "snip", "grad_norm", "params", "ensemble", "ensemble_mean"}
    for name in proxy_names():
        assert ZeroCostSection(proxy=name).proxy == name
    from orchestrator.cli_accuracy import zero_cost_proxy_choices

    assert sorted(zero_cost_proxy_choices()) == sorted(proxy_names())  # the CLI's --proxy, the config, the registry


def test_zero_cost_source_and_its_oracle(tiny):
    from orchestrator.search.accuracy import ZeroCostAccuracy

    space, x, y = tiny
    src = ZeroCostAccuracy(space, ZeroCostScorer(space, "synflow", x, y, seed=0, reference=4))
    ids = [space.arch_id(space.sample(np.random.default_rng(i))) for i in range(4)]
    got = dict(src.evaluate(ids))
    assert list(got) == ids and set(src.cache) == set(ids)
    oracle = src.oracle()
    assert not oracle.predictions_final and all(oracle.final(a) for a in ids)
    assert oracle.values(ids) == pytest.approx([got[a] for a in ids])


def test_predictor_on_zero_cost_features(tiny):
    """The predictor fit on a few cells' values of an inner source (here the params source, cheap) with
    zero-cost scores as features: the features are the scorer's standardised scores, and new cells are
    scored then predicted."""
    from orchestrator.search.accuracy import PredictorAccuracy, ZeroCostAccuracy, ZeroCostFeatures

    space, x, y = tiny
    inner = ZeroCostAccuracy(space, ZeroCostScorer(space, "params", x, y, seed=0, reference=4))
    feats = ZeroCostFeatures(space, ZeroCostScorer(space, "ensemble", x, y, seed=0, reference=4), "both")
    pred = PredictorAccuracy(space, inner, 10, np.random.default_rng(0), "additive", feats)
    some = list(pred.samples)[:2]
    m = feats.matrix(some)
    z = feats.scorer.zscores(feats.scorer.raw(some))
    assert m.shape == (2, 3 + space.encoding_size)
    assert m[:, :3] == pytest.approx(np.column_stack([z["synflow"], z["naswot"], z["params"]]))
    new = space.arch_id(space.sample(np.random.default_rng(99)))
    (a, v), = pred.evaluate([new])
    assert a == new and v == pytest.approx(float(pred.model.predict(feats.matrix([new]))[0]))
    assert not pred.oracle().predictions_final
    with pytest.raises(ValueError, match="zero_cost' or 'both"):
        ZeroCostFeatures(space, feats.scorer, "encoding")


@pytest.mark.ray
@pytest.mark.slow
def test_zero_cost_source_in_the_pipeline(tmp_path, ray_cluster):
    """accuracy.source: zero_cost through the whole pipeline: the search and the sweep run on the scores;
    front members chosen on the provisional model are scored for real."""
    from orchestrator.config import parse_config
    from orchestrator.pipeline import run_pipeline

    cfg = parse_config({
        "name": "zc", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "space": {"name": "nb201", "options": {"channels": 4, "cells_per_stage": 1}},
        "accuracy": {"source": "zero_cost", "zero_cost": {"proxy": "ensemble", "batch_size": 8, "reference": 4}},
        "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},  # the 1,999-cell table, by name
        "search": {"algorithm": "nsga2", "n_trials": 16, "population": 8, "domain": "table"},
        "sweep": {"targets": ["edgegpu"], "simulated": 0, "k": 5, "target_search": {"max_new_evaluations": 2}},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test"},
    })
    summary = run_pipeline(cfg, progress=False)
    assert summary["n_candidates"] >= 8
    (rep,) = summary["targets"]
    assert rep["target"] == "edgegpu" and rep["new_evaluations"] <= 2
    import csv

    with (cfg.run_dir() / "fronts" / "proxy.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["accuracy_from"] == "zero_cost" and float(r["accuracy"]) >= 1.0 for r in rows)


def test_naswot_on_a_cell_equals_the_two_kernel_form_and_leaves_the_network_as_it_was(tiny):
    """naswot's one +-1 matmul per ReLU gives exactly C C^T + (1 - C)(1 - C)^T summed over ReLUs (Mellor et
    al.'s kernel, computed here in float64 with two matmuls on a copy in train mode), and the network handed
    in keeps its mode and its BatchNorm statistics."""
    import copy

    space, x, y = tiny
    torch.manual_seed(0)
    net = space.build(space.parse(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|")).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    k = torch.zeros(len(x), len(x), dtype=torch.float64)

    def hook(_m, inp, _out):
        c = (inp[0].reshape(len(x), -1) > 0).double()
        k.add_(c @ c.T + (1 - c) @ (1 - c).T)

    ref = copy.deepcopy(net).train()
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(hook)
    with torch.no_grad():
        ref(x)
    assert PROXIES.get("naswot")(net, x, y) == torch.linalg.slogdet(k)[1].item()
    assert not any(m.training for m in net.modules())
    assert all(torch.equal(v, before[n]) for n, v in net.state_dict().items())


def test_each_proxy_declares_its_transform(monkeypatch):
    """``transform`` applies what the registered proxy declares (``proxy(transform=)``), log by default: naswot
    (a log-determinant) as it is, the others log; a proxy registered elsewhere gets what it declares."""
    from orchestrator.search.zero_cost import as_is, log_scale

    raw = np.array([0.0, 1.0, math.e, 100.0])
    for name in PROXIES.names():
        with np.errstate(divide="ignore"):
            want = raw if name == "naswot" else np.log(raw)
            np.testing.assert_array_equal(transform(name, raw), want)

    def linear_test(net, x, y):
        return 0.0

    linear_test.transform = as_is  # type: ignore[attr-defined]
    monkeypatch.setitem(PROXIES._items, "linear_test", linear_test)
    np.testing.assert_array_equal(transform("linear_test", raw), raw)
    linear_test.transform = log_scale  # type: ignore[attr-defined]
    np.testing.assert_array_equal(transform("linear_test", raw[1:]), np.log(raw[1:]))
    with pytest.raises(UnknownNameError, match="unknown zero-cost proxy 'naswto'"):
        transform("naswto", raw)
