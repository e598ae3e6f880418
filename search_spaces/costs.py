"""What an architecture costs besides latency, computed from the real network: parameters, multiply-adds
and peak activation memory.

These are properties of the network alone (no device), so they serve as search
constraints (``search.constraints``), as extra objectives of a multi-objective
search (``search.objectives``) and as a device's memory limit
(``sweep.targets: [{name, memory_mb}]``).

- ``params_m``: trainable parameters, millions (``sum(p.numel())`` of
  ``space.build(arch)``; a space may give an exact closed form, ``n_params``,
  tested equal to the built network);
- ``macs_m``: multiply-adds of one forward pass at batch 1, millions (conv and
  linear layers);
- ``peak_mem_mb``: the largest working set of one layer, its input plus its
  output activation in float32 at batch 1, MiB. This is the layer-by-layer
  figure microcontroller deployment budgets for (MCUNet); tensors that a cell
  or a residual keeps alive across layers are not added, so it is a lower
  bound of a runtime's peak.

The layers come from the space's exact layer list (``space.layers``) where it
has one, else from forward hooks on the built network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces.base import Layer, SearchSpace, SpaceSpec, arch_input_shape
from search_spaces.errors import SpaceError

COSTS: dict[str, str] = {
    "params_m": "trainable parameters (millions)",
    "macs_m": "multiply-adds of one forward pass at batch 1 (millions)",
    "peak_mem_mb": "largest one-layer working set (input + output activations, float32, batch 1; MiB)",
}
BYTES_PER_ELEMENT = 4


def check_cost_names(names: Sequence[str], what: str) -> list[str]:
    """Problems with cost names used in a config (unknown names, listing the known ones)."""
    return [f"{what}: unknown cost {n!r}; known: {', '.join(COSTS)}" for n in names if n not in COSTS]


def hooked_layers(space: SearchSpace, arch: Mapping[str, Any]) -> list[Layer]:
    """The layers of the real network ``space.build(arch)``, counted by forward hooks on the space's input."""
    import torch
    from torch import nn

    net = space.build(arch).eval()
    rows: list[Layer] = []

    def hook(mod: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        n_in, n_out = int(inp[0].numel()), int(out.numel())
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            kind = "dwconv" if mod.groups > 1 and mod.groups == mod.in_channels else "conv"
            rows.append(Layer(kind, n_in, n_out, int(mod.weight.numel()), k))
        elif isinstance(mod, nn.Linear):
            rows.append(Layer("linear", n_in, n_out, int(mod.weight.numel()), mod.in_features))
        elif isinstance(mod, (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            rows.append(Layer("pool", n_in, n_out))
        elif isinstance(mod, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.BatchNorm2d)):
            rows.append(Layer("elementwise", n_in, n_out))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(torch.zeros(*arch_input_shape(space, arch, 1)))
    finally:
        for h in handles:
            h.remove()
    return rows


def network_layers(space: SearchSpace, arch: Mapping[str, Any]) -> list[Layer]:
    """The space's own exact layer list where it has one (``space.layers``, tested equal to the hooks),
    else the hooks on the built network."""
    if hasattr(space, "layers"):
        return list(space.layers(arch))
    return hooked_layers(space, arch)


def count_params(space: SearchSpace, arch: Mapping[str, Any]) -> int:
    """Trainable parameters of ``space.build(arch)``: the space's closed form where it has one, else the
    network built on the meta device (shapes only: no memory, no initialisation)."""
    if hasattr(space, "n_params"):
        return int(space.n_params(arch))
    import torch

    with torch.device("meta"):
        net = space.build(arch)
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


@dataclass(frozen=True)
class ArchCosts:
    params_m: float
    macs_m: float
    peak_mem_mb: float

    def get(self, name: str) -> float:
        if name not in COSTS:
            raise SpaceError(f"unknown cost {name!r}; known: {', '.join(COSTS)}")
        return float(getattr(self, name))


def arch_costs(space: SearchSpace, arch: Mapping[str, Any]) -> ArchCosts:
    """The costs of one architecture (see the module doc)."""
    layers = network_layers(space, arch)
    macs = sum(x.macs_per_out * x.n_out for x in layers)
    peak = max((x.n_in + x.n_out for x in layers), default=0) * BYTES_PER_ELEMENT
    return ArchCosts(count_params(space, arch) / 1e6, macs / 1e6, peak / 2**20)


class CostModel:
    """Costs of architectures by id, cached; picklable (rebuilt from the space spec where it crosses a
    process boundary)."""

    def __init__(self, spec: SpaceSpec) -> None:
        self.spec = spec
        self._space: SearchSpace | None = None
        self.rows: dict[str, ArchCosts] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec, self.rows, self._space = state["spec"], state["rows"], None

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self._space = self.spec.build()
        return self._space

    def of(self, arch_ids: Sequence[str]) -> list[ArchCosts]:
        miss = [a for a in dict.fromkeys(arch_ids) if a not in self.rows]
        for a in miss:
            self.rows[a] = arch_costs(self.space, self.space.parse(a))
        return [self.rows[a] for a in arch_ids]

    def values(self, arch_ids: Sequence[str], name: str) -> np.ndarray:
        """One cost of each architecture."""
        return np.array([c.get(name) for c in self.of(arch_ids)], dtype=float)

    def matrix(self, arch_ids: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """(len(arch_ids), len(names)) costs."""
        rows = self.of(arch_ids)
        return np.array([[c.get(n) for n in names] for c in rows], dtype=float).reshape(len(rows), len(names))

    def within(self, arch_ids: Sequence[str], limits: Mapping[str, float]) -> np.ndarray:
        """Boolean mask: the architectures whose every limited cost is at most its limit."""
        mask = np.ones(len(arch_ids), dtype=bool)
        for name, limit in limits.items():
            mask &= self.values(arch_ids, name) <= limit
        return mask
