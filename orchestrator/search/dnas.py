"""Differentiable latency-aware search (FBNet, Wu et al. CVPR 2019): ``search.algorithm: dnas``.

Each layer of a layer-wise space (``space.choices()``) gets architecture logits ``alpha[l]``. The supernet's
weights and the logits are trained in turn on two disjoint parts of the training set:

- weight step: one path sampled from ``softmax(alpha)`` per batch (a single-path forward, cheap);
- architecture step: every block of every layer, mixed by Gumbel-softmax samples of ``alpha`` at temperature
  ``tau`` (``forward_mixed``), and the loss

      cross-entropy + lambda * (E[latency] - fastest) / (slowest - fastest)

  where ``E[latency] = sum_l softmax(alpha[l]) . lut[l] + base`` is the expected latency under an additive
  latency model (a lookup table, or an additive predictor's coefficients: exactly a lookup table on the
  one-hot encoding). The penalty is scaled to [0, 1] over the space's latency range, so ``lambda`` is
  unit-free: 0 ignores latency, large values ask for the fastest network.

Against the collapse of gradient search onto parameter-free ops (NAS-Bench-201 reports DARTS's all-skip cell,
54.3 % on CIFAR-10; Dong & Yang, ICLR 2020), two remedies from the literature (``skip_penalty`` on by default
for nb201, at the view's ``default_skip_penalty`` 0.1; everything else off by default):
``skip_penalty`` (mu) adds ``mu * mean_l sum_{o in collapse_ops} softmax(alpha[l])_o`` (the parameter-free ops'
expected share per layer) to the architecture loss
(``collapse_penalty``: a soft form of P-DARTS's / DARTS+'s cap on the number of skip connections, Chen et al.
ICCV 2019, Liang et al. 2019), and ``aux_skip`` adds DARTS-'s auxiliary skip connection ``beta * x`` to every
edge of the mixed forward, beta decaying linearly from 1 to 0 over each lambda's architecture steps (Chu et al.,
ICLR 2021: it takes over the residual benefit that otherwise goes to the learnable skip op). Measured on NB201
in docs/benchmarks.md ("Issue 21 (turn 6b): DNAS collapse remedies").

``tau`` decays exponentially from ``tau_start`` to ``tau_end`` over the search epochs. After ``warmup_epochs``
of weight training (shared by every lambda), each lambda of the sweep continues from a copy of the warmed-up
supernet; its architecture is the most likely block of each layer, plus ``samples`` architectures drawn from
its final distribution (FBNet samples 6). The derived architectures (deduplicated) are then evaluated like any
candidate (the problem's accuracy source and latency), so the sweep gives a front.

Which spaces DNAS searches is the ``VIEWS`` registry's answer (space name -> a view class): ``fbnet`` as it
is (``LayerwiseView``: its layers' blocks; the latency table is an additive model's coefficients on its
layer-major one-hot encoding), ``nb201`` through its 6 edges (``dnas_nb201.NB201EdgeView``: the table is a
least-squares per-edge fit of the latency minimised, over the domain's cells). Each view says whether it needs
an additive latency model (``needs_additive_latency``) or a finite domain to fit one over. ``dnas_sweep``
also takes a finite domain's cells (``cells=``) for the exact expected latency instead of the table's sum.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError
from orchestrator.registry import Registry
from orchestrator.search.dnas_nb201 import NB201EdgeView
from orchestrator.search.dnas_settings import DnasConfig
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)


@dataclass
class DnasResult:
    lam: float
    arch_id: str  # the most likely block of each layer
    probs: np.ndarray  # (layers, choices) softmax of the final logits
    expected_latency_ms: float
    seconds: float
    sampled: list[str] = field(default_factory=list)  # ``samples`` draws from ``probs`` (may repeat arch_id)
    weight_images: int = 0  # images through a sampled single path (weight steps) in this lambda's search
    arch_images: int = 0  # images through the mixed supernet (architecture steps: every block of every layer)
    warmup_images: int = 0  # images of the shared warm-up (the same figure in every result of a sweep)

    @property
    def archs(self) -> list[str]:
        """The derived architectures of this lambda: the most likely, then the sampled ones (deduplicated)."""
        return list(dict.fromkeys([self.arch_id, *self.sampled]))


def latency_table(space: SearchSpace, model: Any) -> tuple[np.ndarray, float]:
    """The additive latency model as a lookup table: (layers, choices) deltas and the base, from ``coef_`` and
    ``intercept_`` on the space's layer-major one-hot encoding."""
    if model is None or not hasattr(model, "coef_"):
        raise ConfigError("search algorithm 'dnas' needs an additive latency model (a lookup-table proxy "
                          "latency.lut, or latency.predictor: additive)")
    choices = layerwise_choices(space)
    widths = {len(c) for c in choices}
    coef = np.asarray(model.coef_, dtype=float)
    if len(widths) != 1 or coef.shape != (space.encoding_size,) or len(choices) * widths.pop() != coef.size:
        raise ConfigError(f"search algorithm 'dnas': the latency model has {coef.size} coefficients; space "
                          f"{space.name!r} needs one per (layer, block)")
    return coef.reshape(len(choices), -1), float(model.intercept_)


