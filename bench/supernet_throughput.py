"""Training throughput: one supernet sandwich step vs the same passes on standalone subnets.

For each step both sides run forward + backward of the same subnets (largest,
smallest, ``n_random`` random) on the same synthetic batch: the supernet with
elastic slicing, and standalone networks of exactly those architectures
(``space.build``). The ratio supernet/standalone time is the cost of weight
sharing (goal <= 1.15x). The two are interleaved step by step so that load on a
shared machine hits both alike.

    python bench/supernet_throughput.py [--device cpu|cuda] [--batch-size 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from orchestrator.supernet.data import DataConfig, load_dataset
from orchestrator.supernet.spec import one_shot_space
from search_spaces.base import SpaceSpec


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--width-mult", type=float, default=0.5)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--n-random", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cl = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    space = one_shot_space(SpaceSpec(name="mobilenetv3", options={
        "width_mult": args.width_mult, "resolution": args.resolution, "num_classes": 10}))
    data = load_dataset(DataConfig(name="synthetic", resolution=args.resolution,
                                   synthetic_size=max(256, 2 * args.batch_size)))
    x = data.x_train[: args.batch_size].to(device).contiguous(memory_format=cl)
    y = data.y_train[: args.batch_size].to(device)
    sup = space.build_supernet().to(device, memory_format=cl).train()
    rng = np.random.default_rng(0)
    steps = [[space.largest(), space.smallest()] + [space.sample(rng) for _ in range(args.n_random)]
             for _ in range(args.steps + args.warmup)]
    # standalone networks are built once (not timed), as a standalone training run would
    standalone = [[space.build(a).to(device, memory_format=cl).train() for a in archs] for archs in steps]

    def run(models_and_archs: list[tuple[torch.nn.Module, dict | None]]) -> float:
        sync(device)
        t0 = time.perf_counter()
        for m, arch in models_and_archs:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                out = m(x, arch) if arch is not None else m(x)
                loss = F.cross_entropy(out.float(), y)
            loss.backward()
        sync(device)
        return time.perf_counter() - t0

    t_sup, t_std = [], []
    for i, archs in enumerate(steps):
        a = run([(sup, arch) for arch in archs])
        b = run([(m, None) for m in standalone[i]])
        sup.zero_grad(set_to_none=True)
        for m in standalone[i]:
            m.zero_grad(set_to_none=True)
        if i >= args.warmup:
            t_sup.append(a)
            t_std.append(b)
    passes = 2 + args.n_random
    ms, mt = statistics.median(t_sup), statistics.median(t_std)
    print(f"device {device}, batch {args.batch_size}, width {args.width_mult}, resolution {args.resolution}, "
          f"{passes} subnets/step, amp {args.amp}, {args.steps} steps")
    print(f"supernet sandwich step : {1000 * ms:8.1f} ms  {passes * args.batch_size / ms:8.0f} images/s (passes)")
    print(f"standalone subnets     : {1000 * mt:8.1f} ms  {passes * args.batch_size / mt:8.0f} images/s")
    print(f"overhead supernet/standalone: {ms / mt:.3f}x (median of per-step ratios "
          f"{statistics.median([a / b for a, b in zip(t_sup, t_std, strict=True)]):.3f}x)")
    if device.type == "cuda":
        print(f"max memory allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
