"""Zero-cost proxies on NAS-Bench-201 against the 200-epoch CIFAR-10 truth (issue 20).

Samples random NB201 cells (seeded) from ``orchestrator/data/nb201_full_15625.csv``, scores each proxy on a
batch of real CIFAR-10 training images (the shared npz), networks as NB201 builds them (C=16, N=5),
initialised with the same seed; prints SRCC and Kendall tau against ``test_acc_cifar10_200ep`` with the
seconds per cell, beside the published anchors over all 15,625 cells. Writes every cell's raw scores to
``--out`` (CSV), which ``--scores`` reads back to recompute the table without scoring again.

    python bench/zero_cost_truth.py --n 200 --slow-n 100 --out runs/zero_cost_scores.csv
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from orchestrator.search.zero_cost import ZeroCostScorer, proxy_batch, score_cells, transform
from orchestrator.supernet.data import DataConfig, load_dataset
from search_spaces.nb201 import NB201Space

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "orchestrator" / "data" / "nb201_full_15625.csv"
NPZ = ROOT.parent / "shared" / "data" / "cifar10_20k_10k.npz"
PUBLISHED = {"synflow": 0.78, "naswot": 0.80, "params": 0.75}
FAST, SLOW = ("params", "synflow", "naswot"), ("snip", "grad_norm")


def sample_cells(all_ids: list[str], n: int, seed: int, sample_seed: int | None) -> tuple[list[str], list[str]]:
    """The ``n`` random cells of ``seed`` (the first sample), then, with ``sample_seed``, every other cell in a
    random order of that seed: any prefix of it is a uniform random sample disjoint from the first."""
    first = [all_ids[i] for i in np.random.default_rng(seed).choice(len(all_ids), n, replace=False)]
    if sample_seed is None:
        return first, [str(seed)] * len(first)
    taken = set(first)
    rest = [a for a in all_ids if a not in taken]
    rest = [rest[i] for i in np.random.default_rng(sample_seed).permutation(len(rest))]
    return first + rest, [str(seed)] * len(first) + [str(sample_seed)] * len(rest)


def score_stream(space, ids: list[str], sample: list[str], x, y, args, truth: dict[str, float],
                 deadline: float | None) -> tuple[list[str], dict[str, np.ndarray], dict[str, float]]:
    """Scores cell after cell (params, synflow, naswot; snip and grad_norm on the first ``--slow-n``), one
    network built per cell, each row written to ``--out`` as soon as it is scored (a run cut short keeps its
    rows); stops at ``deadline`` (time.monotonic())."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spent = dict.fromkeys(FAST + SLOW, 0.0)
    done = dict.fromkeys(FAST + SLOW, 0)
    rows: list[dict[str, float]] = []
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "sample", "test_acc_cifar10_200ep", *FAST, *SLOW])
        for i, a in enumerate(ids):
            if deadline is not None and time.monotonic() > deadline:
                break
            names = FAST + SLOW if i < args.slow_n else FAST
            row = dict.fromkeys(FAST + SLOW, float("nan"))
            for n in names:
                t0 = time.perf_counter()
                row[n] = float(score_cells(space, [a], x, y, [n], args.seed)[n][0])
                spent[n] += time.perf_counter() - t0
                done[n] += 1
            rows.append(row)
            w.writerow([a, sample[i], truth[a], *(repr(row[n]) for n in FAST + SLOW)])
            f.flush()
            if (i + 1) % 100 == 0:
                print(f"  {i + 1} cells scored", flush=True)
    seconds = {n: spent[n] / done[n] for n in FAST + SLOW if done[n]}
    print(f"wrote {out}: {len(rows)} cells; s/cell " + ", ".join(f"{n} {v:.2f}" for n, v in seconds.items()))
    raw = {n: np.array([r[n] for r in rows]) for n in FAST + SLOW}
    return ids[: len(rows)], raw, seconds


