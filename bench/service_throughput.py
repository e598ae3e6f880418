"""Latency service throughput: batched predictions per second on one Ray actor.

Compares, side by side in one run, the actor's throughput with an in-process
call of the same predictor, for several batch sizes.

    python bench/service_throughput.py [--predictor additive] [--seconds 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import ray

from orchestrator.latency.predictors import make_predictor
from orchestrator.latency.service import start_latency_service
from orchestrator.latency.table import shipped_table
from search_spaces.base import encode_ids
from search_spaces.nb201 import NB201Space


def rate(fn, n_per_call: int, seconds: float) -> float:
    fn()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return calls * n_per_call / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--predictor", default="additive")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000, 10000])
    args = ap.parse_args()
    space = NB201Space()
    t = shipped_table(space, "nb201-hwnasbench")
    archs, y = t.measured("raspi4")
    pred = make_predictor(args.predictor).fit(encode_ids(space, archs), y)
    rng = np.random.default_rng(0)
    pool = encode_ids(space, [space.arch_id(space.sample(rng)) for _ in range(max(args.batches))])
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=2, _temp_dir=tmp, include_dashboard=False, log_to_driver=False)
        svc = start_latency_service("raspi4", pred)
        print(f"{'batch':>6s} {'actor pred/s':>14s} {'in-process pred/s':>18s} {'ratio':>6s}")
        for b in args.batches:
            X = pool[:b]
            ref = ray.put(X)
            actor = rate(lambda ref=ref: ray.get(svc.predict.remote(ref)), b, args.seconds)
            local = rate(lambda X=X: pred.predict(X), b, args.seconds)
            print(f"{b:6d} {actor:14,.0f} {local:18,.0f} {actor / local:6.2f}")
        ray.shutdown()


if __name__ == "__main__":
    main()
