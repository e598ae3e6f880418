"""DNAS (search.algorithm: dnas): the lambda sweep finds known optima on a tiny layer-wise space; on FBNet it
runs through run_search with the Pixel 3 lookup table and the derived architectures are evaluated."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from orchestrator.errors import ConfigError
from orchestrator.search.dnas import DnasConfig, dnas_sweep, latency_table

OPS = ("zero", "noisy", "identity")
LAT = {"zero": 0.1, "noisy": 0.4, "identity": 1.0}  # ms per layer: the only informative block is the slowest


class ToySupernet(nn.Module):
    """Three layers on a feature vector; ``zero`` erases it, ``noisy`` adds strong noise, ``identity`` keeps
    it; a linear classifier reads the result. The label is the sign of the first feature."""

    def __init__(self, n_layers: int, d: int) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.fc = nn.Linear(d, 2)

    @staticmethod
    def op(name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "zero":
            return torch.zeros_like(x)
        if name == "noisy":
            return x + 1.0 * torch.randn_like(x)
        return x

    def forward(self, x: torch.Tensor, arch: dict) -> torch.Tensor:
        for name in arch["ops"]:
            x = self.op(name, x)
        return self.fc(x)

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        for w in weights:
            x = sum(w[b] * self.op(name, x) for b, name in enumerate(OPS))
        return self.fc(x)


class ToySpace:
    name = "toy"

    def __init__(self, n_layers: int = 3, d: int = 4) -> None:
        self.n_layers, self.d = n_layers, d
        self.encoding_size = 3 * n_layers

    def choices(self):
        return [OPS] * self.n_layers

    def arch_id(self, arch):
        return "-".join(arch["ops"])

    def build_supernet(self):
        return ToySupernet(self.n_layers, self.d)


def toy_data(n: int = 512, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return SimpleNamespace(x_train=x, y_train=(x[:, 0] > 0).long())


def test_the_sweep_finds_the_known_optima_of_a_tiny_space():
    """lambda 0: the only accurate network (identity everywhere); a heavy latency weight: the fastest network
    (zero everywhere: the lookup table's minimum); the sweep's latencies fall as lambda grows."""
    space = ToySpace()
    lut = np.array([[LAT[o] for o in OPS]] * space.n_layers)
    cfg = DnasConfig(lambdas=[0.0, 0.5, 20.0], warmup_epochs=1, epochs=6, batch_size=32, lr=0.1, arch_lr=0.1)
    res = dnas_sweep(space, toy_data(), lut, 0.0, cfg, seed=0)
    assert [r.lam for r in res] == [0.0, 0.5, 20.0]
    assert res[0].arch_id == "identity-identity-identity"
    assert res[-1].arch_id == "zero-zero-zero"
    lat = [r.expected_latency_ms for r in res]
    assert lat[0] > 2.5 and lat[-1] < 0.5
    derived = [sum(LAT[o] for o in r.arch_id.split("-")) for r in res]  # the derived networks' latency
    assert derived[0] >= derived[1] >= derived[2]
    assert all(np.allclose(r.probs.sum(axis=1), 1.0) for r in res)


def test_latency_table_needs_an_additive_model_of_the_right_size():
    space = ToySpace()
    with pytest.raises(ConfigError, match="additive latency model"):
        latency_table(space, None)
    with pytest.raises(ConfigError, match="one per \\(layer, block\\)"):
        latency_table(space, SimpleNamespace(coef_=np.zeros(5), intercept_=0.0))
    lut, base = latency_table(space, SimpleNamespace(coef_=np.arange(9.0), intercept_=2.0))
    assert lut.shape == (3, 3) and lut[1, 2] == 5.0 and base == 2.0


class CountingAccuracy:
    """An accuracy source that records what it is asked (the search must evaluate every derived network
    through the problem's source); its value is minus the parameter count in millions (a real property)."""

    name = "counting"

    def __init__(self, space):
        from search_spaces.costs import CostModel

        self.asked: list[str] = []
        self.costs = CostModel(space.spec())

    def evaluate(self, ids):
        self.asked += list(ids)
        for a, p in zip(ids, self.costs.values(list(ids), "params_m"), strict=True):
            yield a, -float(p)


@pytest.mark.slow
def test_dnas_through_run_search_on_fbnet_with_the_pixel3_lut():
    from orchestrator.latency.devices.lut import LutDevice
    from orchestrator.latency.fbnet_data import shipped_lut_path
    from orchestrator.search.algorithms import ALGORITHMS, SearchProblem, SearchSettings, run_search
    from orchestrator.supernet.data import DataConfig
    from search_spaces import get_space

    assert "dnas" in ALGORITHMS
    fb = get_space("fbnet")
    dev = LutDevice("pixel3", fb, str(shipped_lut_path()))
    acc = CountingAccuracy(fb)
    problem = SearchProblem(fb, acc, dev.latency_ms, latency_model=dev.additive())
    cfg = DnasConfig(lambdas=[0.0, 50.0], warmup_epochs=0, epochs=2, batch_size=16, max_steps=2, arch_lr=0.3,
                     data=DataConfig(name="digits", resolution=8, max_train=128),
                     supernet_options={"width_mult": 0.1, "resolution": 8})
    res = run_search(problem, "dnas", SearchSettings(seed=0, dnas=cfg))
    ids = [c.arch_id for c in res.candidates]
    assert acc.asked == ids and res.evaluated == len(ids) and 1 <= len(ids) <= 2
    np.testing.assert_allclose([c.latency_ms for c in res.candidates], dev.latency_ms(ids))
    assert [c.accuracy for c in res.candidates] == pytest.approx(list(-acc.costs.values(ids, "params_m")))
    if len(ids) == 2:  # the heavy latency weight found the faster network
        assert res.candidates[1].latency_ms < res.candidates[0].latency_ms
    # the data must match the supernet's input
    bad = cfg.model_copy(update={"data": DataConfig(name="digits", resolution=16, max_train=64)})
    with pytest.raises(ConfigError, match="set search.dnas.data.resolution"):
        run_search(problem, "dnas", SearchSettings(seed=0, dnas=bad))
