"""PyTorch modules of the NAS-Bench-201 network (stem, 3 stages of N cells,
residual reduction blocks), following the benchmark's reference network.

``none`` edges are not computed: they contribute zeros, as in the reference
(which multiplies by 0), so the output is the same and a deployed network's
latency is what gets measured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from search_spaces.nb201 import EDGES, OPS


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(name: str, channels: int) -> nn.Module | None:
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}")


class NB201Cell(nn.Module):
    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.ops_names = list(ops)
        self.edges = nn.ModuleDict()
        for (j, i), op in zip(EDGES, ops, strict=True):
            m = make_op(op, channels)
            if m is not None:
                self.edges[f"{j}_{i}"] = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cell_forward(x, lambda e, key: self.edges[key] if key in self.edges else None)  # noqa: SIM401 (ModuleDict has no .get)


def _cell_forward(x: torch.Tensor, edge: Callable[[int, str], nn.Module | None]) -> torch.Tensor:
    """The cell DAG: node j sums its incoming edges; ``edge(position, "j_i")`` gives the edge's module
    (None for ``none``: no contribution; a node without inputs is zeros)."""
    nodes = [x]
    e = 0
    for j in range(1, 4):
        acc: torch.Tensor | None = None
        for i in range(j):
            m = edge(e, f"{j}_{i}")
            e += 1
            if m is not None:
                y = m(nodes[i])
                acc = y if acc is None else acc + y
        nodes.append(acc if acc is not None else torch.zeros_like(x))
    return nodes[3]


class ResNetBasicBlock(nn.Module):
    """Reduction block between stages: stride-2 residual block."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, ops: Sequence[str], channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 make_cell: Callable[[int], nn.Module] | None = None):
        super().__init__()
        make_cell = make_cell or (lambda width: NB201Cell(ops, width))
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        c_prev = c
        for stage, c_stage in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                layers.append(ResNetBasicBlock(c_prev, c_stage))
                c_prev = c_stage
            layers.extend(make_cell(c_stage) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


# -- one-shot ---------------------------------------------------------------


class NB201SuperCell(nn.Module):
    """A cell whose every edge holds all parametrised ops; ``ops`` picks one per edge."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict()
        for j, i in EDGES:
            self.edges[f"{j}_{i}"] = nn.ModuleDict(
                {op: m for op in OPS if (m := make_op(op, channels)) is not None}
            )

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        return _cell_forward(x, lambda e, key: None if ops[e] == "none" else self.edges[key][ops[e]])


class NB201SuperNetwork(NB201Network):
    """The NB201 network with super cells: ``forward(x, arch)`` runs the cell ``arch`` in every position."""

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10) -> None:
        super().__init__([], channels, cells_per_stage, num_classes, make_cell=NB201SuperCell)

    def forward(self, x: torch.Tensor, arch: dict | None = None) -> torch.Tensor:  # type: ignore[override]
        ops = (arch or {"ops": ["nor_conv_3x3"] * 6})["ops"]
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, ops) if isinstance(layer, NB201SuperCell) else layer(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(self.pool(x), 1))


class FewShotNB201SuperNetwork(nn.Module):
    """Few-shot NAS (Zhao et al., ICML 2021) on NB201: the one-shot supernet split on one edge's operation into
    ``len(OPS)`` = 5 independent sub-supernets; ``forward(x, arch)`` runs the sub-supernet whose op on edge
    ``split_edge`` (0-5, NB201's edge order) is ``arch``'s op there, so a cell is trained and evaluated only with
    the weights of cells sharing that op. Sub-supernet ``k`` serves ``OPS[k]``; all start from the same
    initialisation (a split at the start of training), or from a trained one-shot supernet
    (:meth:`load_one_shot`, the paper's split after one-shot training)."""

    def __init__(self, split_edge: int, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        if not 0 <= split_edge < len(EDGES):
            raise ValueError(f"few-shot split edge must be 0-{len(EDGES) - 1} (NB201's edge order), got {split_edge}")
        self.split_edge = int(split_edge)
        first = NB201SuperNetwork(channels, cells_per_stage, num_classes)
        self.subnets = nn.ModuleList([first] + [copy.deepcopy(first) for _ in OPS[1:]])

    def sub_supernet(self, arch: dict) -> NB201SuperNetwork:
        """The sub-supernet that serves ``arch`` (its op on the split edge)."""
        return self.subnets[OPS.index(arch["ops"][self.split_edge])]  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, arch: dict | None = None) -> torch.Tensor:
        arch = arch or {"ops": ["nor_conv_3x3"] * len(EDGES)}
        return self.sub_supernet(arch)(x, arch)

    def restrict(self, archs: list[dict], rng: np.random.Generator) -> list[dict]:
        """One training step's subnets within one sub-supernet drawn uniformly: ``archs`` (the sandwich: largest,
        smallest, random) with the split edge's op set to that sub-supernet's op, so each step's sandwich and
        distillation stay inside one sub-supernet and every sub-supernet gets the same share of steps."""
        op = OPS[int(rng.integers(len(OPS)))]
        out = []
        for a in archs:
            ops = list(a["ops"])
            ops[self.split_edge] = op
            out.append({**a, "ops": ops})
        return out

    @torch.no_grad()
    def load_one_shot(self, supernet: NB201SuperNetwork) -> None:
        """Every sub-supernet starts from ``supernet``'s weights (the split after one-shot training)."""
        for sub in self.subnets:
            sub.load_state_dict(supernet.state_dict())


@torch.no_grad()
def extract_nb201(net: NB201Network, supernet: NB201SuperNetwork | FewShotNB201SuperNetwork,
                  ops: Sequence[str]) -> NB201Network:
    """Copy the supernet's weights of ``ops`` into the standalone ``net`` (same shapes); from a few-shot
    supernet, the weights of the sub-supernet that serves ``ops``."""
    if isinstance(supernet, FewShotNB201SuperNetwork):
        supernet = supernet.sub_supernet({"ops": list(ops)})
    src = supernet.state_dict()
    dst = net.state_dict()
    op_of_edge = {f"{j}_{i}": op for (j, i), op in zip(EDGES, ops, strict=True)}
    for key in dst:
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "cells" and parts[2] == "edges":
            parts.insert(4, op_of_edge[parts[3]])
        dst[key] = src[".".join(parts)]
    net.load_state_dict(dst)
    p = next(supernet.parameters())
    net.to(device=p.device, dtype=p.dtype).train(supernet.training)
    return net
