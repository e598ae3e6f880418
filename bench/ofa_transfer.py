"""Proxy-to-target transfer between OFA's measured GPUs and batch sizes (issue 21 item 4): the shipped OFA table
(HELP's 5,000 once-for-all MobileNetV3 subnets, input resolution 128-224; 2080 Ti and Titan Xp at batch 1, 32,
64), read as the tabulated devices of ``mobilenetv3`` with ``resolutions: ofa`` (ids ``<subnet>@<px>``).

Part 1, the proxy as is: SRCC between every pair of devices on all 5,000 subnets, and the same within one
resolution (the mean over the 25 resolutions of the SRCC among the subnets at that resolution: how much of the
agreement the shared resolution carries), and each device's SRCC with the resolution alone.

Ceiling: how far each device is additive in the space's encoding at all (5-fold cross-validated SRCC of a ridge
fit on 4,000 subnets, the rest predicted): what an additive transfer can reach on that target.

Part 2, transfer: every ordered (proxy, target) pair; per k, ``--draws`` random draws of k measured target
subnets; ``reuse`` (the proxy's ranking as is) and ``adaproxy`` (OneProxy's adaptation of the one proxy) fitted
on them, SRCC on all the target's other subnets; then leave-one-device-out ``multi`` (the five other devices as
sources). Prints per pair, then a summary by kind of pair (same GPU other batch, same batch other GPU, both
differ).

    OPENBLAS_NUM_THREADS=1 python bench/ofa_transfer.py [--ks 10 20] [--draws 5] [--methods reuse adaproxy]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.latency.metrics import srcc
from orchestrator.latency.ofa_data import OFA_DEVICES, OFA_SPACE, shipped_ofa_table
from orchestrator.latency.transfer import SourceSet, adapt
from search_spaces.base import encode_ids


def kind(proxy: str, target: str) -> str:
    (gp, bp), (gt, bt) = proxy.rsplit("_", 1), target.rsplit("_", 1)
    if gp == gt:
        return "same GPU, other batch"
    return "same batch, other GPU" if bp == bt else "other GPU and batch"


def raw_srcc(table) -> tuple[np.ndarray, np.ndarray]:
    """(SRCC on all subnets, mean SRCC within a resolution), device x device."""
    res = np.array([int(a.rsplit("@", 1)[1]) for a in table.archs])
    n = len(table.devices)
    full, within = np.eye(n), np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = table.values[:, i], table.values[:, j]
            full[i, j] = full[j, i] = srcc(a, b)
            within[i, j] = within[j, i] = float(np.mean([srcc(a[res == r], b[res == r]) for r in np.unique(res)]))
    return full, within


def additive_ceiling(X: np.ndarray, Y: np.ndarray, folds: int = 5, alpha: float = 1e-2) -> np.ndarray:
    """Per column of ``Y``: the SRCC of out-of-fold ridge predictions from ``X`` (plus an intercept)."""
    X1 = np.hstack([X.astype(np.float64), np.ones((len(X), 1))])
    fold = np.random.default_rng(0).integers(0, folds, len(X))
    out = []
    for y in Y.T:
        pred = np.empty_like(y)
        for f in range(folds):
            tr = fold != f
            w = np.linalg.solve(X1[tr].T @ X1[tr] + alpha * np.eye(X1.shape[1]), X1[tr].T @ y[tr])
            pred[~tr] = X1[~tr] @ w
        out.append(srcc(pred, y))
    return np.array(out)


def run(ks: list[int], draws: int, methods: list[str], multi: bool, seed: int = 0) -> dict:
    space = OFA_SPACE.build()
    table = shipped_ofa_table(space)
    assert table is not None
    devs = table.devices
    full, within = raw_srcc(table)
    print("Part 1: SRCC proxy vs target on all 5,000 subnets (upper) / mean within one resolution (lower)")
    print(f"{'':12s}" + "".join(f"{d:>12s}" for d in devs))
    for i, d in enumerate(devs):
        print(f"{d:12s}" + "".join(f"{(full if j > i else within)[i, j]:12.3f}" if j != i else f"{'':>12s}"
                                   for j in range(len(devs))))
    r = np.array([int(a.rsplit("@", 1)[1]) for a in table.archs])
    print("\nSRCC of latency with the input resolution: "
          + ", ".join(f"{d} {srcc(r, table.column(d)):.3f}" for d in devs))
    X = encode_ids(space, table.archs)
    ceiling = additive_ceiling(X, table.values)
    print("\nCeiling: 5-fold SRCC of an additive (ridge) model per device: "
          + ", ".join(f"{d} {c:.3f}" for d, c in zip(devs, ceiling, strict=True)))
    res: dict = {"full": full, "within": within, "pairs": {}, "multi": {}}
    print("\nPart 2: transfer, SRCC on the target's other subnets (mean over draws)")
    for ti, target in enumerate(devs):
        y = table.column(target)
        t0 = time.perf_counter()
        for pi, proxy in enumerate(devs):
            if proxy == target:
                continue
            src = SourceSet([proxy], X, table.values[:, [pi]], None, seed=seed)
            line = []
            for k in ks:
                rng = np.random.default_rng([seed, ti, pi, k])
                for m in methods:
                    vals = []
                    for d in range(draws):
                        pick = np.random.default_rng([seed, ti, k, d]).choice(len(y), size=k, replace=False)
                        rest = np.setdiff1d(np.arange(len(y)), pick)
                        pred = adapt(m, src, X[pick], y[pick], rng)
                        vals.append(srcc(pred.predict(X[rest]), y[rest]))
                    res["pairs"].setdefault((m, k), {})[(proxy, target)] = float(np.mean(vals))
                    line.append(f"{m}@{k} {np.mean(vals):.3f}")
            print(f"{proxy:>11s} -> {target:11s} {'  '.join(line)}", flush=True)
        if multi:
            others = [d for d in devs if d != target]
            src = SourceSet(others, X, table.select(others).values, None, seed=seed)
            line = []
            for k in ks:
                vals = []
                for d in range(draws):
                    pick = np.random.default_rng([seed, ti, k, d]).choice(len(y), size=k, replace=False)
                    rest = np.setdiff1d(np.arange(len(y)), pick)
                    pred = adapt("multi", src, X[pick], y[pick], np.random.default_rng([seed, ti, k, d]))
                    vals.append(srcc(pred.predict(X[rest]), y[rest]))
                res["multi"].setdefault(k, {})[target] = float(np.mean(vals))
                line.append(f"multi@{k} {np.mean(vals):.3f}")
            print(f"{'5 others':>11s} -> {target:11s} {'  '.join(line)}  [{time.perf_counter() - t0:.0f}s]",
                  flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=["reuse", "adaproxy"])
    ap.add_argument("--no-multi", action="store_true", help="skip leave-one-device-out multi")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.ks, args.draws, args.methods, not args.no_multi, args.seed)
    devs = list(OFA_DEVICES)
    print(f"\n{'pair kind':22s} {'pairs':>5s} {'raw SRCC':>8s} {'within-r':>8s} "
          + " ".join(f"{m + '@' + str(k):>12s}" for (m, k) in sorted(res["pairs"], key=lambda mk: (mk[1], mk[0]))))
    kinds = sorted({kind(p, t) for p in devs for t in devs if p != t})
    for kd in kinds:
        pairs = [(p, t) for p in devs for t in devs if p != t and kind(p, t) == kd]
        ij = [(devs.index(p), devs.index(t)) for p, t in pairs]
        cells = " ".join(f"{np.mean([v[pt] for pt in pairs]):12.3f}"
                         for _, v in sorted(res["pairs"].items(), key=lambda kv: (kv[0][1], kv[0][0])))
        print(f"{kd:22s} {len(pairs):5d} {np.mean([res['full'][i, j] for i, j in ij]):8.3f} "
              f"{np.mean([res['within'][i, j] for i, j in ij]):8.3f} {cells}")
    for k, per in sorted(res["multi"].items()):
        worst = min(per, key=per.get)
        print(f"multi@{k} (5 sources, leave one device out): mean {np.mean(list(per.values())):.3f}, worst "
              f"{per[worst]:.3f} ({worst})")
    print(f"[{args.draws} draws per (pair, k); {time.perf_counter() - t0:.0f}s]")


if __name__ == "__main__":
    main()
