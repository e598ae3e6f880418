"""Ranking quality of one-shot accuracy on digits.

Trains a MobileNetV3 supernet (sandwich rule, in-place distillation), samples M
subnets, and compares their inherited accuracy (BN recalibrated) with the
accuracy of the same architectures trained standalone from scratch for the same
number of epochs on the same batches. Prints both accuracies per subnet and
the Kendall tau / Spearman rho between them.

    python bench/oneshot_ranking.py [--subnets 12] [--epochs 5]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr

from orchestrator.supernet.data import DataConfig, load_dataset, steps_per_epoch, train_batches
from orchestrator.supernet.evaluate import EvalConfig, accuracy, evaluate_subnet
from orchestrator.supernet.spec import one_shot_space, with_classes
from orchestrator.supernet.train import SupernetTrainer, TrainConfig, lr_factor
from search_spaces.base import SpaceSpec


def train_standalone(net: torch.nn.Module, data, cfg: TrainConfig) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch(data, cfg.batch_size)
    warm = int(cfg.warmup_epochs * steps_per_epoch(data, cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm))
    net.train()
    for epoch in range(cfg.epochs):
        for x, y in train_batches(data, cfg.batch_size, cfg.seed, epoch, augment=cfg.augment):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y, label_smoothing=cfg.label_smoothing).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip or math.inf)
            opt.step()
            sched.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subnets", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig())
    space = one_shot_space(with_classes(SpaceSpec(name="mobilenetv3", options={
        "width_mult": 0.25, "resolution": 32, "feature_dim": 128}), data.num_classes))
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.1, seed=args.seed)
    t0 = time.perf_counter()
    trainer = SupernetTrainer(space, data, cfg)
    trainer.fit(save=False)
    t_sup = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed + 1)
    archs = [space.sample(rng) for _ in range(args.subnets)]
    ecfg = EvalConfig()
    one_shot, standalone = [], []
    t_std = 0.0
    print(f"{'subnet':>6s} {'one-shot':>8s} {'standalone':>10s}  arch")
    for i, arch in enumerate(archs):
        one_shot.append(evaluate_subnet(space, trainer.net, arch, data, ecfg).accuracy)
        torch.manual_seed(args.seed)
        net = space.build(arch)
        t1 = time.perf_counter()
        train_standalone(net, data, cfg)
        t_std += time.perf_counter() - t1
        standalone.append(accuracy(net, data.x_val, data.y_val, 256, torch.device("cpu")))
        print(f"{i:6d} {one_shot[-1]:8.3f} {standalone[-1]:10.3f}  {space.arch_id(arch)}", flush=True)
    tau = kendalltau(one_shot, standalone).statistic
    rho = spearmanr(one_shot, standalone).statistic
    print(f"supernet: {args.epochs} epochs in {t_sup:.0f}s; standalone: {args.subnets} x {args.epochs} epochs in "
          f"{t_std:.0f}s")
    print(f"Kendall tau {tau:.3f}, Spearman rho {rho:.3f} over {args.subnets} subnets; accuracy range one-shot "
          f"{min(one_shot):.3f}-{max(one_shot):.3f}, standalone {min(standalone):.3f}-{max(standalone):.3f}")


if __name__ == "__main__":
    main()
