"""One-shot supernet training (pure PyTorch; the Ray wrappers live in actor.py).

Each step follows the sandwich rule (BigNAS / OFA): the largest subnet learns
from the labels, then the smallest and ``n_random`` random subnets learn from
the largest subnet's soft predictions (in-place distillation); their gradients
accumulate into one optimiser step. ``sampling: uniform`` is single-path uniform sampling instead (SPOS, Guo et
al., ECCV 2020): ``n_random`` random subnets (at least one), each from the labels. SGD (Nesterov) or AdamW, a per-step
schedule of linear warm-up then cosine decay. In a space that searches the input resolution
(``elastic_resolution``) each step draws one resolution from the space's and runs every subnet of the
sandwich at it, its batch scaled to it (OFA's elastic resolution: one image size per batch). On CUDA mixed
precision (bf16
where supported, else fp16 with a gradient scaler) and channels_last.

Training is deterministic given the seed: the batch order depends only on
(seed, epoch), and the subnet sampler, torch, numpy and Python RNG states are
checkpointed, so a run resumed from its last checkpoint matches an
uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.errors import ConfigError
from orchestrator.supernet.checkpoint import (
    clean_stale_temp_files,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from orchestrator.supernet.data import Dataset, at_resolution, steps_per_epoch, train_batches
from orchestrator.supernet.settings import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    return -(target_probs * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


class SupernetTrainer:
    """Trains ``space.build_supernet()`` on ``data``; checkpoints to ``checkpoint_dir`` after every epoch."""

    def __init__(self, space: Any, data: Dataset, cfg: TrainConfig,
                 checkpoint_dir: str | Path | None = None,
                 grad_sync: Callable[[nn.Module], None] | None = None) -> None:
        if getattr(space, "num_classes", data.num_classes) != data.num_classes:
            raise ConfigError(f"space has num_classes={space.num_classes} but dataset {data.name} has "
                              f"{data.num_classes} classes; set space num_classes to {data.num_classes}")
        self.space = space
        self.space_spec = space.spec().model_dump()  # the checkpoint's identity: the space as built
        self.data = data
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        cuda = self.device.type == "cuda"
        self.amp = cfg.amp == "on" or (cfg.amp == "auto" and cuda)
        if self.amp and not cuda:
            raise ConfigError("train.amp is 'on' but the device is a CPU; mixed precision here is CUDA-only")
        self.amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        torch.manual_seed(cfg.seed)
        self.net: nn.Module = space.build_supernet().to(self.device, memory_format=self.memory_format)
        decay = [p for p in self.net.parameters() if p.ndim > 1]
        no_decay = [p for p in self.net.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                              nesterov=cfg.momentum > 0)
        else:
            self.opt = torch.optim.AdamW(groups, lr=cfg.lr)
        self.steps_per_epoch = steps_per_epoch(data, cfg.batch_size)
        total = cfg.epochs * self.steps_per_epoch
        warm = int(cfg.warmup_epochs * self.steps_per_epoch)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, total, warm))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.rng = np.random.default_rng(cfg.seed)
        self.grad_sync = grad_sync
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            clean_stale_temp_files(self.checkpoint_dir)

    # -- checkpoints ------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    def _identity(self) -> dict[str, Any]:
        return {"space": self.space_spec, "seed": self.cfg.seed, "batch_size": self.cfg.batch_size,
                "dataset": self.data.name, "epochs_planned": self.cfg.epochs}

    def save(self) -> Path | None:
        if self.checkpoint_path is None:
            return None
        payload = {
            **self._identity(),
            "model": self.net.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "rng": rng_state(self.rng),
        }
        return save_checkpoint(self.checkpoint_path, payload)

    def resume(self) -> bool:
        """Load the last checkpoint if there is one; returns whether it did."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        ck = load_checkpoint(path, expect=self._identity())
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch = int(ck["epoch"])
        self.history = list(ck["history"])
        set_rng_state(ck["rng"], self.rng)
        log.info("resumed from %s at epoch %d/%d", path, self.epoch, self.cfg.epochs)
        return True

    # -- training ---------------------------------------------------------------
    def sandwich(self) -> list[dict[str, Any]]:
        """The subnets of one step: largest, smallest, then ``n_random`` random ones (``sampling: uniform``:
        ``max(1, n_random)`` random ones); a supernet split into sub-supernets (few-shot: ``restrict``) keeps one
        step's subnets inside one of them; with elastic resolution all at one resolution drawn for the step (from
        the trainer's generator, after the subnets)."""
        if self.cfg.sampling == "uniform":
            archs = [self.space.sample(self.rng) for _ in range(max(1, self.cfg.n_random))]
        else:
            archs = [self.space.largest(), self.space.smallest()] + [self.space.sample(self.rng)
                                                                     for _ in range(self.cfg.n_random)]
        restrict = getattr(self.net, "restrict", None)
        if restrict is not None:
            archs = restrict(archs, self.rng)
        if getattr(self.space, "elastic_resolution", False):
            r = int(self.rng.choice(self.space.resolutions))
            archs = [{**a, "r": r} for a in archs]
        return archs

    def step_resolution(self, archs: list[dict[str, Any]]) -> int | None:
        """The input resolution of this step's subnets (None: the space does not search it)."""
        return int(archs[0]["r"]) if getattr(self.space, "elastic_resolution", False) else None

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One step (sandwich or uniform); returns the first subnet's loss (the sandwich's largest)."""
        self.net.train()
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
        self.opt.zero_grad(set_to_none=True)
        archs = self.sandwich()
        x = at_resolution(x, self.step_resolution(archs)).contiguous(memory_format=self.memory_format)
        with self._autocast():
            out = self.net(x, archs[0])
            loss = F.cross_entropy(out.float(), y, label_smoothing=self.cfg.label_smoothing)
        self.scaler.scale(loss).backward()
        soft = out.detach().float().softmax(1)
        for arch in archs[1:]:
            with self._autocast():
                o = self.net(x, arch)
                sub = (soft_cross_entropy(o, soft) if self.cfg.distill and self.cfg.sampling == "sandwich"
                       else F.cross_entropy(o.float(), y, label_smoothing=self.cfg.label_smoothing))
            self.scaler.scale(sub).backward()
        if self.grad_sync is not None:
            self.grad_sync(self.net)
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return float(loss.detach())

    def train_epoch(self, progress: Callable[[dict[str, Any]], None] | None = None,
                    shard: tuple[int, int] = (0, 1)) -> dict[str, float]:
        """Train one epoch. ``shard=(rank, world)`` takes every world-th batch (data parallel)."""
        t0 = time.perf_counter()
        losses, images = [], 0
        rank, world = shard
        for i, (x, y) in enumerate(train_batches(self.data, self.cfg.batch_size, self.cfg.seed, self.epoch,
                                                 augment=self.cfg.augment)):
            if i % world != rank:
                continue
            losses.append(self.step(x, y))
            images += len(y)
            if progress is not None:
                dt = time.perf_counter() - t0
                progress({"epoch": self.epoch + 1, "epochs": self.cfg.epochs, "step": i + 1,
                          "steps": self.steps_per_epoch, "loss": losses[-1], "images_per_s": images / dt})
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        self.epoch += 1
        rec = {"epoch": self.epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
               "seconds": dt, "images_per_s": images / dt, "lr": float(self.sched.get_last_lr()[0])}
        self.history.append(rec)
        log.info("epoch %d/%d: loss %.4f, %.0f images/s, %.1fs", self.epoch, self.cfg.epochs, rec["loss"],
                 rec["images_per_s"], dt)
        return rec

    def fit(self, progress: Callable[[dict[str, Any]], None] | None = None, stop_after: int | None = None,
            shard: tuple[int, int] = (0, 1), save: bool = True) -> dict[str, Any]:
        """Train to ``cfg.epochs`` (resuming from the last checkpoint); ``stop_after`` ends early after
        that many epochs in total, as an interruption would."""
        self.resume()
        end = self.cfg.epochs if stop_after is None else min(stop_after, self.cfg.epochs)
        while self.epoch < end:
            self.train_epoch(progress, shard)
            if save:
                self.save()
        return {"epoch": self.epoch, "epochs": self.cfg.epochs, "history": list(self.history),
                "checkpoint": str(self.checkpoint_path) if self.checkpoint_path else None,
                "device": str(self.device), "amp": self.amp, "channels_last": self.channels_last}
