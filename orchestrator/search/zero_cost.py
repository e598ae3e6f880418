"""Zero-cost proxies: a score of an untrained network that ranks architectures like their trained accuracy.

Each proxy takes the network as built (randomly initialised, seeded: the same initialisation for every cell)
and one batch of training images (x (B, C, H, W) normalised, y (B,)); no training. Larger is better.

- ``synflow``: Tanaka et al. (NeurIPS 2020) as scored by Abdelfattah et al. (ICLR 2021): BatchNorm removed,
  every weight replaced by its absolute value, double precision, an all-ones input of one image;
  R = sum(output); score = sum over conv/linear weights of |w * dR/dw|. Data-independent.
- ``snip``: Lee et al. (ICLR 2019): sum over conv/linear weights of |w * dL/dw|, L the cross-entropy on the
  batch (train mode).
- ``grad_norm``: Abdelfattah et al.: sum over conv/linear layers of ||dL/dw||_2.
- ``naswot``: Mellor et al. (ICML 2021): binary codes c_i of every ReLU's input (> 0) per image;
  K = C C^T + (1 - C)(1 - C)^T summed over ReLUs; score = log |det K|.
- ``params``: the number of parameters.

Published SRCC with NAS-Bench-201's 200-epoch CIFAR-10 test accuracy over all 15,625 cells: synflow 0.78,
NASWOT 0.80, params 0.75 (see docs/benchmarks.md for what this implementation reproduces).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.registry import Registry

log = logging.getLogger(__name__)

PROXIES: Registry = Registry("zero-cost proxy")
ENSEMBLE = ("synflow", "naswot", "params")
# how each ensemble combines the standardised scores of ENSEMBLE, per cell: ``ensemble`` (the default) takes the
# lowest (a cell ranks high only if every proxy rates it high; SRCC 0.868 vs 0.852 for the mean over 1,927 random
# cells held out from that choice, docs/benchmarks.md, issue 20 turn 6); ``ensemble_mean`` the mean (the
# default before)
ENSEMBLES: dict[str, Callable[..., np.ndarray]] = {"ensemble": np.min, "ensemble_mean": np.mean}


def log_scale(raw: np.ndarray) -> np.ndarray:
    """A proxy's transform (the default): log, for scores spanning orders of magnitude (0 gives -inf)."""
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(raw, 0.0))


def as_is(raw: np.ndarray) -> np.ndarray:
    """A proxy's transform for a score already on a linear scale (a log-determinant)."""
    return raw


def proxy(name: str, help: str, transform: Callable[[np.ndarray], np.ndarray] = log_scale
          ) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register a zero-cost proxy ``fn(net, x, y) -> float`` with what it declares: ``transform``, which takes
    its raw scores to a rank-preserving value on a linear scale (:func:`transform`)."""

    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        fn.transform = transform  # type: ignore[attr-defined]
        return PROXIES.register(name, help=help)(fn)

    return deco


def _weighted(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _no_bn(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every BatchNorm replaced by the identity."""
    net = copy.deepcopy(net)
    for name, child in list(net.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            setattr(net, name, _no_bn(child))
    return net


@proxy("synflow", help="sum |w * dR/dw|, R the output on an all-ones input, |w|, no BatchNorm")
def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = _no_bn(net).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    out = net(torch.ones((1, *x.shape[1:]), dtype=torch.float64))
    out.sum().backward()
    with torch.no_grad():
        return float(sum((m.weight * m.weight.grad).abs().sum() for m in _weighted(net) if m.weight.grad is not None))


def _loss_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    net = copy.deepcopy(net).train()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    return net


@proxy("snip", help="sum |w * dL/dw|, L the cross-entropy on the batch")
def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = _loss_grads(net, x, y)
    with torch.no_grad():
        return float(sum((m.weight * m.weight.grad).abs().sum() for m in _weighted(net) if m.weight.grad is not None))


@proxy("grad_norm", help="sum over layers of ||dL/dw||_2, L the cross-entropy on the batch")
def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = _loss_grads(net, x, y)
    return float(sum(m.weight.grad.norm() for m in _weighted(net) if m.weight.grad is not None))


@proxy("naswot", help="log |det K| of the ReLU activation-pattern kernel over the batch", transform=as_is)
def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    n = len(x)
    k = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], _out: Any) -> None:
        # C C^T + (1 - C)(1 - C)^T = (D + S S^T) / 2 with S = 2 C - 1 (+-1 codes), D codes per image: one matmul.
        # Exact in float32: every entry is an integer of magnitude <= D < 2^24.
        s = torch.where(inp[0].detach().reshape(n, -1) > 0, 1.0, -1.0)
        if s.shape[1] >= 1 << 24:
            raise ValueError(f"naswot: a ReLU with {s.shape[1]} inputs per image; float32 codes are exact below 2^24")
        k.add_((s @ s.T).double().add_(s.shape[1]).mul_(0.5))

    # train mode as in Mellor et al.; the caller's network is left as it was (modes and BatchNorm buffers restored)
    modes = {m: m.training for m in net.modules()}
    buffers = [(b, b.clone()) for b in net.buffers()]
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        net.train()
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, mode in modes.items():
            m.training = mode
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) != 0 else -math.inf


