"""Transfer quality on the shipped NB201 latencies, and as sources grow.

``--table shipped`` (default): NB201's whole space, 15,625 cells on HELP's 19
devices; ``--table nb201-hwnasbench``: the 1,999-cell subset on HW-NAS-Bench's
six devices (the figures of issues 2-11). ``--reference N``: also ``multi+ref``,
the k random target measurements plus the N fixed reference cells of the sweep
(``sweep/reference.py``), SRCC on the cells neither sampled nor reference.

Part 1, leave-one-device-out: each device in turn is the target, the other five
are the sources (methods reuse, adaproxy, multi, auto), and single-proxy: each
other device alone as the source. For each k, several random draws of k
measured target architectures; SRCC on all the target's other measured
architectures. Prints mean and worst (over targets) SRCC and the share of
(target, draw) pairs with SRCC >= 0.9; then, per k, ``multi`` with all five
sources against ``multi`` with each single source (the best single source per
target, chosen in hindsight, and the median one) and ``adaproxy``.

Part 2 (``--scaling``), more sources: 64 SIMULATED roofline devices (``sim:0``
..``sim:63``, latencies of the same 1,999 cells) join the six shipped ones.
Targets: the six shipped devices and ``sim:54``..``sim:63``; for each target
and number of sources n, n sources drawn at random from the rest; ``multi``
with all n against the best single one of those n (in hindsight).

    python bench/transfer_quality.py [--draws 10] [--ks 5 10 20 50] [--scaling]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.latency.devices.simulated import SimulatedDevice
from orchestrator.latency.metrics import srcc
from orchestrator.latency.table import shipped_table
from orchestrator.latency.transfer import SourceSet, adapt
from orchestrator.sweep.reference import reference_cells
from search_spaces.base import encode_ids
from search_spaces.nb201 import NB201Space


def run(ks: list[int], draws: int, methods: list[str], single: bool, seed: int | list[int] = 0,
        table_name: str = "shipped", reference: int = 0, targets: list[str] | None = None) -> dict:
    """Part 1; ``seed`` may be a list: each seed's draws in turn on the same source sets (their meta-learning,
    seeded by the source set alone, is done once)."""
    seeds = [seed] if isinstance(seed, int) else list(seed)
    space = NB201Space()
    table = shipped_table(space, table_name)
    X = encode_ids(space, table.archs)
    row = {a: i for i, a in enumerate(table.archs)}
    results: dict = {}
    for ti, target in enumerate(table.devices):
        if targets and target not in targets:
            continue
        t_start = time.perf_counter()
        y = table.column(target)
        measured = np.where(~np.isnan(y))[0]
        others = [d for d in table.devices if d != target]
        settings = [("all", others, methods)]
        if single:
            settings += [(f"proxy={o}", [o], [m for m in methods if m in ("reuse", "adaproxy", "multi")])
                         for o in others]
        for label, src_names, meths in settings:
            src = SourceSet.from_table(table.select(src_names), space)
            for seed, k in ((s, k) for s in seeds for k in ks):
                rng = np.random.default_rng([seed, ti, k])
                for _ in range(draws):
                    pick = rng.choice(measured, size=k, replace=False)
                    rest = np.setdiff1d(measured, pick)
                    for m in meths:
                        pred = adapt(m, src, X[pick], y[pick], np.random.default_rng([seed, ti, k, 1]))
                        r = srcc(pred.predict(X[rest]), y[rest])
                        setting = "all" if label == "all" else "single"
                        results.setdefault((setting, m, k), {}).setdefault(target, []).append(r)
                        if setting == "single":
                            results.setdefault(("per-source", m, k), {}).setdefault((target, label), []).append(r)
            if label == "all" and reference:  # k random target cells plus the fixed reference cells
                refs = np.array([row[a] for a in reference_cells(table.archs, reference, space.spec(), table)
                                 if not np.isnan(y[row[a]])])
                free = np.setdiff1d(measured, refs)
                for seed, k in ((s, k) for s in seeds for k in ks):
                    rng = np.random.default_rng([seed, ti, k, 7])
                    for _ in range(draws):
                        pick = np.concatenate([refs, rng.choice(free, size=k, replace=False)])
                        rest = np.setdiff1d(measured, pick)
                        pred = adapt("multi", src, X[pick], y[pick], np.random.default_rng([seed, ti, k, 1]))
                        results.setdefault(("all", "multi+ref", k), {}).setdefault(target, []).append(
                            srcc(pred.predict(X[rest]), y[rest]))
        mine = "  ".join(f"{m}@{k} {np.mean(per[target]):.3f}" for (setting, m, k), per in sorted(results.items())
                         if setting == "all" and target in per)
        print(f"  {target}: {time.perf_counter() - t_start:.0f}s  {mine}", flush=True)
    return results


def print_part1(res: dict, ks: list[int]) -> None:
    print(f"{'sources':8s} {'method':9s} {'k':>3s} {'mean SRCC':>9s} {'worst target':>13s} {'share>=0.9':>10s}")
    for (setting, m, k), per_target in sorted(res.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        if setting == "per-source":
            continue
        means = {t: float(np.mean(v)) for t, v in per_target.items()}
        allv = np.concatenate([np.asarray(v) for v in per_target.values()])
        worst = min(means, key=means.get)
        print(f"{setting:8s} {m:9s} {k:3d} {allv.mean():9.3f} {means[worst]:6.3f} {worst:>6s} "
              f"{100 * (allv >= 0.9).mean():9.0f}%")
    if not any(key[0] == "per-source" and key[1] == "multi" for key in res):
        return
    print("\nmulti with all five sources against multi with one source (best per target in hindsight, median):")
    print(f"{'k':>3s} {'all five':>9s} {'best single':>12s} {'median single':>14s} {'adaproxy':>9s}  all >= best?")
    for k in ks:
        per = res[("per-source", "multi", k)]
        targets = sorted({t for t, _ in per})
        best = np.mean([max(np.mean(v) for (t2, _), v in per.items() if t2 == t) for t in targets])
        med = np.mean([np.median([np.mean(v) for (t2, _), v in per.items() if t2 == t]) for t in targets])
        allv = np.mean([np.mean(res[("all", "multi", k)][t]) for t in targets])
        ada = np.mean([np.mean(res[("all", "adaproxy", k)][t]) for t in targets]) \
            if ("all", "adaproxy", k) in res else float("nan")
        print(f"{k:3d} {allv:9.3f} {best:12.3f} {med:14.3f} {ada:9.3f}  {'yes' if allv >= best else 'NO'}")


def scaling(ks: list[int], sizes: list[int], draws: int, seed: int = 0) -> None:
    """Part 2 of the module doc."""
    space = NB201Space()
    table = shipped_table(space)
    X = encode_ids(space, table.archs)
    sims = np.stack([SimulatedDevice(i, space).latency_ms(table.archs) for i in range(64)], axis=1)
    names = [*table.devices, *(f"sim:{i}" for i in range(64))]
    Y = np.concatenate([table.values, sims], axis=1)
    targets = [*table.devices, *(f"sim:{i}" for i in range(54, 64))]
    print(f"\nsources grow: {len(targets)} targets (6 shipped, 10 SIMULATED), n sources drawn from the other "
          f"{len(names) - 1} devices, {draws} draws of k per target")
    print(f"{'k':>3s} {'n':>3s} {'multi, all n':>13s} {'best single of n':>17s} {'gap':>7s}")
    for k in ks:
        for n in sizes:
            all_r, best_r = [], []
            for ti, target in enumerate(targets):
                j = names.index(target)
                y = Y[:, j]
                measured = np.flatnonzero(~np.isnan(y))
                pool = [i for i in range(len(names)) if i != j]
                rng = np.random.default_rng([seed, ti, n])
                chosen = sorted(rng.choice(pool, size=min(n, len(pool)), replace=False))
                src = SourceSet([names[i] for i in chosen], X, Y[:, chosen], space.encoding_groups(), seed=seed)
                singles = [SourceSet([names[i]], X, Y[:, [i]], space.encoding_groups(), seed=seed) for i in chosen]
                per_single = np.zeros((len(chosen), draws))
                drng = np.random.default_rng([seed, ti, k])
                for d in range(draws):
                    pick = drng.choice(measured, size=k, replace=False)
                    rest = np.setdiff1d(measured, pick)
                    g = np.random.default_rng([seed, ti, k, d])
                    all_r.append(srcc(adapt("multi", src, X[pick], y[pick], g).predict(X[rest]), y[rest]))
                    for s, one in enumerate(singles):
                        per_single[s, d] = srcc(adapt("multi", one, X[pick], y[pick], g).predict(X[rest]), y[rest])
                best_r.append(per_single.mean(axis=1).max())
            a, b = float(np.mean(all_r)), float(np.mean(best_r))
            print(f"{k:3d} {n:3d} {a:13.3f} {b:17.3f} {a - b:+7.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--methods", nargs="+", default=["reuse", "adaproxy", "multi", "auto"])
    ap.add_argument("--no-single", action="store_true", help="skip the single-proxy setting")
    ap.add_argument("--scaling", action="store_true", help="also part 2: sources from 1 to 60")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 30, 60])
    ap.add_argument("--scaling-ks", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--scaling-draws", type=int, default=5)
    ap.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds of the draws")
    ap.add_argument("--table", default="shipped", help="shipped (the whole space) or nb201-hwnasbench")
    ap.add_argument("--reference", type=int, default=0, help="also multi with this many reference cells")
    ap.add_argument("--targets", nargs="+", default=None, help="default: every device of the table")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.ks, args.draws, args.methods, not args.no_single, args.seed, args.table, args.reference,
              args.targets)
    print_part1(res, args.ks)
    print(f"[{args.draws} draws per (target, k); {time.perf_counter() - t0:.0f}s]")
    if args.scaling:
        scaling(args.scaling_ks, args.sizes, args.scaling_draws, args.seed[0])
        print(f"[{time.perf_counter() - t0:.0f}s in all]")


if __name__ == "__main__":
    main()
