import numpy as np
import optuna
import pytest
import torch

from orchestrator.errors import ArchError
from search_spaces import SPACES, get_space
from search_spaces.nb201 import OPS, NB201Space, live_edges


def test_registered(space):
    assert "nb201" in SPACES and get_space("nb201").size == 15625


def test_roundtrip_on_shipped_cells(space, shipped):
    for a in shipped.archs:
        assert space.arch_id(space.parse(a)) == a


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "3 nodes"),
        ("|conv9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv9'"),
        ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must be 'op~0'"),
        ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "needs 2 inputs"),
        ("nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|", "must be '|op~i|...|'"),
        ("", "3 nodes"),
    ],
)
def test_malformed_strings_have_clear_errors(space, bad, needle):
    with pytest.raises(ArchError, match=None) as e:
        space.parse(bad)
    assert needle in str(e.value)


def test_sampling_is_seeded(space):
    a = [space.arch_id(space.sample(np.random.default_rng(7))) for _ in range(3)]
    assert len(set(a)) == 1
    many = {space.arch_id(space.sample(np.random.default_rng(i))) for i in range(50)}
    assert len(many) > 40


def test_enumeration_is_complete_and_indexed(space):
    ids = []
    for i, arch in enumerate(space.enumerate()):
        assert space.index(arch) == i
        ids.append(space.arch_id(arch))
    assert len(ids) == len(set(ids)) == 15625


def test_encoding_one_hot_plus_live_edges(space):
    arch = space.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    x = space.encode(arch)
    assert x.shape == (60,) and x.dtype == np.float32
    assert x[:30].reshape(6, 5).sum(1).tolist() == [1] * 6
    # node 1 feeds nothing and node 2 gets nothing: only edge 3<-0 is live
    assert live_edges(arch["ops"]) == [False, False, False, True, False, False]
    assert x[30:].reshape(6, 5)[3, OPS.index("skip_connect")] == 1 and x[30:].sum() == 1
    assert space.encoding_groups().shape == (10, 60)


def test_encoding_is_injective_on_shipped(space, shipped):
    X = np.stack([space.encode(space.parse(a)) for a in shipped.archs])
    assert len({r.tobytes() for r in X}) == len(shipped.archs)


def test_optuna_distributions_roundtrip(space, rng):
    arch = space.sample(rng)
    dists = space.distributions()
    assert all(isinstance(d, optuna.distributions.CategoricalDistribution) for d in dists.values())
    params = dict(zip(dists, arch["ops"], strict=True))
    assert space.from_params(params) == arch
    with pytest.raises(ArchError, match="lack"):
        space.from_params({})


def test_build_runs_real_network(space):
    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    net = space.build(space.parse(cell))
    y = net.eval()(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    n_params = sum(p.numel() for p in net.parameters())
    assert 100_000 < n_params < 2_000_000  # NB201 C=16, N=5 networks are 0.1-1.5M parameters


def test_none_edges_contribute_zero(space):
    """Skipping 'none' edges equals the reference's multiply-by-zero."""
    torch.manual_seed(0)
    small = NB201Space(channels=4, cells_per_stage=1)
    net = small.build(space.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")).eval()
    cell = net.cells[0]
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(cell(x), x)  # node 3 = skip(node 0) + 0 + 0
    all_none = small.build(space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")).eval()
    assert torch.count_nonzero(all_none.cells[0](x)) == 0
