"""Evaluation throughput of the evaluator pool and its scaling with the number of actors.

Trains (or loads) a small MobileNetV3 supernet on digits, then evaluates the
same N sampled subnets (BatchNorm recalibration + validation accuracy) with
pools of 1, 2, ... actors (one CPU thread each) and prints subnets/minute and
the speed-up over one actor.

    python bench/eval_scaling.py [--actors 1 2] [--n 60] [--run DIR]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray

from orchestrator.supernet.data import DataConfig, load_dataset
from orchestrator.supernet.evaluate import EvalConfig
from orchestrator.supernet.pool import EvaluatorPool
from orchestrator.supernet.spec import one_shot_space, with_classes
from search_spaces.base import SpaceSpec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--width-mult", type=float, default=0.25)
    args = ap.parse_args()
    ray.init(num_cpus=max(args.actors), include_dashboard=False, configure_logging=False)
    data = load_dataset(DataConfig())
    space = one_shot_space(with_classes(SpaceSpec(name="mobilenetv3", options={
        "width_mult": args.width_mult, "resolution": 32, "feature_dim": 128}), data.num_classes))
    spec = space.spec()
    # Untrained weights evaluate at the same speed as trained ones; accuracy is not the point here.
    weights = ray.put(space.build_supernet().state_dict())
    data_ref = ray.put(data)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.n)]
    base = None
    print(f"{'actors':>6s} {'subnets':>7s} {'wall s':>7s} {'subnets/min':>11s} {'speed-up':>8s}")
    for n_actors in args.actors:
        pool = EvaluatorPool(spec, weights, data_ref, EvalConfig(calib_batches=args.calib_batches),
                             n_actors=n_actors, threads=1)
        pool.actor_pids()  # wait until every actor holds the weights
        pool.evaluate_all(archs[: 2 * n_actors])  # warm-up
        t0 = time.perf_counter()
        res = pool.evaluate_all(archs)
        dt = time.perf_counter() - t0
        assert len(res) == len(archs)
        rate = 60 * len(res) / dt
        base = base or rate
        print(f"{n_actors:6d} {len(res):7d} {dt:7.1f} {rate:11.0f} {rate / base:7.2f}x", flush=True)
        pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
