"""Does the sweep's SRCC lower bound hold its stated confidence on real device pairs? (issue 17)

For a device pair with population SRCC rho, a one-sided lower bound at confidence c must exceed rho in at most
1 - c of random k-samples. For every device pair of the shipped tables (NB201's whole space on HELP's 19
devices, FBNet and OFA on HELP's devices, HW-NAS-Bench's six devices: 372 pairs; the cells measured on every
device of the table; rho over all of them) and each k, prints that frequency ("exceedance") for

- ``exact``: the small-sample bound under a Gaussian copula alone (the bound of issue 17's first part);
- ``bound``: the smallest of the test inversions under each of ``--copulas`` (default: the shipped COPULAS, the
  Gaussian and Student's t1 copula) and the bound calibrated on the shipped pairs (``empirical_srcc_lower_bound``;
  left out with ``--no-envelope``), what the sweep uses before the bootstrap (the sweep takes the minimum with the
  percentile bootstrap too, which can only lower the bound: its exceedance and reuse rate are at most these);

and the reuse rate (share of samples whose bound clears the threshold) on pairs with rho >= 0.95 (right) and
rho < threshold (wrong). ``--holdout`` calibrates without the named tables (the check on pairs the calibration
did not see); draws use a seed other than the calibration's.

    python bench/bound_coverage.py [--draws 1000] [--ks 3 5 7 10 15 20] [--confidence 0.9] [--holdout fbnet ofa]
        [--per-pair] [--share 0.25] [--copulas gaussian t1] [--no-envelope]
"""

from __future__ import annotations

import argparse
import time
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from orchestrator.sweep import decision as dec

SHORT = {"nb201_full_15625.csv": "nb201", "fbnet_5000.csv": "fbnet", "ofa_mbv3_5000.csv": "ofa",
         "nb201_hwnasbench_6devices.csv": "hwnas"}


@lru_cache(maxsize=64)
def _thresholds(k: int, conf: float, copula: str) -> np.ndarray:
    m = int(np.ceil(dec.NULL_DRAWS * conf))
    return np.maximum.accumulate([dec._null_srcc(k, j, copula)[m - 1] + 1e-9 for j in range(len(dec.RHO_GRID))])


def exact_vec(r: np.ndarray, k: int, conf: float, copula: str = "gaussian") -> np.ndarray:
    """exact_srcc_lower_bound for many r at once (the same test inversion, as thresholds per grid rho)."""
    t = _thresholds(k, conf, copula)
    j = np.searchsorted(t, r, side="left") - 1
    return np.where(j >= 0, dec.RHO_GRID[np.clip(j, 0, None)], -1.0)


def empirical_vec(r: np.ndarray, k: int, conf: float) -> np.ndarray:
    level = round(1.0 - (1.0 - conf) * dec.CALIBRATION_SHARE, 9)
    q, rmin = dec._calibration_envelope(min(k, dec.CALIBRATION_MAX_K), level)
    j = np.searchsorted(q, r - 1e-9, side="left")
    return np.where(j < len(q), rmin[np.clip(j, 0, len(q) - 1)], 1.0)


