"""DNAS on NAS-Bench-201's edges: the cell's 6 edges as the layers of ``dnas_sweep``, each one of 5 ops.

``NB201EdgeView(space)`` gives ``dnas.dnas_sweep`` what it needs from a layer-wise space: ``choices()`` (6 x
``OPS``), ``build_supernet()`` (NB201's one-shot network plus ``forward_mixed``: each edge the weighted sum of
its ops, ``none`` adding nothing), ``arch_id`` and ``input_shape``. The same cell is used in every position
(NB201's definition), so one weight vector per edge mixes all its cells.

The latency term needs a per-edge table: ``NB201EdgeView.latency_table`` (what ``search.algorithm: dnas``
calls; the view is registered as ``dnas.VIEWS['nb201']``) fits it to the latency the search minimises (the
proxy's predictor, whatever its kind) over the domain's cells; ``edge_latency_table`` fits
``base + sum_e delta[e, op_e]`` by least squares on a latency column (the target's measured table, or any
additive model's predictions) over the architectures given. NB201's latency is not exactly additive per edge
(a ``none`` edge can cut a path and make other edges dead); the fit's residual is what the expected-latency
term cannot see, and the derived architectures are judged at their true latency afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError
from search_spaces.nb201 import EDGES, N_EDGES, OPS, NB201Space

log = logging.getLogger(__name__)


def _mixed_supernet_class() -> type:
    import torch

    from search_spaces.nb201_torch import NB201SuperCell, NB201SuperNetwork, _cell_forward

    class NB201MixedSuperNetwork(NB201SuperNetwork):
        """NB201's supernet with ``forward_mixed(x, weights, aux_skip)``: weights (6, 5), one row per edge over
        ``OPS``; ``aux_skip`` (float) adds ``aux_skip * z`` to every edge's output (DARTS-'s auxiliary skip
        connection, Chu et al., ICLR 2021; 0 = none)."""

        def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor, aux_skip: float = 0.0) -> torch.Tensor:
            def cell(layer: NB201SuperCell, h: torch.Tensor) -> torch.Tensor:
                def edge(e: int, key: str) -> Any:
                    ops = layer.edges[key]

                    def mixed(z: torch.Tensor) -> Any:
                        out = sum(weights[e, o] * ops[op](z) for o, op in enumerate(OPS) if op != "none")
                        return out + aux_skip * z if aux_skip else out

                    return mixed

                return _cell_forward(h, edge)

            x = self.stem(x)
            for layer in self.cells:
                x = cell(layer, x) if isinstance(layer, NB201SuperCell) else layer(x)
            x = self.lastact(x)
            return self.classifier(torch.flatten(self.pool(x), 1))

    return NB201MixedSuperNetwork


class NB201EdgeView:
    """NB201 seen as a layer-wise space (its 6 edges) for ``dnas_sweep``."""

    needs_additive_latency = False  # the per-edge table is fitted over the domain's cells to any latency
    supports_aux_skip = True  # forward_mixed takes aux_skip (DnasConfig.aux_skip)
    # the parameter-free ops gradient search collapses onto (skip_penalty); avg_pool too: with none and
    # skip_connect alone penalised, the search collapsed onto avg_pool_3x3 (docs/benchmarks.md, issue 21 turn 6b)
    collapse_ops = ("none", "skip_connect", "avg_pool_3x3")
    # DnasConfig.skip_penalty's default here: mu 0.1 reached 1.007 of NSGA-II's hypervolume at 0.44x its compute
    # where plain DNAS reached 0.944 (4 seeds; docs/benchmarks.md, issue 21 turn 6b)
    default_skip_penalty = 0.1

    def __init__(self, space: NB201Space) -> None:
        self.space = space
        self.name = space.name
        self.encoding_size = N_EDGES * len(OPS)

    def choices(self) -> list[tuple[str, ...]]:
        return [tuple(OPS)] * N_EDGES

    def build_supernet(self) -> Any:
        cls = _mixed_supernet_class()
        return cls(self.space.channels, self.space.cells_per_stage, self.space.num_classes)

    def arch_id(self, arch: dict) -> str:
        return self.space.arch_id(arch)

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        return self.space.input_shape(batch_size)

    def latency_cells(self, latency: Callable[[Sequence[str]], np.ndarray],
                      arch_ids: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """The domain's cells as ``dnas_sweep(cells=...)`` takes them: (n, 6) op indices and ``latency`` (ms,
        n) of each (None: all 15,625); the exact expected latency of NB201 (dead edges included) needs them."""
        ids = list(arch_ids) if arch_ids is not None else [self.space.arch_id(a) for a in self.space.enumerate()]
        index = {op: i for i, op in enumerate(OPS)}
        idx = np.array([[index[op] for op in self.space.parse(a)["ops"]] for a in ids], dtype=np.int64)
        lat = np.asarray(latency(ids), dtype=float)
        if lat.shape != (len(ids),) or not np.isfinite(lat).all():
            raise ConfigError("search algorithm 'dnas' on nb201: the latency minimised is not finite on every "
                              "cell of the domain")
        return idx, lat

    def latency_table(self, model: Any, latency: Callable[[Sequence[str]], np.ndarray],
                      arch_ids: Sequence[str] | None) -> tuple[np.ndarray, float]:
        """(6, 5) ms deltas (``none`` 0) and the base ms: ``edge_latency_table`` on ``latency(arch_ids)`` (the
        domain's cells; None: all 15,625). ``model`` is not needed (NB201's encoding has live-edge features, so
        an additive model's coefficients are not a per-edge table). ConfigError where the fit is impossible."""
        ids = list(arch_ids) if arch_ids is not None else [self.space.arch_id(a) for a in self.space.enumerate()]
        if len(ids) < N_EDGES * (len(OPS) - 1) + 1:
            raise ConfigError(f"search algorithm 'dnas' on nb201 fits a per-edge latency table over the domain's "
                              f"cells; {len(ids)} are too few (at least {N_EDGES * (len(OPS) - 1) + 1})")
        lat = np.asarray(latency(ids), dtype=float)
        if lat.shape != (len(ids),) or not np.isfinite(lat).all():
            raise ConfigError("search algorithm 'dnas' on nb201: the latency minimised is not finite on every "
                              "cell of the domain; the per-edge table cannot be fitted")
        deltas, base, r2 = edge_latency_table(self.space, ids, lat)
        log.info("dnas nb201: per-edge latency table over %d cells, R^2 %.3f", len(ids), r2)
        return deltas, base


def edge_onehot(space: NB201Space, arch_ids: Sequence[str]) -> np.ndarray:
    """(n, 30) one-hot of each edge's op, edge-major (NB201's ``EDGES`` order, ``OPS`` order)."""
    X = np.zeros((len(arch_ids), N_EDGES * len(OPS)))
    index = {op: i for i, op in enumerate(OPS)}
    for r, a in enumerate(arch_ids):
        for e, op in enumerate(space.parse(a)["ops"]):
            X[r, e * len(OPS) + index[op]] = 1.0
    return X


def edge_latency_table(space: NB201Space, arch_ids: Sequence[str], latency_ms: np.ndarray
                       ) -> tuple[np.ndarray, float, float]:
    """Least-squares ``base + sum_e delta[e, op]`` on ``latency_ms`` (ms). Returns deltas (6, 5) with the
    ``none`` op of each edge at 0, the base, and the fit's R^2 on the given architectures."""
    X = edge_onehot(space, arch_ids)
    y = np.asarray(latency_ms, dtype=float)
    keep = [c for c in range(X.shape[1]) if c % len(OPS) != 0]  # 'none' is each edge's reference
    A = np.hstack([np.ones((len(y), 1)), X[:, keep]])
    theta, *_ = np.linalg.lstsq(A, y, rcond=None)
    deltas = np.zeros((N_EDGES, len(OPS)))
    deltas.reshape(-1)[keep] = theta[1:]
    pred = A @ theta
    r2 = 1.0 - float(np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    return deltas, float(theta[0]), r2


__all__ = ["EDGES", "NB201EdgeView", "edge_latency_table", "edge_onehot"]
