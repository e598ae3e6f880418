"""PyTorch modules of the elastic MobileNetV3 space.

Standalone modules (``MobileNetV3``) and their elastic counterparts
(``ElasticMobileNetV3``) share parameter names, so extracting a subnet is a
matter of copying slices:

- kernel: the centre ``k x k`` crop of the 7x7 depthwise kernel;
- expand: the leading ``mid`` channels of the expansion, depthwise and
  squeeze-excite layers (and the matching BatchNorm statistics);
- depth: the first ``d`` blocks of each stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.mobilenet import EXPANDS, KERNELS, MAX_DEPTH, N_STAGES, make_divisible


def _act(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU()


def mid_channels(c_in: int, expand: int) -> int:
    return make_divisible(c_in * expand)


def se_channels(mid: int) -> int:
    return make_divisible(mid // 4)


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        sq = se_channels(channels)
        self.reduce = nn.Conv2d(channels, sq, 1, bias=True)
        self.expand = nn.Conv2d(sq, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class MBBlock(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, [SE], 1x1 project, residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int, act: str, se: bool) -> None:
        super().__init__()
        mid = mid_channels(c_in, expand) if expand != 1 else c_in
        self.expand = ConvBN(c_in, mid, 1) if expand != 1 else None
        self.dw = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.se = SqueezeExcite(mid) if se else None
        self.project = ConvBN(mid, c_out, 1)
        self.act = _act(act)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand is not None:
            y = self.act(self.expand(y))
        y = self.act(self.dw(y))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class _Head(nn.Module):
    """Final 1x1 expansion, global pooling, feature mix, classifier (shared by both networks)."""

    def __init__(self, c_in: int, c_final: int, feature_dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.final_expand = ConvBN(c_in, c_final, 1)
        self.feature_mix = nn.Conv2d(c_final, feature_dim, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.final_expand(x))
        x = x.mean((2, 3), keepdim=True)
        x = F.hardswish(self.feature_mix(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def _stem(space: Any) -> tuple[nn.Module, nn.Module]:
    first = ConvBN(space.in_channels, space.stem_width, 3, stride=2)
    first_block = MBBlock(space.stem_width, space.stem_width, 3, 1, 1, "relu", False)
    return first, first_block


class MobileNetV3(nn.Module):
    """A standalone MobileNetV3 of the space (the subnet an elastic supernet extracts to)."""

    def __init__(self, space: Any, d: Sequence[int], ks: Sequence[Sequence[int]], e: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.first_conv, self.first_block = _stem(space)
        stages = []
        c_in = space.stem_width
        for s, (width, stride, act, se) in enumerate(space.stage_specs()):
            blocks = []
            for b in range(d[s]):
                blocks.append(MBBlock(c_in, width, ks[s][b], e[s][b], stride if b == 0 else 1, act, se))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = _Head(c_in, space.final_width, space.feature_dim, space.num_classes, space.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(F.hardswish(self.first_conv(x)))
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


# -- elastic ----------------------------------------------------------------


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, c: int) -> torch.Tensor:
    """BatchNorm over the leading ``c`` channels of ``bn`` (running stats update in place)."""
    if c == bn.num_features:
        return bn(x)
    use_batch = bn.training or bn.running_mean is None
    momentum = 0.0 if bn.momentum is None else bn.momentum
    return F.batch_norm(
        x,
        bn.running_mean[:c] if bn.running_mean is not None else None,
        bn.running_var[:c] if bn.running_var is not None else None,
        bn.weight[:c],
        bn.bias[:c],
        use_batch,
        momentum,
        bn.eps,
    )


class ElasticMBBlock(MBBlock):
    """An MBBlock at its largest (kernel 7, expand 6) that runs any smaller (kernel, expand)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str, se: bool) -> None:
        super().__init__(c_in, c_out, max(KERNELS), max(EXPANDS), stride, act, se)
        self.c_in = c_in
        self.stride = stride
        self.k_max = max(KERNELS)

    def forward(self, x: torch.Tensor, kernel: int = max(KERNELS),  # type: ignore[override]
                expand: int = max(EXPANDS)) -> torch.Tensor:
        mid = mid_channels(self.c_in, expand)
        assert self.expand is not None
        y = F.conv2d(x, self.expand.conv.weight[:mid])
        y = self.act(_bn(y, self.expand.bn, mid))
        off = (self.k_max - kernel) // 2
        w = self.dw.conv.weight[:mid, :, off:off + kernel, off:off + kernel]
        y = F.conv2d(y, w, None, self.stride, kernel // 2, 1, mid)
        y = self.act(_bn(y, self.dw.bn, mid))
        if self.se is not None:
            sq = se_channels(mid)
            s = y.mean((2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, self.se.reduce.weight[:sq, :mid], self.se.reduce.bias[:sq]))
            s = F.hardsigmoid(F.conv2d(s, self.se.expand.weight[:mid, :sq], self.se.expand.bias[:mid]))
            y = y * s
        y = F.conv2d(y, self.project.conv.weight[:, :mid])
        y = self.project.bn(y)
        return x + y if self.residual else y

    def copy_to(self, block: MBBlock, kernel: int, expand: int) -> None:
        """Copy this block's (kernel, expand) slice into a standalone ``block``."""
        mid = mid_channels(self.c_in, expand)
        off = (self.k_max - kernel) // 2
        assert self.expand is not None and block.expand is not None
        _copy_conv_bn(self.expand, block.expand, out=mid)
        block.dw.conv.weight.copy_(self.dw.conv.weight[:mid, :, off:off + kernel, off:off + kernel])
        _copy_bn(self.dw.bn, block.dw.bn, mid)
        if self.se is not None and block.se is not None:
            sq = se_channels(mid)
            block.se.reduce.weight.copy_(self.se.reduce.weight[:sq, :mid])
            block.se.reduce.bias.copy_(self.se.reduce.bias[:sq])
            block.se.expand.weight.copy_(self.se.expand.weight[:mid, :sq])
            block.se.expand.bias.copy_(self.se.expand.bias[:mid])
        block.project.conv.weight.copy_(self.project.conv.weight[:, :mid])
        _copy_bn(self.project.bn, block.project.bn, self.project.bn.num_features)


def _copy_bn(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, c: int) -> None:
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_conv_bn(src: ConvBN, dst: ConvBN, out: int) -> None:
    dst.conv.weight.copy_(src.conv.weight[:out])
    _copy_bn(src.bn, dst.bn, out)


class ElasticMobileNetV3(nn.Module):
    """The weight-sharing supernet: every block at its largest, every stage at depth 4.

    ``forward(x, arch)`` runs the subnet ``arch``; ``arch=None`` runs the largest.
    """

    def __init__(self, space: Any) -> None:
        super().__init__()
        self.space = space
        self.first_conv, self.first_block = _stem(space)
        stages = []
        c_in = space.stem_width
        for width, stride, act, se in space.stage_specs():
            stages.append(nn.ModuleList(
                ElasticMBBlock(c_in if b == 0 else width, width, stride if b == 0 else 1, act, se)
                for b in range(MAX_DEPTH)
            ))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.head = _Head(c_in, space.final_width, space.feature_dim, space.num_classes, space.dropout)

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any] | None = None) -> torch.Tensor:
        d, ks, e = self.space.validate(arch if arch is not None else self.space.largest())
        x = self.first_block(F.hardswish(self.first_conv(x)))
        for s in range(N_STAGES):
            for b in range(d[s]):
                x = self.stages[s][b](x, ks[s][b], e[s][b])
        return self.head(x)


@torch.no_grad()
def extract(space: Any, supernet: ElasticMobileNetV3, arch: Mapping[str, Any]) -> MobileNetV3:
    """A standalone MobileNetV3 for ``arch`` holding copies of the supernet's weights."""
    d, ks, e = space.validate(arch)
    net = MobileNetV3(space, d, ks, e)
    net.first_conv.load_state_dict(supernet.first_conv.state_dict())
    net.first_block.load_state_dict(supernet.first_block.state_dict())
    net.head.load_state_dict(supernet.head.state_dict())
    for s in range(N_STAGES):
        for b in range(d[s]):
            supernet.stages[s][b].copy_to(net.stages[s][b], ks[s][b], e[s][b])
    p = next(supernet.parameters())
    net = net.to(device=p.device, dtype=p.dtype)
    net.train(supernet.training)
    return net
