"""Transfer quality on the shipped NB201 latencies (HW-NAS-Bench, six devices).

Leave-one-device-out: each device in turn is the target, the other five are the
sources (methods reuse, adaproxy, multi, auto), and single-proxy: each other
device alone as the source (reuse, adaproxy). For each k, several random draws
of k measured target architectures; SRCC is computed on all the target's other
measured architectures. Prints mean and worst (over targets) SRCC and the share
of (target, draw) pairs with SRCC >= 0.9.

    python bench/transfer_quality.py [--draws 10] [--ks 5 10 20 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.latency.metrics import srcc
from orchestrator.latency.table import shipped_table
from orchestrator.latency.transfer import SourceSet, adapt
from search_spaces.base import encode_ids
from search_spaces.nb201 import NB201Space


def run(ks: list[int], draws: int, methods: list[str], single: bool, seed: int = 0) -> dict:
    space = NB201Space()
    table = shipped_table(space)
    X = encode_ids(space, table.archs)
    results: dict = {}
    for ti, target in enumerate(table.devices):
        y = table.column(target)
        measured = np.where(~np.isnan(y))[0]
        others = [d for d in table.devices if d != target]
        settings = [("all", others, methods)]
        if single:
            settings += [(f"proxy={o}", [o], [m for m in methods if m in ("reuse", "adaproxy")]) for o in others]
        for label, src_names, meths in settings:
            src = SourceSet.from_table(table.select(src_names), space)
            for k in ks:
                rng = np.random.default_rng([seed, ti, k])
                for _ in range(draws):
                    pick = rng.choice(measured, size=k, replace=False)
                    rest = np.setdiff1d(measured, pick)
                    for m in meths:
                        pred = adapt(m, src, X[pick], y[pick], np.random.default_rng([seed, ti, k, 1]))
                        r = srcc(pred.predict(X[rest]), y[rest])
                        setting = "all" if label == "all" else "single"
                        results.setdefault((setting, m, k), {}).setdefault(target, []).append(r)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--methods", nargs="+", default=["reuse", "adaproxy", "multi", "auto"])
    ap.add_argument("--no-single", action="store_true", help="skip the single-proxy setting")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.ks, args.draws, args.methods, not args.no_single, args.seed)
    print(f"{'sources':8s} {'method':9s} {'k':>3s} {'mean SRCC':>9s} {'worst target':>13s} {'share>=0.9':>10s}")
    for (setting, m, k), per_target in sorted(res.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        means = {t: float(np.mean(v)) for t, v in per_target.items()}
        allv = np.concatenate([np.asarray(v) for v in per_target.values()])
        worst = min(means, key=means.get)
        print(f"{setting:8s} {m:9s} {k:3d} {allv.mean():9.3f} {means[worst]:6.3f} {worst:>6s} "
              f"{100 * (allv >= 0.9).mean():9.0f}%")
    print(f"[{args.draws} draws per (target, k); {time.perf_counter() - t0:.0f}s]")


if __name__ == "__main__":
    main()
