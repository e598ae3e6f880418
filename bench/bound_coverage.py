"""Does the sweep's SRCC lower bound hold its stated confidence? (issue 17)

For a device pair with population SRCC rho, a one-sided lower bound at confidence c must exceed rho in at most
1 - c of random k-samples. Prints, per k, that frequency for the percentile bootstrap alone (the bound before
issue 17), the exact small-sample bound alone, and the bound the sweep uses (the smaller of the two), over:

- Gaussian-copula pairs at several rho (where the exact bound is exact);
- the 15 device pairs of the shipped HW-NAS-Bench table (rho over all their common cells), random k-samples;

and the share of random k-samples of fpga / edgegpu (SRCC 0.60) whose bound clears 0.9 (a wrong reuse).

    python bench/bound_coverage.py [--draws 200] [--ks 3 5 10 20] [--confidence 0.9]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from orchestrator.latency.metrics import srcc
from orchestrator.latency.table import shipped_table
from orchestrator.sweep.decision import bootstrap_srcc_lower_bound, exact_srcc_lower_bound


def bounds(x: np.ndarray, y: np.ndarray, conf: float, rng: np.random.Generator) -> tuple[float, float, float]:
    r = srcc(x, y)
    if np.isnan(r):  # a constant side (ties in a small sample): no bound, the sweep adapts
        return float("nan"), float("nan"), float("nan")
    boot = bootstrap_srcc_lower_bound(x, y, conf, rng)
    exact = exact_srcc_lower_bound(r, len(x), conf)
    return boot, exact, float(np.nanmin([boot, exact]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10, 20])
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    conf = args.confidence
    print(f"share of samples whose bound exceeds the population SRCC (should be <= {1 - conf:.2f}); "
          f"{args.draws} draws per cell")
    print("Gaussian copula:")
    print(f"{'k':>4} {'rho':>5} {'bootstrap':>10} {'exact':>7} {'sweep':>7}")
    for k in args.ks:
        for rho in (0.3, 0.6, 0.85, 0.95):
            r = 2 * np.sin(np.pi * rho / 6)
            over = np.zeros(3)
            for _ in range(args.draws):
                z = rng.standard_normal(k)
                w = r * z + np.sqrt(1 - r * r) * rng.standard_normal(k)
                over += np.array(bounds(z, w, conf, rng)) > rho
            print(f"{k:>4} {rho:>5.2f} " + " ".join(f"{v:>{w}.3f}" for v, w in zip(over / args.draws, (10, 7, 7),
                                                                                         strict=True)))
    table = shipped_table()
    print("shipped device pairs (mean and worst over the 15 pairs):")
    print(f"{'k':>4} {'bootstrap':>16} {'exact':>16} {'sweep':>16}")
    for k in args.ks:
        per_pair = []
        for a, b in itertools.combinations(table.devices, 2):
            va, vb = table.column(a), table.column(b)
            ok = ~np.isnan(va) & ~np.isnan(vb)
            va, vb = va[ok], vb[ok]
            rho = srcc(va, vb)
            over, n = np.zeros(3), 0
            for _ in range(args.draws):
                i = rng.choice(len(va), k, replace=False)
                bs = bounds(va[i], vb[i], conf, rng)
                if np.isnan(bs[2]):
                    continue
                over += np.array(bs) > rho
                n += 1
            per_pair.append(over / max(n, 1))
        P = np.array(per_pair)
        print(f"{k:>4} " + " ".join(f"{m:>8.3f} / {w:.3f}" for m, w in zip(P.mean(0), P.max(0), strict=True)))
    a, b = table.column("fpga"), table.column("edgegpu")
    print(f"fpga / edgegpu (SRCC {srcc(a, b):.2f}): share of random k-samples whose bound clears 0.9 "
          f"(bootstrap alone -> sweep):")
    for k in args.ks:
        clear = np.zeros(3)
        for _ in range(args.draws):
            i = rng.choice(len(a), k, replace=False)
            clear += np.nan_to_num(np.array(bounds(a[i], b[i], conf, rng)), nan=-1.0) >= 0.9
        print(f"  k={k}: {clear[0] / args.draws:.3f} -> {clear[2] / args.draws:.3f}")
    print(f"done in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
