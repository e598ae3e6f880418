"""Transfer to many targets in one call (the engine of `hwnas latency transfer`).

Sources: the six shipped devices. Targets: SIMULATED devices, each a random
positive mixture of two shipped devices' latencies times per-architecture
log-normal noise (clearly not real hardware; only the cost is measured here),
with k measured samples each. Prints wall time for N targets, predicting all
1,999 shipped cells for each.

    python bench/transfer_scale.py [--targets 10 100 300] [--method multi auto]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.latency.table import LatencyTable, shipped_table
from orchestrator.latency.transfer_job import transfer_many
from search_spaces.nb201 import NB201Space


def simulated_targets(table: LatencyTable, n: int, k_range: tuple[int, int], rng: np.random.Generator) -> LatencyTable:
    V = table.values.copy()
    full = V[:, [i for i, d in enumerate(table.devices) if not np.isnan(V[:, i]).any()]]
    out = np.full((len(table.archs), n), np.nan)
    for j in range(n):
        a, b = rng.choice(full.shape[1], 2, replace=False)
        w = rng.uniform(0.2, 1.0)
        y = (w * full[:, a] / full[:, a].mean() + (1 - w) * full[:, b] / full[:, b].mean())
        y *= rng.lognormal(0, 0.05, len(y)) * rng.uniform(0.5, 50)
        k = int(rng.integers(k_range[0], k_range[1] + 1))
        pick = rng.choice(len(y), k, replace=False)
        out[pick, j] = y[pick]
    return LatencyTable(list(table.archs), [f"sim{j}" for j in range(n)], out, "simulated")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, nargs="+", default=[10, 100, 300])
    ap.add_argument("--methods", nargs="+", default=["multi", "auto"])
    ap.add_argument("--k", type=int, nargs=2, default=[20, 20], metavar=("KMIN", "KMAX"))
    args = ap.parse_args()
    space = NB201Space()
    table = shipped_table(space, "nb201-hwnasbench")
    print(f"{'method':8s} {'targets':>7s} {'k':>7s} {'wall s':>7s} {'ms/target':>9s}")
    for m in args.methods:
        for n in args.targets:
            targets = simulated_targets(table, n, tuple(args.k), np.random.default_rng(n))
            t0 = time.perf_counter()
            res = transfer_many(space, table, targets, table.archs, method=m, seed=0)
            dt = time.perf_counter() - t0
            assert len(res) == n
            print(f"{m:8s} {n:7d} {args.k[0]:>3d}-{args.k[1]:<3d} {dt:7.2f} {1000 * dt / n:9.1f}", flush=True)


if __name__ == "__main__":
    main()
