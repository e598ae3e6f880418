"""The FBNet space (HW-NAS-Bench's CIFAR-100 setting): ids, the network, its parameter count, the supernet."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.errors import ArchError, SpaceError
from search_spaces import SPACES, get_space
from search_spaces.costs import arch_costs
from search_spaces.fbnet import BLOCKS, N_LAYERS, FBNetSpace

DATA = Path(str(resources.files("orchestrator") / "data"))


@pytest.fixture(scope="module")
def fb() -> FBNetSpace:
    return get_space("fbnet")


def test_registered_with_hwnasbench_cifar100_defaults(fb):
    assert "fbnet" in SPACES.names()
    assert (fb.num_classes, fb.resolution, fb.setting) == (100, 32, "cifar")
    assert fb.size == 9**22 and fb.encoding_size == 198 and N_LAYERS == 22
    # HW-NAS-Bench's channel plan and CIFAR strides: stages of 1, 4, 4, 4, 4, 4, 1 layers
    assert [c_out for _, c_out, _ in fb.layer_shapes] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + \
        [184] * 4 + [352]
    assert [i for i, (_, _, s) in enumerate(fb.layer_shapes) if s == 2] == [5, 9, 17]
    assert fb.head_width == 1504 and fb.stem_stride == 1


def test_ids_round_trip(fb, rng):
    for _ in range(50):
        arch = fb.sample(rng)
        aid = fb.arch_id(arch)
        assert fb.parse(aid) == arch and aid.count("-") == 21
        assert json.loads(json.dumps(arch)) == arch
        assert fb.parse(fb.op_indices(arch)) == arch  # HW-NAS-Bench's op-index list
        assert fb.parse(str(fb.op_indices(arch))) == arch  # as Python prints it: [7, 8, ...]
        assert fb.from_params(fb.to_params(arch)) == arch


def test_the_shipped_table_ids_and_op_indices_agree(fb):
    with (DATA / "fbnet_5000.csv").open() as f:
        rows = list(csv.DictReader(f))[:200]
    for r in rows:
        assert fb.parse(r["arch"]) == fb.parse(r["op_idx_list"])
        assert fb.arch_id(fb.parse(r["arch"])) == r["arch"]


@pytest.mark.parametrize("bad, match", [
    ("k3_e1-skip", "expected 22 blocks"),
    ("-".join(["k3_e1"] * 5 + ["k7_e1"] + ["skip"] * 16), "layer 5: unknown block 'k7_e1'"),
    ("-".join(["0"] * 21 + ["9"]), "layer 21: op index 9 out of range"),
    ("-".join(["k3_e1"] * 3 + ["3"] + ["skip"] * 18), "layer 3: unknown block '3'"),
    ("", "expected 22 blocks"),
])
def test_malformed_ids_name_the_layer(fb, bad, match):
    with pytest.raises(ArchError, match=match):
        fb.parse(bad)


def test_bad_settings_are_refused():
    with pytest.raises(SpaceError, match="multiple of 8"):
        FBNetSpace(resolution=20)
    with pytest.raises(SpaceError, match="unknown setting"):
        FBNetSpace(setting="mnist")


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_parameter_count_follows_the_block_definitions(fb, rng):
    """The closed form (from HW-NAS-Bench's ConvBlock / Skip definitions) equals the built network."""
    for arch in [fb.largest(), fb.smallest(), *(fb.sample(rng) for _ in range(5))]:
        assert fb.n_params(arch) == n_params(fb.build(arch))
    # by hand, every layer 'skip': stem 3*16*9 + 32; layers that change width or stride are 1x1 conv + BN:
    # 16->24, 24->32 (s2), 32->64 (s2), 64->112, 112->184 (s2), 184->352; head 352*1504 + 2*1504; fc 1504*100+100
    convs = [(16, 24), (24, 32), (32, 64), (64, 112), (112, 184), (184, 352)]
    by_hand = 3 * 16 * 9 + 32 + sum(a * b + 2 * b for a, b in convs) + 352 * 1504 + 2 * 1504 + 1504 * 100 + 100
    assert fb.n_params(fb.smallest()) == by_hand == 780_660
    # every layer k3_e1: three convs + three BNs per block (groups 1, expansion 1), e.g. layer 0: 16->16->16
    k3e1 = fb.n_params({"ops": ["k3_e1"] * 22})
    blocks = sum(c_in * c_in + 2 * c_in + c_in * 9 + 2 * c_in + c_in * c_out + 2 * c_out
                 for c_in, c_out, _ in fb.layer_shapes)
    assert k3e1 == 3 * 16 * 9 + 32 + blocks + 352 * 1504 + 2 * 1504 + 1504 * 100 + 100


def test_network_output_and_costs(fb):
    net = fb.build(fb.sample(np.random.default_rng(0))).eval()
    with torch.no_grad():
        assert net(torch.randn(2, *fb.input_shape()[1:])).shape == (2, 100)
    big, small = arch_costs(fb, fb.largest()), arch_costs(fb, fb.smallest())
    assert big.params_m == pytest.approx(fb.n_params(fb.largest()) / 1e6)
    assert big.macs_m > 4 * small.macs_m > 0
    # the all-k3_e1 network's multiply-adds by hand: stem, per block 1x1 + 3x3 dw + 1x1 at its resolution, head
    res = 32
    macs = 3 * 16 * 9 * res * res
    for c_in, c_out, stride in fb.layer_shapes:
        r_out = res // stride
        macs += c_in * c_in * res * res + c_in * 9 * r_out * r_out + c_in * c_out * r_out * r_out
        res = r_out
    macs += 352 * 1504 * res * res + 1504 * 100
    assert arch_costs(fb, {"ops": ["k3_e1"] * 22}).macs_m == pytest.approx(macs / 1e6)


def test_grouped_blocks_shuffle_channels():
    sp = FBNetSpace(width_mult=0.25, resolution=16, num_classes=10)
    net = sp.build({"ops": ["k3_e1_g2"] * 22})
    block = net.cells[1]
    assert block.conv1.groups == 2 and block.conv3.groups == 2 and block.shuffle is not None
    x = torch.arange(8.0).view(1, 8, 1, 1)
    shuffled = block.shuffle(x).flatten().tolist()
    assert shuffled == [0, 4, 1, 5, 2, 6, 3, 7]


def test_supernet_mixed_forward_with_one_hot_weights_is_the_subnet():
    torch.manual_seed(0)
    sp = FBNetSpace(width_mult=0.25, resolution=16, num_classes=10)
    sup = sp.build_supernet().eval()
    arch = sp.sample(np.random.default_rng(2))
    w = torch.zeros(22, len(BLOCKS))
    for i, op in enumerate(arch["ops"]):
        w[i, BLOCKS.index(op)] = 1.0
    x = torch.randn(3, *sp.input_shape()[1:])
    with torch.no_grad():
        torch.testing.assert_close(sup.forward_mixed(x, w), sup(x, arch))


def test_encoding_groups_per_block_and_per_stage(fb):
    g = fb.encoding_groups()
    assert g.shape == (9 + 7 * 9, 198)
    assert np.all(g.sum(axis=0) == 2)  # every feature: its block overall, and its block in its stage
    assert np.all(g[:9].sum(axis=1) == 22)
    assert g[9 + 9 * 6 + BLOCKS.index("skip")].sum() == 1  # the last stage has one layer
    x = fb.encode({"ops": ["skip"] * 22})
    assert (g @ x)[BLOCKS.index("skip")] == 22
