"""Few-shot NB201 supernet (Few-shot NAS, ICML 2021; issue 20 item 3a): the supernet split on one edge's op
into five sub-supernets; each cell is trained and evaluated by the one matching its op on that edge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator.supernet.data import DataConfig, load_dataset, train_batches
from orchestrator.supernet.evaluate import EvalConfig, evaluate_subnet
from orchestrator.supernet.spec import one_shot_space, with_classes
from orchestrator.supernet.train import SupernetTrainer, TrainConfig
from search_spaces.base import SpaceSpec
from search_spaces.errors import SpaceError
from search_spaces.nb201 import OPS, NB201Space
from search_spaces.nb201_torch import FewShotNB201SuperNetwork, NB201SuperNetwork

EDGE = 2  # (2<-1)
TINY = {"channels": 4, "cells_per_stage": 1, "few_shot_edge": EDGE}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cell(op: str) -> dict:
    return {"ops": ["nor_conv_3x3", "skip_connect", op, "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3"]}


def test_five_sub_supernets_with_their_own_weights():
    net = NB201Space(**TINY).build_supernet()
    assert isinstance(net, FewShotNB201SuperNetwork) and len(net.subnets) == len(OPS) == 5
    assert all(isinstance(s, NB201SuperNetwork) for s in net.subnets)
    first = dict(net.subnets[0].named_parameters())
    for sub in net.subnets[1:]:
        for name, p in sub.named_parameters():  # the same start (a split at step 0), separate storage
            assert torch.equal(p, first[name]) and p.data_ptr() != first[name].data_ptr()
    assert sum(p.numel() for p in net.parameters()) == 5 * sum(p.numel() for p in net.subnets[0].parameters())
    # the plain space is unchanged: no option, one supernet, the same spec as before
    plain = NB201Space(channels=4, cells_per_stage=1)
    assert isinstance(plain.build_supernet(), NB201SuperNetwork) and "few_shot_edge" not in plain.spec().options
    assert SpaceSpec(**NB201Space(**TINY).spec().model_dump()).build().few_shot_edge == EDGE


def test_each_cell_runs_and_is_extracted_from_the_sub_supernet_of_its_op():
    space = NB201Space(**TINY)
    torch.manual_seed(0)
    net = space.build_supernet().eval()
    with torch.no_grad():  # make the sub-supernets differ
        for k, sub in enumerate(net.subnets):
            for p in sub.parameters():
                p.add_(0.1 * (k + 1))
    x = torch.randn(2, 3, 32, 32)
    outs = {}
    for k, op in enumerate(OPS):
        a = cell(op)
        assert net.sub_supernet(a) is net.subnets[k]
        with torch.no_grad():
            outs[op] = net(x, a)
            assert torch.equal(outs[op], net.subnets[k](x, a))
            standalone = space.extract(net, a).eval()
            assert torch.allclose(standalone(x), outs[op], atol=1e-5)
        stem = standalone.state_dict()["stem.0.weight"]
        assert torch.equal(stem, net.subnets[k].stem[0].weight)
    assert not torch.allclose(outs["nor_conv_3x3"], outs["nor_conv_1x1"])


def test_a_training_step_changes_one_sub_supernet_only():
    data = load_dataset(DataConfig(max_train=64))
    spec = with_classes(SpaceSpec(name="nb201", options=TINY), data.num_classes)
    tr = SupernetTrainer(one_shot_space(spec), data, TrainConfig(epochs=1, batch_size=32, lr=0.05, n_random=2))
    archs = tr.sandwich()  # largest, smallest, random: all with one op on the split edge
    assert len({a["ops"][EDGE] for a in archs}) == 1 and len(archs) == 4
    assert archs[0]["ops"][:EDGE] == ["nor_conv_3x3"] * EDGE and archs[1]["ops"][EDGE + 1:] == ["none"] * 3
    before = [[p.detach().clone() for p in sub.parameters()] for sub in tr.net.subnets]
    tr.rng = np.random.default_rng(0)
    k = OPS.index(tr.sandwich()[0]["ops"][EDGE])
    tr.rng = np.random.default_rng(0)  # the step draws the same sandwich
    tr.step(*next(train_batches(data, 32, 0, 0)))
    changed = [any(not torch.equal(p, b) for p, b in zip(sub.parameters(), bs, strict=True))
               for sub, bs in zip(tr.net.subnets, before, strict=True)]
    assert changed == [i == k for i in range(len(OPS))]
    res = evaluate_subnet(tr.space, tr.net, cell(OPS[k]), data, EvalConfig(calib_batches=1, max_val=32))
    assert res.n_val == 32


def test_load_one_shot_and_bad_edge():
    one = NB201SuperNetwork(4, 1, 10)
    few = FewShotNB201SuperNetwork(0, 4, 1, 10)
    few.load_one_shot(one)
    assert all(torch.equal(p, q) for sub in few.subnets for p, q in zip(sub.parameters(), one.parameters(),
                                                                         strict=True))
    with pytest.raises(SpaceError, match="few_shot_edge must be 0-5"):
        NB201Space(few_shot_edge=6)