def truth_table(column: str = "test_acc_cifar10_200ep") -> dict[str, float]:
    space = NB201Space()
    with TABLE.open() as f:
        return {space.arch_id(space.parse(r["arch"])): float(r[column]) for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="random cells scored with params, synflow, naswot")
    ap.add_argument("--slow-n", type=int, default=100, help="of those, cells also scored with snip, grad_norm")
    ap.add_argument("--data", default=str(NPZ), help="CIFAR-10 npz (x_train, y_train, x_test, y_test)")
    ap.add_argument("--batch", type=int, default=64, help="images in the proxies' batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/zero_cost_scores.csv")
    ap.add_argument("--scores", help="a CSV written by --out: recompute the table only")
    ap.add_argument("--sample-seed", type=int, help="after the --n cells of --seed, score a second random sample "
                    "(this seed), disjoint from the first, until --budget-s")
    ap.add_argument("--budget-s", type=float, help="stop scoring after this many seconds (rows so far are kept)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    space = NB201Space()
    truth = truth_table()
    twelve_epoch = truth_table("test_acc_cifar10_12ep")
    data = load_dataset(DataConfig(name="npz", root=args.data, max_train=5000, seed=args.seed))
    x, y = proxy_batch(data, args.batch, args.seed)
    seconds: dict[str, float] = {}
    if args.scores:
        with open(args.scores) as f:
            rows = list(csv.DictReader(f))
        ids = [r["arch"] for r in rows]
        sample = [r.get("sample", str(args.seed)) for r in rows]
        raw = {n: np.array([float(r[n]) if r.get(n) not in (None, "") else np.nan for r in rows])
               for n in FAST + SLOW}
    else:
        ids, sample = sample_cells(sorted(truth), args.n, args.seed, args.sample_seed)
        deadline = time.monotonic() + args.budget_s if args.budget_s else None
        ids, raw, seconds = score_stream(space, ids, sample, x, y, args, truth, deadline)
    t = np.array([truth[a] for a in ids])
    scorer = ZeroCostScorer(space, "ensemble", x, y, args.seed)
    t0 = time.perf_counter()
    ens = scorer.combine(raw)  # the pipeline's zero_cost source, proxy: ensemble
    ref_s = time.perf_counter() - t0
    print(f"\n{len(ids)} random NB201 cells (seed {args.seed}); truth: test_acc_cifar10_200ep; batch {args.batch} "
          f"CIFAR-10 training images\n")
    print(f"{'proxy':<10} {'cells':>5} {'SRCC':>6} {'tau':>6} {'published SRCC':>15} {'s/cell':>7}")
    for n in FAST + SLOW + ("ensemble",):
        v = ens if n == "ensemble" else transform(n, raw[n])
        ok = ~np.isnan(v)  # not scored; -inf (synflow of a cell whose output ignores its input) ranks last
        v = np.where(np.isneginf(v), -1e300, v)
        if ok.sum() < 3:
            continue
        rho, tau = spearmanr(v[ok], t[ok])[0], kendalltau(v[ok], t[ok])[0]
        sec = (sum(seconds.get(m, np.nan) for m in FAST if m != "params") + seconds.get("params", np.nan)
               if n == "ensemble" else seconds.get(n, np.nan))
        pub = PUBLISHED.get(n)
        print(f"{n:<10} {int(ok.sum()):>5} {rho:>6.3f} {tau:>6.3f} {'' if pub is None else f'{pub:.2f}':>15} "
              f"{sec:>7.2f}")
    print(f"\nensemble = lowest z-score of log synflow, naswot, log params, standardised on 32 reference cells "
          f"(scored in {ref_s:.0f} s)")
    twelve = np.array([twelve_epoch[a] for a in ids])
    print(f"reference row: NB201's own 12-epoch accuracy, SRCC {spearmanr(twelve, t)[0]:.3f}, "
          f"tau {kendalltau(twelve, t)[0]:.3f} on these cells")
    predictor_rows(space, ids, t, scorer.zscores(raw), args.seed)


def predictor_rows(space, ids: list[str], t: np.ndarray, z: dict[str, np.ndarray], seed: int) -> None:
    """accuracy.source: predictor: fit on k cells' true accuracy, SRCC on the other sampled cells (5 splits)."""
    from orchestrator.latency.predictors import make_predictor
    from search_spaces.base import encode_ids

    zc = np.column_stack([z[n] for n in ("synflow", "naswot", "params")])
    enc = encode_ids(space, ids)
    feats = {"encoding": enc, "zero_cost": zc, "both": np.hstack([zc, enc])}
    print(f"\npredictor fit on k cells' 200-epoch accuracy, SRCC on the other {len(ids)} - k sampled cells "
          f"(mean +- sd over 5 splits)")
    print(f"{'k':>4} {'model':<9} " + " ".join(f"{f:>14}" for f in feats))
    for k in (20, 50, 100):
        if k >= len(ids) - 10:
            continue
        for model in ("additive", "mlp"):
            cells = []
            for X in feats.values():
                r = []
                for split in range(5):
                    perm = np.random.default_rng([seed, split]).permutation(len(ids))
                    tr, te = perm[:k], perm[k:]
                    params = {"seed": split} if model == "mlp" else {"alpha": 1.0}
                    m = make_predictor(model, **params).fit(X[tr], t[tr])
                    r.append(spearmanr(m.predict(X[te]), t[te])[0])
                cells.append(f"{np.mean(r):.3f} +- {np.std(r):.3f}")
            print(f"{k:>4} {model:<9} " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
