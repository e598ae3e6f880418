"""Real local devices: measurement noise and latency monotonicity.

Measures the same NB201 cells (C=16, N=5, 32x32, batch 1) on torch eager with
1 and 2 threads and on ONNX Runtime with 1 thread (and CUDA graphs when a GPU
is present), then prints: median CV of repeated measurement per device, the
test-retest SRCC per device (a second pass in another order), and the SRCC
matrix between the devices (plus the six shipped devices on the same cells).

    python bench/local_devices.py [--n 200] [--retest 40] [--out out/local_devices.csv]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from orchestrator.latency.devices import get_device, reliability_check
from orchestrator.latency.measurement import MeasurementProtocol
from orchestrator.latency.monotonicity import srcc_matrix
from orchestrator.latency.table import LatencyTable, shipped_table, write_table
from search_spaces.nb201 import NB201Space


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--retest", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="out/local_devices.csv")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    space = NB201Space()
    ship = shipped_table(space, "nb201-hwnasbench")
    rng = np.random.default_rng(args.seed)
    ids = [ship.archs[i] for i in rng.choice(len(ship.archs), args.n, replace=False)]
    archs = [space.parse(a) for a in ids]
    proto = MeasurementProtocol(repeats=args.repeats)
    devices = [("torch-1t", "torch-cpu", 1), ("torch-2t", "torch-cpu", 2), ("onnxrt-1t", "onnxrt-cpu", 1)]
    if torch.cuda.is_available():
        devices.append(("cuda-graph", "cuda", 1))
    cols, names = [], []
    print(f"{'device':11s} {'median CV':>9s} {'p90 CV':>7s} {'retest SRCC':>11s} {'median ms':>9s} {'time':>6s}")
    for label, runtime, threads in devices:
        dev = get_device(runtime, space, threads=threads, protocol=proto, name=label)
        t0 = time.perf_counter()
        samples = dev.measure_many(archs)
        rep = reliability_check(dev, archs[: args.retest], np.random.default_rng(1))
        cv = np.array([s.cv for s in samples])
        med = np.array([s.median_ms for s in samples])
        print(f"{label:11s} {100 * np.median(cv):8.2f}% {100 * np.percentile(cv, 90):6.2f}% {rep.srcc:11.3f} "
              f"{np.median(med):9.3f} {time.perf_counter() - t0:5.0f}s", flush=True)
        cols.append(med)
        names.append(label)
    torch.set_num_threads(2)
    for d in ship.devices:
        cols.append(ship.lookup(d, ids))
        names.append(d)
    table = LatencyTable(ids, names, np.stack(cols, axis=1), "local")
    write_table(args.out, table)
    m = srcc_matrix(table)
    print(f"\nSRCC on {args.n} shipped NB201 cells (measured here + shipped tables):")
    print(m.format())
    print(f"table: {args.out}")


if __name__ == "__main__":
    main()