def collapse_mask(space: Any, choices: list[tuple[str, ...]], ops: list[str] | None = None) -> np.ndarray:
    """(layers, choices) 0/1 mask of ``ops`` (None: the view's ``collapse_ops``, default ops named ``skip``,
    ``skip_connect`` or ``none``) in each layer's choices. ConfigError for a name no layer offers."""
    names = set(ops if ops is not None else getattr(space, "collapse_ops", ("skip", "skip_connect", "none")))
    unknown = names - {op for ch in choices for op in ch}
    if ops is not None and unknown:
        raise ConfigError(f"dnas: collapse_ops {sorted(unknown)} are not ops of space {space.name!r}; its ops: "
                          f"{', '.join(dict.fromkeys(op for ch in choices for op in ch))}")
    return np.array([[1.0 if op in names else 0.0 for op in ch] for ch in choices])


def collapse_penalty(alpha: Any, mask: Any, mu: float) -> Any:
    """``mu * mean_l sum_o mask[l, o] softmax(alpha[l])_o``: the expected share of pass-through ops per layer,
    weighted; its gradient lowers those ops' logits and raises the others' (``DnasConfig.skip_penalty``).
    ``alpha`` and ``mask``: (layers, choices) tensors."""
    import torch

    return mu * (torch.softmax(alpha, dim=1) * mask).sum(dim=1).mean()


def resolved_skip_penalty(space: Any, cfg: DnasConfig) -> float:
    """The ``skip_penalty`` mu a sweep of ``space`` (a DNAS view) uses: ``cfg.skip_penalty`` where set (0 = off),
    else the view's ``default_skip_penalty`` (0 where the view has none)."""
    if cfg.skip_penalty is not None:
        return float(cfg.skip_penalty)
    return float(getattr(space, "default_skip_penalty", 0.0))


def layerwise_choices(space: SearchSpace) -> list[tuple[str, ...]]:
    if not hasattr(space, "choices") or not hasattr(space, "build_supernet"):
        raise ConfigError(f"search algorithm 'dnas' needs a layer-wise one-shot space (one block per layer, e.g. "
                          f"fbnet); space {space.name!r} is not")
    return [tuple(c) for c in space.choices()]


class LayerwiseView:
    """A layer-wise one-shot space as it is (``choices()``, ``build_supernet()`` with ``forward_mixed``, e.g.
    fbnet); its latency table is the additive model's coefficients (``latency_table``)."""

    needs_additive_latency = True
    # skip_penalty off by default: fbnet's ``skip`` is the identity only where a layer keeps its channels (else a
    # 1x1 conv), FBNet's own search keeps it as a real choice, and no measurement of the penalty on fbnet exists
    # (docs/benchmarks.md, issue 21 turn 7)
    default_skip_penalty = 0.0

    def __init__(self, space: SearchSpace) -> None:
        layerwise_choices(space)
        self.space = space
        self.name = space.name
        self.encoding_size = space.encoding_size

    def choices(self) -> list[tuple[str, ...]]:
        return layerwise_choices(self.space)

    def build_supernet(self) -> Any:
        return self.space.build_supernet()  # type: ignore[attr-defined]

    def arch_id(self, arch: dict) -> str:
        return self.space.arch_id(arch)

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        return self.space.input_shape(batch_size)

    def latency_table(self, model: Any, latency: Any, arch_ids: Any) -> tuple[np.ndarray, float]:
        """(layers, choices) ms deltas and the base ms: ``model``'s coefficients (``latency`` and ``arch_ids``
        are not needed: the model is exactly a lookup table)."""
        return latency_table(self.space, model)


VIEWS: Registry[Any] = Registry("DNAS space")
VIEWS.add("fbnet", LayerwiseView, help="each of the 22 layers one of 9 blocks; the table is the additive "
                                       "model's (or the lookup table's) coefficients")
