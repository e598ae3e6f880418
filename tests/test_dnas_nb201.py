"""DNAS on NB201's edges: the mixed forward, the per-edge latency table, the sweep's extremes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from orchestrator.search.dnas import DnasConfig, dnas_sweep
from orchestrator.search.dnas_nb201 import NB201EdgeView, edge_latency_table
from search_spaces.nb201 import OPS, NB201Space


@pytest.fixture(scope="module")
def tiny():
    return NB201Space(channels=4, cells_per_stage=1)


def test_mixed_forward_with_one_hot_weights_is_that_architecture(tiny, rng):
    view = NB201EdgeView(tiny)
    net = view.build_supernet().eval()
    x = torch.randn(2, *tiny.input_shape()[1:])
    for _ in range(3):
        arch = tiny.sample(rng)
        w = torch.zeros(6, len(OPS))
        for e, op in enumerate(arch["ops"]):
            w[e, OPS.index(op)] = 1.0
        with torch.no_grad():
            torch.testing.assert_close(net.forward_mixed(x, w), net(x, arch))


def test_edge_latency_table_recovers_an_additive_latency(tiny, rng):
    true = rng.uniform(0.1, 2.0, size=(6, len(OPS)))
    true[:, 0] = 0.0
    ids = [tiny.arch_id(tiny.sample(rng)) for _ in range(300)]
    lat = np.array([3.0 + sum(true[e, OPS.index(op)] for e, op in enumerate(tiny.parse(a)["ops"])) for a in ids])
    deltas, base, r2 = edge_latency_table(tiny, ids, lat)
    np.testing.assert_allclose(deltas, true, atol=1e-9)
    assert base == pytest.approx(3.0) and r2 == pytest.approx(1.0)


@pytest.mark.slow
def test_heavy_latency_weight_finds_the_fastest_cell(tiny):
    """lambda large: every edge takes its cheapest op under the table (here 'none' costs 0, the rest more),
    and the expected latency falls well below the uniform mixture's (where the sweep starts)."""
    lut = np.tile(np.array([0.0, 0.2, 1.0, 3.0, 0.5]), (6, 1))
    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randn(80, *tiny.input_shape()[1:], generator=g),
                           y_train=torch.randint(0, 10, (80,), generator=g))
    cfg = DnasConfig(lambdas=[30.0], warmup_epochs=0, epochs=2, batch_size=32, arch_lr=0.5)
    res = dnas_sweep(NB201EdgeView(tiny), data, lut, 1.0, cfg, seed=0)
    assert tiny.parse(res[0].arch_id)["ops"] == ["none"] * 6
    uniform = 1.0 + lut.mean(axis=1).sum()
    assert res[0].expected_latency_ms < 1.0 + 0.5 * (uniform - 1.0)


def test_exact_expected_latency_over_the_cells(tiny, rng):
    """With ``cells`` the latency term is the exact expectation of the cells' latency under the logits'
    distribution restricted to those cells (dead edges included, where a per-edge table is not exact): the
    reported expected latency equals that sum recomputed from the final probabilities."""
    from search_spaces.nb201 import live_edges

    view = NB201EdgeView(tiny)
    ids = list(dict.fromkeys(tiny.arch_id(tiny.sample(rng)) for _ in range(400)))

    def latency(q):  # not additive per edge: only live edges cost
        return np.array([0.5 + sum(live_edges(tiny.parse(a)["ops"])) for a in q], dtype=float)

    idx, ms = view.latency_cells(latency, ids)
    assert idx.shape == (len(ids), 6) and ms.shape == (len(ids),)
    assert [OPS[i] for i in idx[3]] == tiny.parse(ids[3])["ops"]
    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randn(40, *tiny.input_shape()[1:], generator=g),
                           y_train=torch.randint(0, 10, (40,), generator=g))
    cfg = DnasConfig(lambdas=[3.0], warmup_epochs=0, epochs=1, max_steps=1, batch_size=16, arch_lr=0.5)
    lut, base = view.latency_table(None, latency, ids)
    res = dnas_sweep(view, data, lut, base, cfg, seed=0, cells=(idx, ms))[0]
    w = np.prod(res.probs[np.arange(6)[None, :], idx], axis=1)
    assert res.expected_latency_ms == pytest.approx(float((w * ms).sum() / w.sum()), rel=1e-5)
    # 40 images, a fifth for the logits: one weight step of 16 images, one architecture step of all 8
    assert (res.weight_images, res.arch_images, res.warmup_images) == (16, 8, 0)
    uniform = float(ms.mean())
    assert res.expected_latency_ms < uniform  # the latency weight moved the distribution to faster cells


def test_skip_penalty_gradient_lowers_the_pass_through_logits():
    """``collapse_penalty``'s gradient is positive on none / skip_connect logits and negative on the others, so
    a descent step moves probability off the pass-through ops; the mask follows the view's collapse_ops."""
    from orchestrator.search.dnas import collapse_mask, collapse_penalty

    view = NB201EdgeView(NB201Space(channels=4, cells_per_stage=1))
    mask = torch.tensor(collapse_mask(view, view.choices()), dtype=torch.float32)
    assert mask[0].tolist() == [0.0 if op.startswith("nor_conv") else 1.0 for op in OPS]  # the parameter-free
    assert mask.shape == (6, len(OPS)) and (mask == mask[0]).all()
    alpha = torch.randn(6, len(OPS), generator=torch.Generator().manual_seed(0), requires_grad=True)
    collapse_penalty(alpha, mask, 0.7).backward()
    g = alpha.grad
    assert (g[mask.bool()] > 0).all() and (g[~mask.bool()] < 0).all()
    pool = collapse_mask(view, view.choices(), ["skip_connect"])
    assert pool[:, OPS.index("skip_connect")].all() and pool.sum() == 6
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="max_pool"):
        collapse_mask(view, view.choices(), ["max_pool"])
    # the loss moves by mu: the same gradient scaled
    alpha2 = alpha.detach().clone().requires_grad_(True)
    collapse_penalty(alpha2, mask, 1.4).backward()
    torch.testing.assert_close(alpha2.grad, 2 * g)


