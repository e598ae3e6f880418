"""PyTorch modules of the FBNet space, as HW-NAS-Bench builds its networks (``FBNet_Infer``).

- stem: 3x3 conv + BN + ReLU;
- 22 layers, each a ``ConvBlock`` (1x1 conv [groups g] + BN + ReLU, [channel shuffle], kxk depthwise conv +
  BN + ReLU, 1x1 conv [groups g] + BN, residual where width and resolution are kept) or a ``Skip`` (identity,
  or 1x1 conv + BN + ReLU where the layer changes width or stride);
- head: 1x1 conv + BN + ReLU, global average pooling, linear classifier.

The supernet holds all nine blocks per layer under the same parameter names plus the block's name, so
extracting a subnet copies tensors one to one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from search_spaces.fbnet import BLOCK_SPEC, BLOCKS


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ConvNorm(nn.Sequential):
    """conv -> BN -> ReLU (the stem and the head)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class ConvBlock(nn.Module):
    """The inverted residual of the FBNet space (HW-NAS-Bench's ConvBlock)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else None
        self.conv2 = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return x + y if self.residual else y


class Skip(nn.Module):
    """Identity, or 1x1 conv + BN + ReLU where width or resolution changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False), nn.BatchNorm2d(c_out),
                                      nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)


def make_block(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == "skip":
        return Skip(c_in, c_out, stride)
    k, e, g = BLOCK_SPEC[op]
    return ConvBlock(c_in, c_out, k, e, stride, g)


class _Body(nn.Module):
    """Stem, head and classifier (shared by the network and the supernet)."""

    def __init__(self, space: Any) -> None:
        super().__init__()
        self.stem = ConvNorm(space.in_channels, space.stem_width, 3, space.stem_stride)
        self.header = ConvNorm(space.layer_shapes[-1][1], space.head_width, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(space.head_width, space.num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.header(x)), 1))


class FBNetNetwork(_Body):
    """One FBNet architecture (``ops``: 22 block names)."""

    def __init__(self, space: Any, ops: Sequence[str]) -> None:
        super().__init__(space)
        self.cells = nn.ModuleList(make_block(op, *shape) for op, shape in zip(ops, space.layer_shapes, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classify(x)


class FBNetSuperNetwork(_Body):
    """Every layer holds all nine blocks. ``forward(x, arch)`` runs one block per layer (``arch=None``: the
    largest); ``forward_mixed(x, weights)`` sums each layer's blocks weighted by ``weights[layer]`` (a tensor of
    9 weights: softmax or Gumbel-softmax samples of the architecture parameters), skipping blocks whose weight
    is exactly zero in the forward pass only when ``sparse`` (hard samples without a gradient)."""

    def __init__(self, space: Any) -> None:
        super().__init__(space)
        self.space = space
        self.cells = nn.ModuleList(
            nn.ModuleDict({op: make_block(op, *shape) for op in BLOCKS}) for shape in space.layer_shapes)

    def forward(self, x: torch.Tensor, arch: dict | None = None) -> torch.Tensor:
        ops = self.space.validate(arch if arch is not None else self.space.largest())
        x = self.stem(x)
        for cell, op in zip(self.cells, ops, strict=True):
            x = cell[op](x)
        return self.classify(x)

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: (22, 9), each row summing to 1 (its gradient reaches the architecture parameters)."""
        x = self.stem(x)
        for cell, w in zip(self.cells, weights, strict=True):
            x = sum(w[b] * cell[op](x) for b, op in enumerate(BLOCKS))
        return self.classify(x)


@torch.no_grad()
def extract_fbnet(space: Any, supernet: FBNetSuperNetwork, ops: Sequence[str]) -> FBNetNetwork:
    """A standalone network for ``ops`` holding copies of the supernet's weights (same device and mode)."""
    net = FBNetNetwork(space, ops)
    src = supernet.state_dict()
    dst = net.state_dict()
    for key in dst:
        parts = key.split(".")
        if parts[0] == "cells":
            parts.insert(2, ops[int(parts[1])])
        dst[key] = src[".".join(parts)]
    net.load_state_dict(dst)
    p = next(supernet.parameters())
    net.to(device=p.device, dtype=p.dtype).train(supernet.training)
    return net
