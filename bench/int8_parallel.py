"""int8 accuracy of front members: the sequential path (the driver, one after another) against Ray actors.

Evaluates the same N sampled NB201 cells (a small supernet on digits, untrained: the evaluation's speed does not
depend on the weights) in fp32 and int8 (export, static quantization calibrated on real images, ONNX Runtime)
with ``Int8Evaluator.evaluate_all`` in this process (PyTorch on 1 thread, as an actor) and with
``int8_pool.evaluate_parallel`` on 1, 2, ... actors (1 CPU each); prints wall seconds, the speed-up over the
sequential path and whether every value is equal.

    python bench/int8_parallel.py [--n 8] [--actors 1 2] [--channels 8]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import ray
import torch

from orchestrator.config import Int8AccuracySection
from orchestrator.supernet.data import DataConfig, load_dataset
from orchestrator.supernet.evaluate import EvalConfig
from orchestrator.supernet.int8 import Int8Evaluator
from orchestrator.supernet.int8_pool import evaluate_parallel
from orchestrator.supernet.spec import one_shot_space, with_classes
from search_spaces.base import SpaceSpec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--max-val", type=int, default=200)
    args = ap.parse_args()
    ray.init(num_cpus=max(args.actors), include_dashboard=False, configure_logging=False, log_to_driver=False)
    data = load_dataset(DataConfig())
    space = one_shot_space(with_classes(SpaceSpec(name="nb201", options={"channels": args.channels,
                                                                         "cells_per_stage": 1}), data.num_classes))
    spec = space.spec()
    torch.manual_seed(0)
    weights = space.build_supernet().state_dict()
    rng = np.random.default_rng(0)
    ids = list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(args.n)))
    cfg = EvalConfig(calib_batches=2, max_val=args.max_val)
    opts = Int8AccuracySection(enabled=True, calibration_images=64, threads=1)
    print(f"{len(ids)} NB201 cells ({args.channels} channels, 1 cell per stage), {args.max_val} validation images, "
          f"64 calibration images; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seq = Int8Evaluator(spec, weights, data, cfg, opts).evaluate_all(ids)
    t_seq = time.perf_counter() - t0
    print(f"sequential (driver, 1 thread): {t_seq:6.1f} s  ({t_seq / len(ids):.2f} s per cell)")
    strip = {"seconds"}
    for n in args.actors:
        t0 = time.perf_counter()
        par = evaluate_parallel(spec, weights, data, cfg, opts.model_copy(update={"actors": n}), ids)
        t = time.perf_counter() - t0
        same = all({k: v for k, v in par[a].as_dict().items() if k not in strip}
                   == {k: v for k, v in seq[a].as_dict().items() if k not in strip} for a in ids)
        print(f"{n} actor(s): {t:6.1f} s  speed-up {t_seq / t:.2f}x  values equal to sequential: {same}")


if __name__ == "__main__":
    main()