VIEWS.add("nb201", NB201EdgeView, help="each of the 6 edges one of 5 ops (shared by every cell); the table is a "
                                       "per-edge least-squares fit of the latency over the domain's cells")


def dnas_view(space: SearchSpace) -> Any:
    """The registered DNAS view of ``space`` (``VIEWS[space.name](space)``); ConfigError naming the spaces DNAS
    searches where there is none."""
    if space.name not in VIEWS:
        raise ConfigError(f"search algorithm 'dnas' has no view of space {space.name!r}; it searches "
                          f"{', '.join(VIEWS.names())} (orchestrator.search.dnas.VIEWS): use nsga2")
    return VIEWS.get(space.name)(space)


def _batches(n: int, idx: np.ndarray, batch: int, gen: np.random.Generator, cap: int | None) -> list[np.ndarray]:
    perm = idx[gen.permutation(len(idx))]
    out = [perm[i:i + batch] for i in range(0, len(perm) - batch + 1, batch)] or [perm]
    return out[:cap] if cap else out


def dnas_sweep(space: SearchSpace, data: Any, lut: np.ndarray, base: float, cfg: DnasConfig,
               seed: int = 0, cells: tuple[np.ndarray, np.ndarray] | None = None) -> list[DnasResult]:
    """Run the sweep on ``space``'s supernet (``build_supernet()`` with ``forward_mixed``; ``space`` is a
    layer-wise space or a view from ``dnas_view``) with ``data`` (an object with tensors ``x_train``,
    ``y_train``), ``lut`` (layers, choices) ms deltas and ``base`` ms; one result per lambda, in ``cfg.lambdas``
    order, each with the images it forwarded (compute: single-path weight steps and mixed architecture steps
    apart; a mixed forward runs every block of every layer).

    ``cells``: ``(choice indices (n, layers), latency ms (n,))`` of a finite domain's cells. Given, the latency
    term is the exact expectation of that latency under the logits' distribution restricted to those cells,
    ``sum_c prod_l p[l, c_l] t_c / sum_c prod_l p[l, c_l]``, scaled by the cells' range, instead of the
    table's (which is exact only where the latency is additive per layer)."""
    import torch
    import torch.nn.functional as F

    from orchestrator.supernet.train import resolve_device

    choices = layerwise_choices(space)
    n_layers, width = lut.shape
    if n_layers != len(choices):
        raise ConfigError(f"dnas: the latency table has {n_layers} layers, space {space.name!r} {len(choices)}")
    x_all, y_all = data.x_train, data.y_train
    if x_all.ndim == 4 and hasattr(space, "input_shape") and tuple(x_all.shape[1:]) != tuple(space.input_shape()[1:]):
        raise ConfigError(f"dnas: the data's images are {tuple(x_all.shape[1:])}, the supernet takes "
                          f"{tuple(space.input_shape()[1:])}; set search.dnas.data.resolution (or the supernet's "
                          f"resolution option) to match")
    mask_np = collapse_mask(space, choices, cfg.collapse_ops)
    mu = resolved_skip_penalty(space, cfg)
    if mu > 0 and not mask_np.any():
        raise ConfigError(f"dnas: skip_penalty > 0 but space {space.name!r} has no pass-through op "
                          f"(skip, skip_connect, none) to penalise; set search.dnas.skip_penalty: 0")
    if cfg.aux_skip and not getattr(space, "supports_aux_skip", False):
        raise ConfigError(f"dnas: aux_skip (DARTS-) needs a mixed forward that takes aux_skip; space "
                          f"{space.name!r}'s does not (it has nb201's); set search.dnas.aux_skip: false")
    dev = resolve_device(cfg.device)
    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    n = len(y_all)
    order = gen.permutation(n)
    n_arch = max(1, int(round(cfg.arch_fraction * n)))
    w_idx, a_idx = order[n_arch:], order[:n_arch]
    lut_t = torch.tensor(lut, dtype=torch.float32, device=dev)
    if cells is None:
        lo, hi = float(lut.min(axis=1).sum()) + base, float(lut.max(axis=1).sum()) + base
    else:
        cell_idx = torch.as_tensor(np.asarray(cells[0]), dtype=torch.long, device=dev)
        cell_ms = torch.as_tensor(np.asarray(cells[1], dtype=float), dtype=torch.float32, device=dev)
        if cell_idx.ndim != 2 or cell_idx.shape != (len(cell_ms), n_layers) or len(cell_ms) == 0:
            raise ConfigError(f"dnas: cells must be (n, {n_layers}) choice indices and n latencies, got "
                              f"{tuple(cell_idx.shape)} and {len(cell_ms)}")
        lo, hi = float(cell_ms.min()), float(cell_ms.max())
    span = max(hi - lo, 1e-9)
    mask_t = torch.tensor(mask_np, dtype=torch.float32, device=dev)
    layer_ix = torch.arange(n_layers, device=dev)[None, :]

    def expected_latency(logits: Any) -> Any:
        """E[latency] (ms) under softmax(logits): the table's sum, or the exact expectation over the cells."""
        if cells is None:
            return (torch.softmax(logits, dim=1) * lut_t).sum() + base
        w = torch.softmax(torch.log_softmax(logits, dim=1)[layer_ix, cell_idx].sum(dim=1), dim=0)
        return (w * cell_ms).sum()

    def batch(idx: np.ndarray) -> tuple[Any, Any]:
        t = torch.as_tensor(idx)
        return x_all[t].to(dev), y_all[t].to(dev)

    def weight_step(net: Any, opt: Any, idx: np.ndarray, alpha: Any) -> float:
        probs = torch.softmax(alpha.detach(), dim=1).cpu().numpy() if alpha is not None else None
        ops = [ch[int(gen.choice(width, p=probs[i] / probs[i].sum()))] if probs is not None
               else ch[int(gen.integers(width))] for i, ch in enumerate(choices)]
        x, y = batch(idx)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x, {"ops": ops}), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    net = space.build_supernet().to(dev).train()
    w_opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=1e-4)
    warmup_images = 0
    for epoch in range(cfg.warmup_epochs):
        for idx in _batches(n, w_idx, cfg.batch_size, gen, cfg.max_steps):
            weight_step(net, w_opt, idx, None)
            warmup_images += len(idx)
        log.info("dnas warm-up epoch %d done", epoch + 1)
    warm = copy.deepcopy(net.state_dict())

    results = []
    for lam in cfg.lambdas:
        t0 = time.perf_counter()
        net.load_state_dict(warm)
        w_opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=1e-4)
        alpha = torch.zeros(n_layers, width, device=dev, requires_grad=True)
        a_opt = torch.optim.Adam([alpha], lr=cfg.arch_lr, betas=(0.5, 0.999))
        w_images = a_images = 0
        per_epoch = max(1, len(w_idx) // cfg.batch_size)  # what _batches gives, without drawing from gen
        n_steps = cfg.epochs * (min(per_epoch, cfg.max_steps) if cfg.max_steps else per_epoch)  # aux_skip's decay
        step = 0
        for epoch in range(cfg.epochs):
            frac = epoch / max(1, cfg.epochs - 1)
            tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac
            w_batches = _batches(n, w_idx, cfg.batch_size, gen, cfg.max_steps)
            a_batches = _batches(n, a_idx, cfg.batch_size, gen, cfg.max_steps)
            for k, idx in enumerate(w_batches):
                weight_step(net, w_opt, idx, alpha)
                x, y = batch(a_batches[k % len(a_batches)])
                w_images += len(idx)
                a_images += len(y)
                a_opt.zero_grad(set_to_none=True)
                mix = F.gumbel_softmax(alpha, tau=tau, hard=False, dim=1)
                if cfg.aux_skip:
                    logits = net.forward_mixed(x, mix, aux_skip=1.0 - step / max(1, n_steps))
                else:
                    logits = net.forward_mixed(x, mix)
                step += 1
                ce = F.cross_entropy(logits, y)
                loss = ce + lam * (expected_latency(alpha) - lo) / span
                if mu > 0:
                    loss = loss + collapse_penalty(alpha, mask_t, mu)
                loss.backward()
                a_opt.step()
                net.zero_grad(set_to_none=True)  # the architecture step leaves the weights alone
        probs = torch.softmax(alpha.detach(), dim=1).cpu().numpy()
        ops = [ch[int(np.argmax(p))] for ch, p in zip(choices, probs, strict=True)]
        arch_id = space.arch_id({"ops": ops})
        exp_ms = float(expected_latency(alpha.detach()))
        sampled = [space.arch_id({"ops": [ch[int(gen.choice(width, p=p / p.sum()))]
                                          for ch, p in zip(choices, probs, strict=True)]})
                   for _ in range(cfg.samples)]
        results.append(DnasResult(float(lam), arch_id, probs, exp_ms, time.perf_counter() - t0, sampled,
                                  w_images, a_images, warmup_images))
        log.info("dnas lambda %g: %s (expected latency %.3f ms, %.1fs)", lam, arch_id, exp_ms, results[-1].seconds)
    return results
