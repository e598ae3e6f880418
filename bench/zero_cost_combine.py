"""How to combine zero-cost proxies on NAS-Bench-201, judged against the 200-epoch CIFAR-10 truth (issue 20).

Reads the scores ``bench/zero_cost_truth.py --sample-seed`` wrote (two disjoint random samples: the first
``--n`` cells of ``--seed``, then a second sample), and prints, per sample and pooled, SRCC and Kendall tau of
each proxy and combination with a bootstrap 95 % interval; params over the whole space (closed form, all
15,625 cells) to show how easy each sample is; then combinations and predictors fitted on truth, always judged
on cells they were not fitted on.

    python bench/zero_cost_combine.py runs/zero_cost_scores_t6.csv
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import kendalltau, norm, rankdata, spearmanr

from bench.zero_cost_truth import NPZ, PUBLISHED, truth_table
from orchestrator.search.zero_cost import ENSEMBLE, ZeroCostScorer, proxy_batch
from orchestrator.supernet.data import DataConfig, load_dataset
from search_spaces.costs import count_params
from search_spaces.nb201 import NB201Space


def srcc(v: np.ndarray, t: np.ndarray) -> float:
    return float(spearmanr(v, t)[0])


def boot_ci(f: Callable[[np.ndarray], float], n: int, rng: np.random.Generator,
            reps: int = 1000) -> tuple[float, float]:
    """2.5 and 97.5 percentiles of ``f(index sample)`` over ``reps`` resamples of ``n`` cells with replacement."""
    vals = [f(rng.integers(0, n, n)) for _ in range(reps)]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def combinations(z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Truth-free combinations of the standardised scores (larger = better)."""
    s, w, p = z["synflow"], z["naswot"], z["params"]
    rk = {n: rankdata(v) / len(v) for n, v in z.items()}
    return {
        "z-mean (ensemble_mean)": (s + w + p) / 3,
        "rank-average (set-relative)": (rk["synflow"] + rk["naswot"] + rk["params"]) / 3,
        "normal-cdf mean": (norm.cdf(s) + norm.cdf(w) + norm.cdf(p)) / 3,
        "z-mean synflow+naswot": (s + w) / 2,
        "z-mean synflow+params": (s + p) / 2,
        "z-mean naswot+params": (w + p) / 2,
        "z-min (ensemble, default)": np.minimum(np.minimum(s, w), p),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", help="CSV written by bench/zero_cost_truth.py (columns arch, sample, proxies)")
    ap.add_argument("--data", default=str(NPZ))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="the proxies' seed (initialisation, batch, reference)")
    ap.add_argument("--reps", type=int, default=1000, help="bootstrap resamples")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    space = NB201Space()
    with open(args.scores) as f:
        rows = list(csv.DictReader(f))
    ids = [r["arch"] for r in rows]
    sample = np.array([r["sample"] for r in rows])
    t = np.array([float(r["test_acc_cifar10_200ep"]) for r in rows])
    raw = {n: np.array([float(r[n]) for r in rows]) for n in ENSEMBLE}
    data = load_dataset(DataConfig(name="npz", root=args.data, max_train=5000, seed=args.seed))
    x, y = proxy_batch(data, args.batch, args.seed)
    scorer = ZeroCostScorer(space, "ensemble", x, y, args.seed)
    z = scorer.zscores(raw)  # what the pipeline's ensembles standardise (32 reference cells)
    assert np.allclose(scorer.combine(raw), np.maximum(50 + 10 * np.min([z[n] for n in ENSEMBLE], axis=0), 1))

    truth = truth_table()
    all_ids = list(truth)
    all_params = np.array([count_params(space, space.parse(a)) for a in all_ids], dtype=float)
    whole = srcc(all_params, np.array([truth[a] for a in all_ids]))
    rng = np.random.default_rng(0)
    groups = [(f"sample {s}", sample == s) for s in dict.fromkeys(sample)] + [("pooled", np.ones(len(ids), bool))]
    print(f"{len(ids)} cells; params over all {len(all_ids)} cells: SRCC {whole:.3f}\n")
    print(f"{'group':<10} {'cells':>5} {'proxy':<30} {'SRCC':>6} {'95% CI':>15} {'tau':>6} {'95% CI':>15} "
          f"{'published':>9}")
    for g, m in groups:
        tg = t[m]
        for name, v in {**{n: z[n] for n in ENSEMBLE}, **combinations({n: z[n][m] for n in ENSEMBLE})}.items():
            v = v if len(v) == m.sum() else v[m]
            lo, hi = boot_ci(lambda i, v=v, tg=tg: srcc(v[i], tg[i]), int(m.sum()), rng, args.reps)
            tlo, thi = boot_ci(lambda i, v=v, tg=tg: float(kendalltau(v[i], tg[i])[0]), int(m.sum()), rng,
                               args.reps // 4)
            pub = PUBLISHED.get(name, "")
            print(f"{g:<10} {int(m.sum()):>5} {name:<30} {srcc(v, tg):>6.3f} {f'[{lo:.3f}, {hi:.3f}]':>15} "
                  f"{kendalltau(v, tg)[0]:>6.3f} {f'[{tlo:.3f}, {thi:.3f}]':>15} {pub:>9}")
        print()

    # paired bootstrap: each combination minus the z-mean, on the pooled cells
    zs = {n: z[n] for n in ENSEMBLE}
    comb = combinations(zs)
    base = comb["z-mean (ensemble_mean)"]
    print("pooled, paired bootstrap of SRCC(combination) - SRCC(z-mean):")
    for name, v in comb.items():
        if v is base:
            continue
        d = srcc(v, t) - srcc(base, t)
        lo, hi = boot_ci(lambda i, v=v: srcc(v[i], t[i]) - srcc(base[i], t[i]), len(t), rng, args.reps)
        print(f"  {name:<30} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")

    # the choice made on the first sample only, judged on the second (held out from the choice)
    first = sample == sample[0]
    if (~first).sum() >= 20:
        c0 = combinations({n: z[n][first] for n in ENSEMBLE})
        best = max(c0, key=lambda n: srcc(c0[n], t[first]))
        c1 = combinations({n: z[n][~first] for n in ENSEMBLE})
        v, b, t1 = c1[best], c1["z-mean (ensemble_mean)"], t[~first]
        lo, hi = boot_ci(lambda i: srcc(v[i], t1[i]) - srcc(b[i], t1[i]), len(t1), rng, args.reps)
        print(f"\nchosen on sample {sample[0]} (best SRCC there of the {len(c0)} combinations): {best}; on the other "
              f"sample ({len(t1)} cells) SRCC {srcc(v, t1):.3f} vs z-mean {srcc(b, t1):.3f}, difference "
              f"{srcc(v, t1) - srcc(b, t1):+.3f} [{lo:+.3f}, {hi:+.3f}]")

    fitted(sample, t, np.column_stack([z[n] for n in ENSEMBLE]), base)


def fitted(sample: np.ndarray, t: np.ndarray, zc: np.ndarray, base: np.ndarray) -> None:
    """Combinations fitted on truth, judged only on cells not fitted on: (a) least-squares weights of the
    three z-scores on the first sample's rank-normalised truth, judged on the second; (b) the predictor source
    (additive, mlp) on the z-scores with a rank target, fitted on k cells of the pooled set, SRCC on the rest
    (mean +- sd over 10 splits) beside the z-mean on the same held-out cells."""
    from orchestrator.latency.predictors import make_predictor

    def gauss_rank(v: np.ndarray) -> np.ndarray:
        return norm.ppf(rankdata(v) / (len(v) + 1))

    first = sample == sample[0]
    if (~first).sum() >= 20:
        a = np.column_stack([zc[first], np.ones(first.sum())])
        w = np.linalg.lstsq(a, gauss_rank(t[first]), rcond=None)[0]
        pred = np.column_stack([zc[~first], np.ones((~first).sum())]) @ w
        print(f"\nweights fitted on sample {sample[0]} (synflow, naswot, params) = {np.round(w[:3], 3).tolist()}: "
              f"SRCC on the other sample {srcc(pred, t[~first]):.3f} "
              f"(z-mean {srcc(base[~first], t[~first]):.3f})")
    print("\npredictor on the z-scores, target = normal score of the truth's rank among the k fitted cells; "
          "SRCC on the held-out cells (10 splits)")
    print(f"{'k':>4} {'model':<9} {'predictor':>15} {'z-mean, same cells':>22}")
    for k in (20, 50, 100, 200):
        if k >= len(t) - 50:
            continue
        for model in ("additive", "mlp"):
            r, b = [], []
            for split in range(10):
                perm = np.random.default_rng([7, split]).permutation(len(t))
                tr, te = perm[:k], perm[k:]
                params = {"seed": split} if model == "mlp" else {"alpha": 1.0}
                m = make_predictor(model, **params).fit(zc[tr], gauss_rank(t[tr]) + 10.0)  # positive: log fits
                r.append(srcc(m.predict(zc[te]), t[te]))
                b.append(srcc(base[te], t[te]))
            print(f"{k:>4} {model:<9} {f'{np.mean(r):.3f} +- {np.std(r):.3f}':>15} "
                  f"{f'{np.mean(b):.3f} +- {np.std(b):.3f}':>22}")


if __name__ == "__main__":
    main()
