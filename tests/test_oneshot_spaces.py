"""The elastic MobileNetV3 space, and the one-shot contract over both one-shot spaces."""

import json

import numpy as np
import pytest
import torch

from orchestrator.errors import ArchError, SpaceError
from search_spaces import SPACES, get_space
from search_spaces.mobilenet import MobileNetV3Space


def tiny_mbv3() -> MobileNetV3Space:
    return MobileNetV3Space(width_mult=0.25, resolution=32, num_classes=10, feature_dim=64)


# every registered space, tiny (the one-shot contract runs on each; a new space must add itself here)
TINY_OPTIONS = {
    "mobilenetv3": {"width_mult": 0.25, "resolution": 32, "num_classes": 10, "feature_dim": 64},
    "nb201": {"channels": 4, "cells_per_stage": 1},
    "fbnet": {"width_mult": 0.25, "resolution": 16, "num_classes": 10},
}


def test_every_registered_space_has_tiny_options():
    assert set(TINY_OPTIONS) == set(SPACES.names())


def test_registered():
    """The registered name builds this space with the given settings, its spec rebuilds it, and a near miss
    is refused naming it."""
    from search_spaces.errors import UnknownNameError

    space = get_space("mobilenetv3", resolution=32, width_mult=0.5)
    assert isinstance(space, MobileNetV3Space) and space.name == "mobilenetv3"
    assert space.spec().options["resolution"] == 32 and space.spec().options["width_mult"] == 0.5
    assert space.spec().build().spec() == space.spec()
    assert "MobileNetV3" in SPACES.describe("mobilenetv3")
    with pytest.raises(UnknownNameError, match="Did you mean 'mobilenetv3'"):
        get_space("mobilenetv4")


def test_ids_round_trip_and_are_canonical(rng):
    space = tiny_mbv3()
    for _ in range(50):
        arch = space.sample(rng)
        aid = space.arch_id(arch)
        assert space.parse(aid) == arch
        assert json.loads(json.dumps(arch)) == arch  # plain JSON
    a = space.parse("k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e6-k5e6-k7e4-k3e3|k3e6-k5e3")
    assert a["d"] == [2, 3, 2, 4, 2]


@pytest.mark.parametrize("bad, match", [
    ("k3e4-k5e6", "5 stages"),
    ("k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "depth 1"),
    ("k4e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "kernel 4"),
    ("k3e5-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "expand ratio 5"),
    ("k3x4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "k<kernel>e<expand>"),
])
def test_parse_errors_name_the_problem(bad, match):
    with pytest.raises(ArchError, match=match):
        tiny_mbv3().parse(bad)


def test_space_settings_are_validated():
    with pytest.raises(SpaceError, match="multiple of 32"):
        MobileNetV3Space(resolution=30)


def test_encoding_and_distributions(rng):
    space = tiny_mbv3()
    arch = space.sample(rng)
    x = space.encode(arch)
    assert x.shape == (space.encoding_size,) == (135,)
    assert x.sum() == 5 + 2 * sum(arch["d"])
    dists = space.distributions()
    params = {}
    for s in range(5):
        params[f"s{s}_depth"] = arch["d"][s]
        for b in range(4):
            params[f"s{s}_b{b}_kernel"] = arch["ks"][s][b] if b < arch["d"][s] else 3
            params[f"s{s}_b{b}_expand"] = arch["e"][s][b] if b < arch["d"][s] else 3
    assert set(params) == set(dists)
    assert space.from_params(params) == arch
    # seeded sampling
    a = [space.arch_id(space.sample(np.random.default_rng(7))) for _ in range(2)]
    assert a[0] == a[1]


def test_build_runs_at_space_resolution():
    space = tiny_mbv3()
    net = space.build(space.smallest()).eval()
    with torch.no_grad():
        assert net(torch.randn(2, *space.input_shape()[1:])).shape == (2, 10)
    big = sum(p.numel() for p in space.build(space.largest()).parameters())
    small = sum(p.numel() for p in net.parameters())
    assert big > 2 * small


@pytest.mark.parametrize("name", SPACES.names())
def test_extract_equals_supernet(name, rng):
    """extract(supernet, arch) is a standalone network whose output equals the supernet's for arch."""
    torch.manual_seed(0)
    space = get_space(name, **TINY_OPTIONS[name])
    sup = space.build_supernet()
    x = torch.randn(4, *space.input_shape()[1:])
    sup.train()
    opt = torch.optim.SGD(sup.parameters(), lr=0.05)
    for _ in range(3):  # move weights and BN statistics away from their initial values
        for arch in (space.largest(), space.smallest(), space.sample(rng)):
            opt.zero_grad()
            sup(x, arch).square().mean().backward()
            opt.step()
    sup.eval()
    for _ in range(4):
        arch = space.sample(rng)
        net = space.extract(sup, arch)
        assert not net.training
        assert type(net) is type(space.build(arch))
        with torch.no_grad():
            torch.testing.assert_close(net(x), sup(x, arch), rtol=1e-5, atol=1e-5)
        # the copy is independent of the supernet
        before = sup(x, arch).detach()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        torch.testing.assert_close(sup(x, arch).detach(), before)


def test_elastic_kernel_is_centre_crop():
    space = tiny_mbv3()
    sup = space.build_supernet()
    arch = space.uniform(2, 3, 3)
    net = space.extract(sup, arch)
    w7 = sup.stages[0][0].dw.conv.weight
    w3 = net.stages[0][0].dw.conv.weight
    mid = w3.shape[0]
    torch.testing.assert_close(w3, w7[:mid, :, 2:5, 2:5])
