"""NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG over 4 nodes; each of its 6 edges (j <- i, i < j) carries one of
5 operations, giving 5**6 = 15,625 cells. Cells are written in NB201's own
string form::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|

The edge order used by ``ops`` lists and encodings follows that string:
(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from search_spaces.base import SPACES, Arch, Layer, SpaceSpec
from search_spaces.errors import ArchError, SpaceError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
N_EDGES = len(EDGES)
_OP_INDEX = {op: i for i, op in enumerate(OPS)}


def live_edges(ops: list[str]) -> list[bool]:
    """For each edge, whether it lies on a path input -> output of non-``none`` edges."""
    reach_in = {0}
    for j in range(1, 4):
        if any(i in reach_in and op != "none" for (jj, i), op in zip(EDGES, ops, strict=True) if jj == j):
            reach_in.add(j)
    reach_out = {3}
    for i in (2, 1, 0):
        if any(j in reach_out and op != "none" for (j, ii), op in zip(EDGES, ops, strict=True) if ii == i):
            reach_out.add(i)
    return [op != "none" and i in reach_in and j in reach_out for (j, i), op in zip(EDGES, ops, strict=True)]


@SPACES.register("nb201", help="NAS-Bench-201 cell space: 6 edges x 5 ops, 15,625 cells")
class NB201Space:
    """The NAS-Bench-201 space. Architectures are ``{"ops": [6 op names]}``."""

    name = "nb201"
    ops = OPS
    edges = EDGES

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 resolution: int = 32, few_shot_edge: int | None = None) -> None:
        if channels < 1 or cells_per_stage < 1 or num_classes < 1 or resolution < 8:
            raise SpaceError(
                f"NB201 needs positive channels, cells_per_stage and num_classes and resolution >= 8, got "
                f"{channels}, {cells_per_stage}, {num_classes}, {resolution}"
            )
        if few_shot_edge is not None and not 0 <= few_shot_edge < N_EDGES:
            raise SpaceError(f"NB201 few_shot_edge must be 0-{N_EDGES - 1} (the edge whose op splits the supernet "
                             f"into {len(OPS)} sub-supernets; edge order (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), "
                             f"(3<-2)) or unset, got {few_shot_edge}")
        self.few_shot_edge = None if few_shot_edge is None else int(few_shot_edge)
        self.channels = int(channels)
        self.cells_per_stage = int(cells_per_stage)
        self.num_classes = int(num_classes)
        self.resolution = int(resolution)

    def spec(self) -> SpaceSpec:
        """Everything that rebuilds this space (``spec().build()``), e.g. in a Ray actor."""
        options = {"channels": self.channels, "cells_per_stage": self.cells_per_stage,
                   "num_classes": self.num_classes, "resolution": self.resolution}
        if self.few_shot_edge is not None:
            options["few_shot_edge"] = self.few_shot_edge
        return SpaceSpec(name=self.name, options=options)

    # -- identity -----------------------------------------------------------
    @property
    def size(self) -> int:
        return len(OPS) ** N_EDGES

    @property
    def encoding_size(self) -> int:
        return 2 * N_EDGES * len(OPS)

    def validate(self, arch: Mapping[str, Any]) -> list[str]:
        if not isinstance(arch, Mapping) or set(arch) != {"ops"}:
            raise ArchError(f"an NB201 architecture is {{'ops': [6 op names]}}, got {arch!r}")
        ops = list(arch["ops"])
        if len(ops) != N_EDGES:
            raise ArchError(f"an NB201 architecture has {N_EDGES} edge ops, got {len(ops)}: {ops!r}")
        for op in ops:
            if op not in _OP_INDEX:
                raise ArchError(f"unknown NB201 op {op!r}; valid ops: {', '.join(OPS)}")
        return ops

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        ops = self.validate(arch)
        nodes = []
        k = 0
        for j in range(1, 4):
            parts = []
            for i in range(j):
                parts.append(f"{ops[k]}~{i}")
                k += 1
            nodes.append("|" + "|".join(parts) + "|")
        return "+".join(nodes)

    def parse(self, arch_id: str) -> Arch:
        """Parse NB201's string form; raises ArchError naming what is wrong."""
        if not isinstance(arch_id, str):
            raise ArchError(f"an NB201 arch string is text, got {type(arch_id).__name__}: {arch_id!r}")
        s = arch_id.strip()
        example = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
        nodes = s.split("+")
        if len(nodes) != 3:
            raise ArchError(
                f"malformed NB201 arch {arch_id!r}: expected 3 nodes joined by '+', got {len(nodes)}; "
                f"example: {example}"
            )
        ops: list[str] = []
        for j, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
                raise ArchError(f"malformed NB201 arch {arch_id!r}: node {j} {node!r} must be '|op~i|...|'")
            parts = node[1:-1].split("|")
            if len(parts) != j:
                raise ArchError(
                    f"malformed NB201 arch {arch_id!r}: node {j} needs {j} inputs, got {len(parts)} in {node!r}"
                )
            for i, part in enumerate(parts):
                op, sep, src = part.partition("~")
                if not sep or src != str(i):
                    raise ArchError(
                        f"malformed NB201 arch {arch_id!r}: edge {part!r} of node {j} must be 'op~{i}'"
                    )
                if op not in _OP_INDEX:
                    raise ArchError(
                        f"malformed NB201 arch {arch_id!r}: unknown op {op!r}; valid ops: {', '.join(OPS)}"
                    )
                ops.append(op)
        return {"ops": ops}

    # -- sampling and enumeration -------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        idx = rng.integers(0, len(OPS), size=N_EDGES)
        return {"ops": [OPS[i] for i in idx]}

    def enumerate(self) -> Iterator[Arch]:
        for combo in itertools.product(OPS, repeat=N_EDGES):
            yield {"ops": list(combo)}

    def index(self, arch: Mapping[str, Any]) -> int:
        """Position of ``arch`` in :meth:`enumerate` (not NB201's own benchmark index)."""
        i = 0
        for op in self.validate(arch):
            i = i * len(OPS) + _OP_INDEX[op]
        return i

    # -- encodings and Optuna -----------------------------------------------
    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """A float32 vector of length 60: a one-hot op per edge (30), then the same
        one-hot restricted to *live* edges (30): edges on a path from the input to
        the output. Compilers that prune dead branches (the Edge TPU does) cost
        only live edges; the measured data shows it (live features lift an
        additive model's held-out SRCC there from 0.93 to 0.99).
        """
        ops = self.validate(arch)
        x = np.zeros(self.encoding_size, dtype=np.float32)
        half = N_EDGES * len(OPS)
        for e, (op, alive) in enumerate(zip(ops, live_edges(ops), strict=True)):
            x[e * len(OPS) + _OP_INDEX[op]] = 1.0
            if alive:
                x[half + e * len(OPS) + _OP_INDEX[op]] = 1.0
        return x

    def encoding_groups(self) -> np.ndarray:
        """Coarse groups of encoding features (rows): per op, the count over all
        edges and over live edges. Transfer uses them to share strength across
        edges when few target samples exist."""
        g = np.zeros((2 * len(OPS), self.encoding_size), dtype=np.float32)
        for part in range(2):
            for e in range(N_EDGES):
                for o in range(len(OPS)):
                    g[part * len(OPS) + o, part * N_EDGES * len(OPS) + e * len(OPS) + o] = 1.0
        return g

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {f"edge_{j}<-{i}": CategoricalDistribution(list(OPS)) for j, i in EDGES}

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        try:
            return {"ops": [params[f"edge_{j}<-{i}"] for j, i in EDGES]}
        except KeyError as e:
            raise ArchError(f"NB201 params lack {e.args[0]!r}; expected keys {list(self.distributions())}") from None

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna parameters of ``arch`` (the inverse of ``from_params``: to enqueue known cells)."""
        ops = self.validate(arch)
        return {f"edge_{j}<-{i}": op for (j, i), op in zip(EDGES, ops, strict=True)}

    # -- networks -------------------------------------------------------------
    def build(self, arch: Mapping[str, Any]) -> Any:
        """The real NB201 network for ``arch`` as this space is configured (randomly initialised)."""
        from search_spaces.nb201_torch import NB201Network

        ops = self.validate(arch)
        return NB201Network(ops, channels=self.channels, cells_per_stage=self.cells_per_stage,
                            num_classes=self.num_classes)

    def layers(self, arch: Mapping[str, Any]) -> list[Layer]:
        """The layers of ``build(arch)`` as a cost model sees them, without building it (fast: the simulator
        profiles thousands of cells). Equal, as a multiset, to what forward hooks on the built network count
        (tested); ``none`` edges and ``skip_connect`` cost nothing."""
        ops = self.validate(arch)
        c, r = self.channels, self.resolution

        def conv(c_in: int, c_out: int, kernel: int, r_in: int, r_out: int) -> Layer:
            return Layer("conv", c_in * r_in * r_in, c_out * r_out * r_out, c_out * c_in * kernel * kernel,
                         c_in * kernel * kernel)

        def ew(n: int) -> Layer:
            return Layer("elementwise", n, n)

        def relu_conv_bn(c_in: int, c_out: int, kernel: int, r_in: int, r_out: int) -> list[Layer]:
            return [ew(c_in * r_in * r_in), conv(c_in, c_out, kernel, r_in, r_out), ew(c_out * r_out * r_out)]

        out = [conv(3, c, 3, r, r), ew(c * r * r)]  # stem
        c_prev, r_prev = c, r
        for stage in range(3):
            c_s, r_s = c * 2**stage, (r + 2**stage - 1) // 2**stage
            if stage > 0:  # the residual reduction block
                out += relu_conv_bn(c_prev, c_s, 3, r_prev, r_s) + relu_conv_bn(c_s, c_s, 3, r_s, r_s)
                out += [Layer("pool", c_prev * r_prev * r_prev, c_prev * r_s * r_s), conv(c_prev, c_s, 1, r_s, r_s)]
            cell: list[Layer] = []
            for op in ops:
                if op in ("nor_conv_1x1", "nor_conv_3x3"):
                    cell += relu_conv_bn(c_s, c_s, 1 if op == "nor_conv_1x1" else 3, r_s, r_s)
                elif op == "avg_pool_3x3":
                    cell.append(Layer("pool", c_s * r_s * r_s, c_s * r_s * r_s))
            out += cell * self.cells_per_stage
            c_prev, r_prev = c_s, r_s
        n = c_prev * r_prev * r_prev
        return out + [ew(n), ew(n), Layer("pool", n, c_prev),
                      Layer("linear", c_prev, self.num_classes, c_prev * self.num_classes, c_prev)]

    def n_params(self, arch: Mapping[str, Any]) -> int:
        """Trainable parameters of ``build(arch)`` in closed form (tested equal to the built network): every
        edge's op has its weights whether or not the edge feeds the output."""
        ops = self.validate(arch)
        c = self.channels

        def rcb(c_in: int, c_out: int, kernel: int) -> int:  # ReLU-Conv-BN: conv weights, BN scale and shift
            return c_out * c_in * kernel * kernel + 2 * c_out

        total = 3 * c * 9 + 2 * c  # stem conv + BN
        c_prev = c
        for stage in range(3):
            c_s = c * 2**stage
            if stage > 0:  # the reduction block: two ReLU-Conv-BN and the 1x1 shortcut conv
                total += rcb(c_prev, c_s, 3) + rcb(c_s, c_s, 3) + c_prev * c_s
            cell = sum(rcb(c_s, c_s, 1 if op == "nor_conv_1x1" else 3) for op in ops
                       if op in ("nor_conv_1x1", "nor_conv_3x3"))
            total += cell * self.cells_per_stage
            c_prev = c_s
        return total + 2 * c_prev + c_prev * self.num_classes + self.num_classes  # last BN, classifier

    # -- one-shot -------------------------------------------------------------
    def largest(self) -> Arch:
        return {"ops": ["nor_conv_3x3"] * N_EDGES}

    def smallest(self) -> Arch:
        return {"ops": ["none"] * N_EDGES}

    def build_supernet(self) -> Any:
        """The one-shot network: every edge holds its five ops; ``forward(x, arch)`` activates one per edge.
        With ``few_shot_edge``: five independent sub-supernets, one per op on that edge (Few-shot NAS)."""
        from search_spaces.nb201_torch import FewShotNB201SuperNetwork, NB201SuperNetwork

        if self.few_shot_edge is not None:
            return FewShotNB201SuperNetwork(self.few_shot_edge, self.channels, self.cells_per_stage, self.num_classes)
        return NB201SuperNetwork(self.channels, self.cells_per_stage, self.num_classes)

    def extract(self, supernet: Any, arch: Mapping[str, Any]) -> Any:
        """A standalone network for ``arch`` holding copies of the supernet's weights."""
        from search_spaces.nb201_torch import extract_nb201

        ops = self.validate(arch)
        return extract_nb201(self.build(arch), supernet, ops)

    def input_shape(self, batch_size: int = 1) -> tuple[int, int, int, int]:
        """The input of the configured network: ``(batch_size, 3, resolution, resolution)``."""
        return (batch_size, 3, self.resolution, self.resolution)
