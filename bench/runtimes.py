"""Real runtimes on this machine (issue 22): NB201 cells measured on each runtime twice (the second pass in
another order), with the median latency per cell, the test-retest SRCC per runtime, the SRCC matrix between
runtimes, and the seconds per architecture of preparing (export, quantization, compilation, output check)
and of the whole measurement (prepare + warm-up + timing).

    nice python bench/runtimes.py --n 10 --runtimes torch-cpu onnxrt-cpu onnxrt-int8 openvino-cpu

Runtimes of the extra [runtimes] are skipped (with a note) where it is not installed. In process, no Ray.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from scipy.stats import spearmanr

from orchestrator.errors import DeviceError
from orchestrator.latency.devices import get_device
from orchestrator.latency.measurement import MeasurementProtocol
from search_spaces.nb201 import NB201Space


def run_pass(dev, space, ids):
    ms, wall, prep = {}, {}, {}
    for a in ids:
        t0 = time.perf_counter()
        ms[a] = dev.measure(space.parse(a)).median_ms
        wall[a] = time.perf_counter() - t0
        prep[a] = getattr(dev, "prepare_seconds", {}).get(a, float("nan"))
    return ms, wall, prep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="NB201 cells (sampled with --seed)")
    ap.add_argument("--runtimes", nargs="+", default=["torch-cpu", "onnxrt-cpu", "onnxrt-int8", "openvino-cpu"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    space = NB201Space()
    rng = np.random.default_rng(args.seed)
    ids = list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(args.n)))
    proto = MeasurementProtocol(warmup=3, repeats=10, min_repeat_ms=10.0)
    first: dict[str, np.ndarray] = {}
    print(f"{len(ids)} NB201 cells (C=16, N=5, batch 1, {args.threads} thread), protocol {proto.model_dump()}")
    print("| runtime | median of medians (ms) | test-retest SRCC | prepare s/arch (median) | measure s/arch (median) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.runtimes:
        try:
            dev = get_device(name, space, threads=args.threads, protocol=proto)
        except DeviceError as e:
            print(f"| {name} | skipped: {e} | | | |", flush=True)
            continue
        a, wall, prep = run_pass(dev, space, ids)
        b, _, _ = run_pass(dev, space, ids[::-1])
        x, y = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
        first[name] = (x + y) / 2
        srcc = spearmanr(x, y).statistic
        print(f"| {name} | {np.median(x):.3f} | {srcc:.3f} | {np.nanmedian(list(prep.values())):.2f} | "
              f"{np.median(list(wall.values())):.2f} |", flush=True)
    names = list(first)
    print("\nSRCC between runtimes (mean of the two passes):")
    print("| | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for r in names:
        print(f"| {r} | " + " | ".join(f"{spearmanr(first[r], first[c]).statistic:.3f}" for c in names) + " |")


if __name__ == "__main__":
    main()