@pytest.mark.slow
def test_skip_penalty_keeps_a_heavy_latency_weight_off_pass_through_ops(tiny):
    """Where a heavy latency weight alone ends on the all-``none`` cell, a heavier pass-through penalty ends
    on a cell of convolutions only (none, skip_connect and avg_pool_3x3 penalised)."""
    lut = np.tile(np.array([0.0, 0.2, 1.0, 3.0, 0.5]), (6, 1))
    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randn(64, *tiny.input_shape()[1:], generator=g),
                           y_train=torch.randint(0, 10, (64,), generator=g))
    cfg = DnasConfig(lambdas=[5.0], warmup_epochs=0, epochs=2, batch_size=32, arch_lr=0.5, skip_penalty=20.0)
    ops = tiny.parse(dnas_sweep(NB201EdgeView(tiny), data, lut, 1.0, cfg, seed=0)[0].arch_id)["ops"]
    assert not {"none", "skip_connect", "avg_pool_3x3"} & set(ops)


def test_aux_skip_adds_beta_times_the_identity_on_every_edge(tiny, rng):
    """DARTS-'s auxiliary skip: ``forward_mixed(x, w, aux_skip=b)`` equals ``forward_mixed`` with b added to
    each edge's skip_connect weight (NB201's skip is the identity inside a cell); fbnet-like views without it
    are refused with the setting named."""
    from orchestrator.errors import ConfigError

    net = NB201EdgeView(tiny).build_supernet().eval()
    x = torch.randn(2, *tiny.input_shape()[1:])
    w = torch.softmax(torch.randn(6, len(OPS)), dim=1)
    w2 = w.clone()
    w2[:, OPS.index("skip_connect")] += 0.3
    with torch.no_grad():
        torch.testing.assert_close(net.forward_mixed(x, w, aux_skip=0.3), net.forward_mixed(x, w2))
        assert not torch.allclose(net.forward_mixed(x, w, aux_skip=0.3), net.forward_mixed(x, w))

    class NoAux(NB201EdgeView):
        supports_aux_skip = False

    data = SimpleNamespace(x_train=torch.randn(8, *tiny.input_shape()[1:]), y_train=torch.randint(0, 10, (8,)))
    with pytest.raises(ConfigError, match="aux_skip"):
        dnas_sweep(NoAux(tiny), data, np.zeros((6, len(OPS))), 0.0, DnasConfig(aux_skip=True))


def test_skip_penalty_default_is_the_views(tiny):
    """``skip_penalty`` unset: the view's default (nb201 0.1, fbnet 0, a view without one 0); set, as given (0
    turns nb201's off)."""
    from orchestrator.search.dnas import LayerwiseView, resolved_skip_penalty
    from search_spaces import get_space

    nb201, fbnet = NB201EdgeView(tiny), LayerwiseView(get_space("fbnet"))
    assert DnasConfig().skip_penalty is None
    assert resolved_skip_penalty(nb201, DnasConfig()) == 0.1
    assert resolved_skip_penalty(fbnet, DnasConfig()) == 0.0
    assert resolved_skip_penalty(SimpleNamespace(), DnasConfig()) == 0.0
    assert resolved_skip_penalty(nb201, DnasConfig(skip_penalty=0)) == 0.0
    assert resolved_skip_penalty(fbnet, DnasConfig(skip_penalty=0.3)) == 0.3
    with pytest.raises(ValueError):
        DnasConfig(skip_penalty=-0.1)


def test_the_default_penalty_changes_the_architecture_gradient(tiny, monkeypatch):
    """The sweep's first architecture gradient with nb201's default differs from the one with ``skip_penalty:
    0`` by exactly the penalty's gradient at alpha = 0 (the same seed: the same batch and Gumbel noise):
    mu / 6 * p (mask - sum(mask p)), p = 1/5, three of five ops penalised: +mu/75 per pass-through logit,
    -mu/50 per convolution's."""
    grads: list[torch.Tensor] = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        grads.append(self.param_groups[0]["params"][0].grad.detach().clone())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randn(20, *tiny.input_shape()[1:], generator=g),
                           y_train=torch.randint(0, 10, (20,), generator=g))
    lut = np.tile(np.array([0.0, 0.2, 1.0, 3.0, 0.5]), (6, 1))
    firsts = []
    for mu in (None, 0.0):
        grads.clear()
        cfg = DnasConfig(lambdas=[1.0], warmup_epochs=0, epochs=1, batch_size=8, max_steps=1, skip_penalty=mu)
        dnas_sweep(NB201EdgeView(tiny), data, lut, 1.0, cfg, seed=0)
        firsts.append(grads[0])
    diff = firsts[0] - firsts[1]
    passthrough = torch.tensor([op in ("none", "skip_connect", "avg_pool_3x3") for op in OPS])
    torch.testing.assert_close(diff[:, passthrough], torch.full((6, 3), 0.1 / 75))
    torch.testing.assert_close(diff[:, ~passthrough], torch.full((6, 2), -0.1 / 50))
