"""DNAS vs NSGA-II on NB201 at equal (and half) supernet-training compute, judged at the 200-epoch truth (issue 21).

Both methods search NB201 with a small supernet (C=8, N=1 by default) trained on the same few thousand
real CIFAR-10 images (the shared npz's training split, downscaled to ``--resolution``), against the same
latency model: the target device's additive predictor (``latency.predictor: additive``, fitted on the device's
latency of all 15,625 cells of ``orchestrator/data/nb201_full_15625.csv``).

- **NSGA-II** (the product's ``accuracy.source: supernet`` path): the supernet trained by the product's
  ``SupernetTrainer`` (sandwich rule: largest, smallest and ``--n-random`` random subnets per batch, in-place
  distillation), then ``run_search(..., "nsga2")`` over the whole space with each trial's accuracy the
  inherited-weight subnet's validation accuracy (BN recalibrated); its front is the non-dominated set of its
  trials on (one-shot accuracy, predicted latency).
- **DNAS** (``search.algorithm: dnas``): ``dnas_sweep`` on ``dnas_view(space)`` (NB201's 6 edges) with the
  view's per-edge latency table (fitted to the same predictor over all cells); its front is the set of
  architectures derived for the lambdas (one per lambda), judged as they are (no estimate needed to choose).

Compute is counted as **images forwarded** through the supernet: training images times subnets per batch
(NSGA-II: 2 + n_random per batch; DNAS: one sampled path per weight step and one mixed forward per
architecture step, counted as one image although a mixed forward runs every op of every edge), both with their
backward pass; evaluation images (forward only: BN calibration plus validation) are counted apart. Seconds of
each phase are printed too. Fronts are judged at ``test_acc_cifar10_200ep`` and the device's TRUE latency
against the true front of all 15,625 cells (``front_quality``: hv_ratio, accuracy lost at the budgets).

    OPENBLAS_NUM_THREADS=1 nice python bench/dnas_vs_nsga2.py --seeds 0 1 --lambdas 0 0.02 0.05 0.1 0.2 0.5
                                            # the docs' figures (docs/benchmarks.md, issue 21 turn 6): ~10 min

DNAS's collapse remedies: ``--skip-penalty MU [--collapse-ops ...]``, ``--aux-skip``; ``--nsga2-hv H0 H1`` reuses
NSGA-II's per-seed figures instead of rerunning it (docs/benchmarks.md, issue 21 turn 6b).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from orchestrator.latency.predictors import make_predictor
from orchestrator.search.algorithms import SearchProblem, SearchSettings, run_search
from orchestrator.search.dnas import DnasConfig, dnas_sweep, dnas_view
from orchestrator.search.pareto import pareto_front
from orchestrator.search.quality import front_quality, reference_front
from orchestrator.supernet.data import DataConfig, load_dataset
from orchestrator.supernet.evaluate import EvalConfig, calibration_batches, evaluate_subnet
from orchestrator.supernet.spec import one_shot_space
from orchestrator.supernet.train import SupernetTrainer, TrainConfig
from search_spaces.base import SpaceSpec, encode_ids

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "orchestrator" / "data" / "nb201_full_15625.csv"
NPZ = Path("/work/shared/data/cifar10_20k_10k.npz")


def read_truth(space, device: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    col = f"lat_ms_{device}"
    if col not in rows[0]:
        raise SystemExit(f"no column {col!r} in {TABLE.name}; devices: "
                         f"{', '.join(c[7:] for c in rows[0] if c.startswith('lat_ms_'))}")
    ids = [space.arch_id(space.parse(r["arch"])) for r in rows]
    acc = np.array([float(r["test_acc_cifar10_200ep"]) for r in rows])
    lat = np.array([float(r[col]) if r[col] else np.nan for r in rows])
    return ids, acc, lat


class OneShotAccuracy:
    """Accuracy source of the NSGA-II search: inherited-weight validation accuracy (%), counting images."""

    name = "supernet"

    def __init__(self, space, net, data, cfg: EvalConfig) -> None:
        self.space, self.net, self.data, self.cfg = space, net, data, cfg
        self.calib = calibration_batches(data, cfg)
        self.images = 0
        self.seconds = 0.0

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        for a in arch_ids:
            t0 = time.perf_counter()
            r = evaluate_subnet(self.space, self.net, self.space.parse(a), self.data, self.cfg, self.calib)
            self.seconds += time.perf_counter() - t0
            self.images += r.n_val + sum(len(b) for b in self.calib)
            yield a, 100.0 * float(r.accuracy)


def judge(ref, truth_of: dict[str, float], lat_of: dict[str, float], ids: Sequence[str]) -> dict[str, float]:
    ids = list(dict.fromkeys(ids))
    return front_quality(ref, [truth_of[a] for a in ids], [lat_of[a] for a in ids])


def nsga_rows(args, space, data, seed, latency, pred, ref, truth_of, lat_of, rows: list) -> None:
    """NSGA-II on the product's supernet: train it, search, append its row (front judged at the truth)."""
    t0 = time.perf_counter()
    tr = SupernetTrainer(space, data, TrainConfig(epochs=args.nsga_epochs, batch_size=args.batch_size,
                                                  lr=0.1, n_random=args.n_random, seed=seed, device="cpu"))
    tr.fit(save=False)
    train_s = time.perf_counter() - t0
    n_train = len(data.y_train)
    nsga_images = args.nsga_epochs * (n_train // args.batch_size) * args.batch_size * (2 + args.n_random)
    acc_src = OneShotAccuracy(space, tr.net, data, EvalConfig(calib_batches=args.calib_batches,
                                                              max_val=args.max_val, batch_size=256))
    problem = SearchProblem(space, acc_src, latency, latency_model=pred, label="nsga2 bench")
    t0 = time.perf_counter()
    res = run_search(problem, "nsga2", SearchSettings(n_trials=args.trials, population=args.population,
                                                      seed=seed))
    search_s = time.perf_counter() - t0
    cands = list({c.arch_id: c for c in res.candidates}.values())
    est = np.array([c.accuracy for c in cands])
    plat = np.array([c.latency_ms for c in cands])
    chosen = [cands[i].arch_id for i in pareto_front(est, plat)[0]]
    q = judge(ref, truth_of, lat_of, chosen)
    pool = judge(ref, truth_of, lat_of, [c.arch_id for c in cands])
    rows.append({"seed": seed, "method": "nsga2", "train_images": nsga_images, "eval_images": acc_src.images,
                 "train_s": train_s, "search_s": search_s, "n_front": len(chosen), **q,
                 "pool_hv_ratio": pool["hv_ratio"]})
    print(f"  nsga2: train {nsga_images} images {train_s:.0f}s; {len(cands)} cells evaluated "
          f"({acc_src.images} images, {search_s:.0f}s); front {len(chosen)}: hv_ratio {q['hv_ratio']:.3f} "
          f"(its evaluated pool at truth: {pool['hv_ratio']:.3f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(NPZ))
    ap.add_argument("--images", type=int, default=4000, help="training images of the npz (10 %% held out)")
    ap.add_argument("--resolution", type=int, default=16, help="images downscaled to this (CPU-sized)")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--cells", type=int, default=1)
    ap.add_argument("--device", default="pixel3", help="latency column of the NB201 table (lat_ms_<device>)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--nsga-epochs", type=int, default=3, help="supernet epochs of the NSGA-II side")
    ap.add_argument("--n-random", type=int, default=1)
    ap.add_argument("--trials", type=int, default=100, help="NSGA-II trials (each one subnet evaluated)")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--calib-batches", type=int, default=2)
    ap.add_argument("--max-val", type=int, default=400)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.3, 1.0, 3.0, 10.0, 30.0])
    ap.add_argument("--arch-lr", type=float, default=0.3)
    ap.add_argument("--dnas-budgets", type=float, nargs="+", default=[0.5, 1.0],
                    help="DNAS training images as shares of NSGA-II's")
    ap.add_argument("--expectation", choices=["table", "cells"], nargs="+", default=["table", "cells"],
                    help="DNAS latency term: the per-edge table's sum, or the exact expectation over all cells")
    ap.add_argument("--skip-penalty", type=float, default=0.0, help="DnasConfig.skip_penalty (0 = off)")
    ap.add_argument("--collapse-ops", nargs="+", default=None, help="DnasConfig.collapse_ops (None: the "
                                                                    "view's: none, skip_connect, avg_pool_3x3)")
    ap.add_argument("--aux-skip", action="store_true", help="DnasConfig.aux_skip (DARTS-'s auxiliary skip)")
    ap.add_argument("--nsga2-hv", type=float, nargs="+", default=None,
                    help="reuse NSGA-II's hv_ratio per seed (docs' figures, one per --seeds) instead of rerunning "
                         "it; its training images are then the formula's (same data and settings)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.nsga2_hv is not None and len(args.nsga2_hv) != len(args.seeds):
        ap.error(f"--nsga2-hv needs one figure per seed ({len(args.seeds)}), got {len(args.nsga2_hv)}")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    spec = SpaceSpec(name="nb201", options={"channels": args.channels, "cells_per_stage": args.cells,
                                            "num_classes": 10, "resolution": args.resolution})
    space = one_shot_space(spec)
    ids, truth, true_lat = read_truth(space, args.device)
    known = np.isfinite(true_lat)
    ref = reference_front(truth, true_lat)
    truth_of, lat_of = dict(zip(ids, truth, strict=True)), dict(zip(ids, true_lat, strict=True))
    pred = make_predictor("additive").fit(encode_ids(space, [a for a, k in zip(ids, known, strict=True) if k]),
                                          true_lat[known])

    def latency(q: Sequence[str]) -> np.ndarray:
        return np.asarray(pred.predict(encode_ids(space, list(q))), dtype=float)

    view = dnas_view(space)
    lut, base = view.latency_table(pred, latency, ids)
    cells = view.latency_cells(latency, ids)
    fit = lut[np.arange(6)[None, :], cells[0]].sum(axis=1) + base
    r2 = 1 - np.sum((fit - cells[1]) ** 2) / np.sum((cells[1] - cells[1].mean()) ** 2)
    print(f"per-edge table fitted to the predictor over all cells: R^2 {r2:.3f}")
    srcc = spearmanr(latency(ids)[known], true_lat[known])[0]
    print(f"device {args.device}: true front of {ref.n_domain} cells, {len(ref.accuracy)} points, hv {ref.hv:.3f}; "
          f"additive predictor SRCC vs truth {srcc:.3f}", flush=True)
    rows = []
    for seed in args.seeds:
        data = load_dataset(DataConfig(name="npz", root=args.data, resolution=args.resolution, val_fraction=0.1,
                                       max_train=args.images, seed=seed))
        n_train = len(data.y_train)
        print(f"\nseed {seed}: {data}", flush=True)

        nsga_images = args.nsga_epochs * (n_train // args.batch_size) * args.batch_size * (2 + args.n_random)
        if args.nsga2_hv is not None:
            hv = args.nsga2_hv[args.seeds.index(seed)]
            rows.append({"seed": seed, "method": "nsga2 (given)", "train_images": nsga_images, "eval_images": 0,
                         "train_s": 0.0, "search_s": 0.0, "n_front": 0, "hv_ratio": hv,
                         **{f"acc_loss_q{p}": float("nan") for p in (25, 50, 75)}})
            print(f"  nsga2: not rerun, hv_ratio {hv:.3f} given; {nsga_images} training images", flush=True)
        else:
            nsga_rows(args, space, data, seed, latency, pred, ref, truth_of, lat_of, rows)

        # DNAS at shares of NSGA-II's training images: a warm-up epoch, then per lambda the same number of steps
        n_w = int(round((1 - 0.2) * n_train))
        for share, term in itertools.product(args.dnas_budgets, args.expectation):
            target = share * nsga_images
            warm = n_w // args.batch_size * args.batch_size
            per_lambda = max(2 * args.batch_size, (target - warm) / len(args.lambdas))
            steps = max(1, int(per_lambda // (2 * args.batch_size)))  # a weight and an architecture step each
            epochs = max(1, int(np.ceil(steps / (n_w // args.batch_size))))
            cfg = DnasConfig(lambdas=list(args.lambdas), warmup_epochs=1, epochs=epochs,
                             max_steps=int(np.ceil(steps / epochs)), batch_size=args.batch_size, lr=0.05,
                             arch_lr=args.arch_lr, arch_fraction=0.2, tau_start=5.0, tau_end=0.5, device="cpu",
                             skip_penalty=args.skip_penalty, collapse_ops=args.collapse_ops, aux_skip=args.aux_skip)
            t0 = time.perf_counter()
            out = dnas_sweep(view, data, lut, base, cfg, seed=seed, cells=cells if term == "cells" else None)
            dnas_s = time.perf_counter() - t0
            images = out[0].warmup_images + sum(r.weight_images + r.arch_images for r in out)
            derived = [r.arch_id for r in out]
            q = judge(ref, truth_of, lat_of, derived)
            rows.append({"seed": seed, "method": f"dnas-{term} x{share:g}", "train_images": images, "eval_images": 0,
                         "train_s": dnas_s, "search_s": 0.0, "n_front": len(set(derived)), **q,
                         "pool_hv_ratio": q["hv_ratio"]})
            print(f"  dnas ({term}) at {share:g} x: {images} images ({images / nsga_images:.2f} of NSGA-II's; {epochs} "
                  f"epoch(s) x {cfg.max_steps} steps per lambda), {dnas_s:.0f}s; {len(set(derived))} distinct "
                  f"archs: hv_ratio {q['hv_ratio']:.3f}", flush=True)
            for r in out:
                print(f"    lambda {r.lam:g}: {r.arch_id} true acc {truth_of[r.arch_id]:.2f} true lat "
                      f"{lat_of[r.arch_id]:.3f} ms (expected {r.expected_latency_ms:.3f})", flush=True)

    print(f"\n{'method':<16} {'seed':>4} {'train images':>12} {'eval images':>11} {'train s':>7} {'search s':>8} "
          f"{'front':>5} {'hv_ratio':>8} {'acc lost q25/q50/q75':>22}")
    for r in rows:
        loss = "/".join(f"{r[f'acc_loss_q{p}']:.2f}" for p in (25, 50, 75))
        print(f"{r['method']:<16} {r['seed']:>4} {r['train_images']:>12} {r['eval_images']:>11} "
              f"{r['train_s']:>7.0f} {r['search_s']:>8.0f} {r['n_front']:>5} {r['hv_ratio']:>8.3f} {loss:>22}")
    print("\nmean over seeds (hv_ratio; DNAS / NSGA-II):")
    base_hv = np.mean([r["hv_ratio"] for r in rows if r["method"].startswith("nsga2")])
    for m in dict.fromkeys(r["method"] for r in rows):
        hv = np.mean([r["hv_ratio"] for r in rows if r["method"] == m])
        print(f"  {m:<16} {hv:.3f}  ratio to nsga2 {hv / base_hv:.3f}")


if __name__ == "__main__":
    main()