@proxy("params", help="number of parameters")
def params(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(sum(p.numel() for p in net.parameters()))


def proxy_names() -> list[str]:
    return [*PROXIES.names(), *ENSEMBLES]


def score_network(net: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str]) -> dict[str, float]:
    """Raw scores of ``net`` (as initialised) for each of ``names`` (registered proxies)."""
    return {n: PROXIES.get(n)(net, x, y) for n in names}


def score_cells(space: Any, arch_ids: Sequence[str], x: torch.Tensor, y: torch.Tensor, names: Sequence[str],
                seed: int = 0, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Raw scores (one array per proxy, in the order of ``arch_ids``) of each architecture's network built with
    the seeded initialisation ``torch.manual_seed(seed)`` (the same for every cell), on ``x`` scaled to the
    architecture's own resolution where the space searches it."""
    from orchestrator.supernet.data import at_resolution
    from search_spaces.base import searched_resolution
    from search_spaces.costs import count_params

    out = {n: np.empty(len(arch_ids)) for n in names}
    built = [n for n in names if n != "params"]  # params: the space's closed form, nothing built
    for i, a in enumerate(arch_ids):
        arch = space.parse(a)
        if "params" in names:
            out["params"][i] = float(count_params(space, arch))
        if built:
            torch.manual_seed(seed)
            net = space.build(arch)
            for n, v in score_network(net, at_resolution(x, searched_resolution(space, arch)), y, built).items():
                out[n][i] = v
        if progress is not None:
            progress(i + 1)
    return out


def transform(name: str, raw: np.ndarray) -> np.ndarray:
    """The score as a rank-preserving value on a linear scale, as the proxy declares (``proxy(transform=)``):
    log for the proxies spanning orders of magnitude (synflow, snip, grad_norm, params; :func:`log_scale`),
    naswot as it is (already a log-determinant; :func:`as_is`)."""
    return getattr(PROXIES.get(name), "transform", log_scale)(np.asarray(raw, dtype=float))


class ZeroCostScorer:
    """Values of one proxy (or ``ensemble``) for architectures of ``space``, on a fixed batch (x, y).

    Each proxy's transformed score is standardised with its mean and standard deviation over ``reference``
    cells sampled from the space (seeded), so values of different proxies share a unit and a cell's value
    never depends on which other cells are scored with it; a network a proxy cannot score (synflow of a cell
    whose output ignores its input: log 0) gets ``FLOOR`` (that many standard deviations below the mean).
    ``ensemble``: the lowest of the standardised synflow, NASWOT and params (:data:`ENSEMBLE`);
    ``ensemble_mean``: their mean (:data:`ENSEMBLES`). ``scores``
    gives T-scores (50 + 10 z, at least 1).
    """

    FLOOR = -4.9

    def __init__(self, space: Any, proxy: str, x: torch.Tensor, y: torch.Tensor, seed: int = 0,
                 reference: int = 32) -> None:
        if proxy not in ENSEMBLES:
            PROXIES.get(proxy)  # an unknown name lists the valid ones
        self.space, self.proxy, self.x, self.y, self.seed = space, proxy, x, y, seed
        self.names = list(ENSEMBLE) if proxy in ENSEMBLES else [proxy]
        self.n_reference = min(reference, int(space.size))
        self._ref: dict[str, tuple[float, float]] | None = None

    def _reference(self) -> dict[str, tuple[float, float]]:
        if self._ref is None:
            from search_spaces.base import distinct_sample

            ids = distinct_sample(self.space, self.n_reference, np.random.default_rng([self.seed, 17]))
            raw = self.raw(ids)  # a subclass's cache of raw scores serves the reference cells too
            self._ref = {}
            for n in self.names:
                v = transform(n, raw[n])
                v = v[np.isfinite(v)]
                self._ref[n] = (float(v.mean()), float(v.std()) or 1.0) if len(v) else (0.0, 1.0)
        return self._ref

    def zscores(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each proxy's standardised transformed score (non-finite -> FLOOR)."""
        ref = self._reference()
        out = {}
        for n in self.names:
            z = (transform(n, raw[n]) - ref[n][0]) / ref[n][1]
            out[n] = np.where(np.isfinite(z), z, self.FLOOR)
        return out

    def combine(self, raw: Mapping[str, np.ndarray]) -> np.ndarray:
        """The source's value from raw scores: a T-score, 50 + 10 z of the standardised proxy (of the lowest z
        for ``ensemble``, the mean z for ``ensemble_mean``), at least 1: positive like an accuracy, so the
        accuracy models (fit on log values or positive ones) take it; only its order means anything."""
        z = ENSEMBLES.get(self.proxy, np.mean)(np.stack(list(self.zscores(raw).values())), axis=0)
        return np.maximum(50.0 + 10.0 * z, 1.0)

    def raw(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        return score_cells(self.space, arch_ids, self.x, self.y, self.names, self.seed, progress)

    def scores(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One value per architecture (larger = better), in the order of ``arch_ids``."""
        return self.combine(self.raw(arch_ids, progress))


def proxy_batch(data: Any, batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of training images (seeded, unaugmented), x (B, C, H, W) and y (B,), for the proxies."""
    from orchestrator.supernet.data import eval_batches

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.y_train), generator=g)[: min(batch_size, len(data.y_train))]
    return next(eval_batches(data.x_train, data.y_train, len(idx), data.workers, order=idx))


def make_scorer(space: Any, proxy: str, data_cfg: Any, batch_size: int = 64, reference: int = 32,
                seed: int = 0) -> ZeroCostScorer:
    """The scorer of ``proxy`` on a batch of ``data_cfg``'s training images at the space's resolution (the
    pipeline's ``accuracy.source: zero_cost`` and ``hwnas accuracy estimate`` both build it here)."""
    from orchestrator.errors import ConfigError
    from orchestrator.supernet.data import load_dataset

    if proxy not in ENSEMBLES:
        PROXIES.get(proxy)
    resolution = int(space.input_shape(1)[-1]) if hasattr(space, "input_shape") else data_cfg.resolution
    data = load_dataset(data_cfg.model_copy(update={"resolution": resolution}))
    classes = getattr(space, "num_classes", data.num_classes)
    if data.num_classes > classes:
        raise ConfigError(f"zero-cost data {data_cfg.name!r} has {data.num_classes} classes but the space's network "
                          f"has {classes} outputs; set the space option num_classes: {data.num_classes} (hwnas "
                          f"accuracy estimate: --space-option num_classes={data.num_classes})")
    x, y = proxy_batch(data, batch_size, seed)
    return ZeroCostScorer(space, proxy, x, y, seed, reference)