def devices(table: str) -> list[str]:
    with resources.as_file(resources.files("orchestrator") / "data" / table) as path:
        return [c[len("lat_ms_"):] for c in pd.read_csv(path, nrows=0).columns if c.startswith("lat_ms_")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 5, 7, 10, 15, 20])
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--holdout", nargs="*", default=[], choices=sorted(SHORT.values()))
    ap.add_argument("--per-pair", action="store_true", help="print every pair's exceedance per k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=None,
                    help="CALIBRATION_SHARE to measure (default: the shipped one)")
    ap.add_argument("--copulas", nargs="+", default=list(dec.COPULAS), choices=dec.COPULAS,
                    help="copulas whose test inversions the bound takes the smallest of (default: the shipped ones)")
    ap.add_argument("--no-envelope", action="store_true", help="leave the calibrated bound out of 'bound'")
    ap.add_argument("--t-df", type=float, default=None, help="degrees of freedom of the t copula (default: T_DF)")
    args = ap.parse_args()
    if args.share is not None:
        dec.CALIBRATION_SHARE = args.share
    if args.t_df is not None:
        dec.T_DF = args.t_df
    t0 = time.perf_counter()
    conf, alpha, thr = args.confidence, 1 - args.confidence, args.threshold
    tables = dict(zip(dec.CALIBRATION_TABLES, dec._calibration_tables(), strict=True))
    if args.holdout:
        dec.CALIBRATION_TABLES = tuple(t for t in dec.CALIBRATION_TABLES if SHORT[t] not in args.holdout)
        dec._calibration_tables.cache_clear()
        dec._calibration_envelope.cache_clear()
        tables = {t: v for t, v in tables.items() if SHORT[t] in args.holdout}
    rng = np.random.default_rng([args.seed, 99])
    print(f"exceedance = share of random k-samples whose {conf:.0%} lower bound exceeds the pair's SRCC (nominal "
          f"<= {alpha:.2f}); {args.draws} draws per pair and k (standard error {np.sqrt(alpha * conf / args.draws):.3f}"
          f" at the nominal); calibration on {', '.join(SHORT[t] for t in dec.CALIBRATION_TABLES)}; tested on "
          f"{', '.join(SHORT[t] for t in tables)}; CALIBRATION_SHARE {dec.CALIBRATION_SHARE}; bound: copulas "
          f"{' '.join(args.copulas)}{'' if args.no_envelope else ' and the calibrated envelope'} "
          f"(t copula: {dec.T_DF} df)")
    summary = []
    for k in args.ks:
        per = []  # (table, a, b, rho, exceed exact, exceed bound, reuse bound)
        for name, (M, rho) in tables.items():
            S = dec._sample_srcc(M, k, args.draws, rng)
            a, b = np.triu_indices(M.shape[1], 1)
            names = devices(name)
            for i, j in zip(a, b, strict=True):
                s = S[:, i, j]
                s = s[np.isfinite(s)]
                ex = exact_vec(s, k, conf)
                bd = np.min([exact_vec(s, k, conf, c) for c in args.copulas], axis=0)
                if not args.no_envelope:
                    bd = np.minimum(bd, empirical_vec(s, k, conf))
                per.append((SHORT[name], names[i], names[j], rho[i, j], np.mean(ex > rho[i, j]),
                            np.mean(bd > rho[i, j]), np.mean(bd >= thr), np.mean(ex >= thr)))
        if args.per_pair:
            for t, i, j, r, e1, e2, ru, _ in per:
                print(f"  k={k:>2} {t:<6} {i}/{j} rho {r:.3f}: exact {e1:.3f} bound {e2:.3f} reuse {ru:.3f}")
        P = np.array([p[3:] for p in per], dtype=float)
        hi, lo = P[:, 0] >= 0.95, P[:, 0] < thr
        worst = per[int(np.argmax(P[:, 2]))]
        summary.append((k, P[:, 1].mean(), P[:, 1].max(), int((P[:, 1] > alpha).sum()), P[:, 2].mean(),
                        P[:, 2].max(), int((P[:, 2] > alpha).sum()), len(P), P[hi, 3].mean() if hi.any() else np.nan,
                        P[lo, 3].mean() if lo.any() else np.nan, P[hi, 4].mean() if hi.any() else np.nan,
                        P[lo, 4].mean() if lo.any() else np.nan, f"{worst[0]} {worst[1]}/{worst[2]} ({worst[3]:.3f})"))
        print(f"k={k} done [{time.perf_counter() - t0:.0f}s]", flush=True)
    print(f"\n{'k':>3} | {'exact: mean':>11} {'max':>6} {'pairs>nom':>9} | {'bound: mean':>11} {'max':>6} "
          f"{'pairs>nom':>9} | reuse rho>=0.95 | reuse rho<{thr} | (exact alone) | worst pair (bound)")
    for k, m1, x1, n1, m2, x2, n2, n, rh, rl, eh, el, w in summary:
        print(f"{k:>3} | {m1:>11.3f} {x1:>6.3f} {n1:>4}/{n:<4} | {m2:>11.3f} {x2:>6.3f} {n2:>4}/{n:<4} | "
              f"{rh:>15.3f} | {rl:>14.4f} | {eh:.3f} / {el:.4f} | {w}")
    print(f"done in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
