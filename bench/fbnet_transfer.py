"""FBNet transfer, leave-one-device-out over the 19 devices of the shipped FBNet table (HELP's 5,000
architectures of HW-NAS-Bench's CIFAR-100 FBNet space; GPUs at batch 1/32/64, CPUs, phones).

Each device in turn is the target and the other 18 are the sources (fully measured on the same 5,000
architectures). Per k, several random draws of k measured target architectures; the transfer methods of
``orchestrator.latency.transfer`` adapt to them, and the SRCC is computed on all the target's other
architectures. ``reuse`` is the trivial baseline: the source that ranks the k samples best, as is. Prints mean
SRCC over (target, draw), the worst target's mean, and the share of pairs with SRCC >= 0.9; then per target.

    python bench/fbnet_transfer.py [--ks 10 20] [--draws 5] [--methods reuse adaproxy multi] [--reference 10]

``--reference n`` adds HELP's protocol "k + n": the k random target architectures plus n fixed reference
architectures (``sweep.reference_cells``' rule: evenly spaced in multiply-adds), rows ``<method>+ref``.
Run with ``OPENBLAS_NUM_THREADS=1`` on a shared machine (threaded BLAS on small products under contention
costs more than it saves).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.latency.fbnet_data import shipped_fbnet_table
from orchestrator.latency.metrics import srcc
from orchestrator.latency.transfer import SourceSet, adapt
from orchestrator.sweep.reference import reference_cells
from search_spaces import get_space
from search_spaces.base import encode_ids


def run(ks: list[int], draws: int, methods: list[str], groups: str, seed: int = 0, reference: int = 0,
        targets: list[str] | None = None) -> dict:
    space = get_space("fbnet")
    table = shipped_fbnet_table(space)
    X = encode_ids(space, table.archs)
    g = space.encoding_groups()
    g = {"block": g[:9], "stage": g, "none": None}[groups]
    res: dict = {}
    row = {a: i for i, a in enumerate(table.archs)}
    refs = np.array([row[a] for a in reference_cells(table.archs, reference, space.spec(), table)], dtype=int)
    for ti, target in enumerate(table.devices):
        if targets and target not in targets:
            continue
        t0 = time.perf_counter()
        y = table.column(target)
        others = [d for d in table.devices if d != target]
        src = SourceSet(others, X, table.select(others).values, g, seed=seed)
        for k in ks:
            rng = np.random.default_rng([seed, ti, k])
            for d in range(draws):
                pick = rng.choice(len(y), size=k, replace=False)
                rest = np.setdiff1d(np.arange(len(y)), pick)
                for m in methods:
                    pred = adapt(m, src, X[pick], y[pick], np.random.default_rng([seed, ti, k, d]))
                    res.setdefault((m, k), {}).setdefault(target, []).append(srcc(pred.predict(X[rest]), y[rest]))
                if len(refs):  # the same k random architectures (none of the references) plus the references
                    pick = np.concatenate([refs, np.setdiff1d(pick, refs)])
                    rest = np.setdiff1d(np.arange(len(y)), pick)
                    for m in methods:
                        pred = adapt(m, src, X[pick], y[pick], np.random.default_rng([seed, ti, k, d]))
                        res.setdefault((f"{m}+ref", k), {}).setdefault(target, []).append(
                            srcc(pred.predict(X[rest]), y[rest]))
        line = "  ".join(f"{m}@{k} {np.mean(v[target]):.3f}" for (m, k), v in sorted(res.items()) if target in v)
        print(f"{target:15s} {line}  [{time.perf_counter() - t0:.0f}s]", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=["reuse", "adaproxy", "multi"])
    ap.add_argument("--groups", choices=["block", "stage", "none"], default="stage",
                    help="coarse encoding groups given to the transfer (fbnet: per block, + per stage and block)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", type=int, default=0, help="also k + this many fixed reference architectures")
    ap.add_argument("--targets", nargs="*", help="only these targets (default: all 19)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.ks, args.draws, args.methods, args.groups, args.seed, args.reference, args.targets)
    print(f"\n{'method':9s} {'k':>3s} {'mean SRCC':>9s} {'worst target':>22s} {'share>=0.9':>10s}")
    for (m, k), per in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        means = {t: float(np.mean(v)) for t, v in per.items()}
        allv = np.concatenate([np.asarray(v) for v in per.values()])
        worst = min(means, key=means.get)
        print(f"{m:9s} {k:3d} {allv.mean():9.3f} {means[worst]:7.3f} {worst:>14s} {100 * (allv >= 0.9).mean():9.0f}%")
    n_targets = len(next(iter(res.values())))
    print(f"[{n_targets} targets, {args.draws} draws per (target, k), groups={args.groups}, reference "
          f"{args.reference}; {time.perf_counter() - t0:.0f}s]")


if __name__ == "__main__":
    main()
