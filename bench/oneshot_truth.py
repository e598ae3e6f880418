"""One-shot NB201 on real CIFAR-10, judged against NAS-Bench-201's 200-epoch truth (issue 20).

Trains the NB201 supernet (sandwich rule, in-place distillation; reduced channels and cells: a CPU-sized
schedule) on the shared CIFAR-10 npz (training images only; a validation split carved from them), then
evaluates random cells of the whole space and cells of NB201's top 2,000 with inherited weights after
BatchNorm recalibration, and reports against ``test_acc_cifar10_200ep`` of
``orchestrator/data/nb201_full_15625.csv``: SRCC, Kendall tau and the top-5 % recall over the random cells
and over the top-2,000 ones separately, and the cost (seconds, training images seen). Then the product's
question: on three devices, the front chosen among the evaluated cells on one-shot accuracy and true latency,
judged at TRUE accuracy and TRUE latency against the true front over all 15,625 cells (hv_ratio, accuracy
lost at the budgets).

    python bench/oneshot_truth.py --images 20000 --epochs 5 --random 300 --top 100     # the issue's size
    python bench/oneshot_truth.py --images 2000 --epochs 1 --random 40 --top 20         # minutes on 2 cores
    python bench/oneshot_truth.py ... --few-shot-edge 2     # few-shot: 5 sub-supernets split on edge (2<-1)
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch

from orchestrator.search.front_truth import judge_estimate_front
from orchestrator.search.quality import reference_front
from orchestrator.search.ranking import rank_agreement
from orchestrator.supernet.data import DataConfig, load_dataset
from orchestrator.supernet.evaluate import EvalConfig, calibration_batches, evaluate_subnet
from orchestrator.supernet.spec import one_shot_space
from orchestrator.supernet.train import SupernetTrainer, TrainConfig
from search_spaces.base import SpaceSpec

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "orchestrator" / "data" / "nb201_full_15625.csv"
NPZ = ROOT.parent / "shared" / "data" / "cifar10_20k_10k.npz"
DEVICES = ("lat_ms_pixel3", "lat_ms_gold_6240", "lat_ms_titanxp_1")


def read_truth(space) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    ids = [space.arch_id(space.parse(r["arch"])) for r in rows]
    acc = np.array([float(r["test_acc_cifar10_200ep"]) for r in rows])
    lat = {d: np.array([float(r[d]) if r[d] else np.nan for r in rows]) for d in DEVICES}
    return ids, acc, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(NPZ))
    ap.add_argument("--images", type=int, default=20000, help="training images (of the npz's training split)")
    ap.add_argument("--channels", type=int, default=8, help="supernet channels (NB201: 16)")
    ap.add_argument("--cells", type=int, default=1, help="cells per stage (NB201: 5)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--n-random", type=int, default=1, help="random subnets per step (sandwich: besides largest "
                                                            "and smallest)")
    ap.add_argument("--sampling", choices=["sandwich", "uniform"], default="sandwich",
                    help="sandwich with in-place distillation (the product's default) or uniform (SPOS)")
    ap.add_argument("--random", type=int, default=300, help="random cells of the whole space evaluated")
    ap.add_argument("--top", type=int, default=100, help="cells of NB201's top 2,000 evaluated")
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--max-val", type=int, default=1000, help="validation images per cell")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda ('auto': CUDA if present; AMP + channels_last)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--few-shot-edge", type=int, help="few-shot supernet: split on this edge's op (0-5) into 5 "
                    "sub-supernets (Few-shot NAS, ICML 2021); unset: one supernet")
    ap.add_argument("--out", default="runs/oneshot_truth.csv")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    options = {"channels": args.channels, "cells_per_stage": args.cells, "num_classes": 10}
    if args.few_shot_edge is not None:
        options["few_shot_edge"] = args.few_shot_edge
    spec = SpaceSpec(name="nb201", options=options)
    space = one_shot_space(spec)
    ids, truth, lat = read_truth(space)
    data = load_dataset(DataConfig(name="npz", root=args.data, val_fraction=0.1, max_train=args.images,
                                   seed=args.seed))
    few = "" if args.few_shot_edge is None else f", few-shot: 5 sub-supernets split on edge {args.few_shot_edge}"
    print(f"{data}; supernet NB201 C={args.channels} N={args.cells}{few}, {args.epochs} epochs, batch "
          f"{args.batch_size}", flush=True)
    t0 = time.perf_counter()
    tr = SupernetTrainer(space, data, TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                                  n_random=args.n_random, seed=args.seed, device=args.device,
                                                  sampling=args.sampling))
    hist = tr.fit(save=False)["history"]
    train_s = time.perf_counter() - t0
    images_seen = args.epochs * (len(data.y_train) // args.batch_size) * args.batch_size
    print(f"device {tr.device}, amp {tr.amp}, channels_last {tr.channels_last}")
    per_step = 2 + args.n_random if args.sampling == "sandwich" else max(1, args.n_random)
    print(f"trained in {train_s:.0f}s ({images_seen} images, {per_step} subnets per step, {args.sampling}), last "
          f"loss {hist[-1]['loss']:.3f}", flush=True)

    rng = np.random.default_rng(args.seed)
    top2000 = np.argsort(-truth, kind="stable")[:2000]
    rand = rng.choice(len(ids), args.random, replace=False)
    top = rng.choice(top2000, args.top, replace=False)
    cells = list(dict.fromkeys([*map(int, rand), *map(int, top)]))
    top_set = set(map(int, top))
    cfg = EvalConfig(calib_batches=args.calib_batches, max_val=args.max_val, device=str(tr.device))
    calib = calibration_batches(data, cfg)
    est = np.full(len(ids), np.nan)
    t0 = time.perf_counter()
    for k, i in enumerate(cells):
        est[i] = 100 * evaluate_subnet(space, tr.net, space.parse(ids[i]), data, cfg, calib).accuracy
        if (k + 1) % 25 == 0:
            print(f"  evaluated {k + 1}/{len(cells)}", flush=True)
    eval_s = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "oneshot_acc", "test_acc_cifar10_200ep", "sample"])
        for i in cells:
            w.writerow([ids[i], f"{est[i]:.2f}", truth[i], "top2000" if i in top_set else "random"])

    print(f"\nevaluated {len(cells)} cells in {eval_s:.0f}s ({eval_s / len(cells):.2f} s/cell, "
          f"{args.calib_batches} calibration batches, {args.max_val} validation images each); wrote {out}\n")
    print(f"{'cells':<22} {'n':>4} {'SRCC':>6} {'tau':>6} {'top-5% recall':>14}")
    for name, sel in (("random (whole space)", rand), ("NB201 top 2,000", top)):
        m = rank_agreement(est[sel], truth[sel], 0.05)
        print(f"{name:<22} {int(m['n']):>4} {m['srcc']:>6.3f} {m['kendall_tau']:>6.3f} {m['top_recall']:>14.2f}")

    print("\nfronts chosen on one-shot accuracy among the evaluated cells, judged at true accuracy and latency "
          "against the true front of all 15,625 cells:")
    print(f"{'device':<18} {'hv_ratio':>8} {'acc lost q25/q50/q75':>22} {'hv_ratio (true acc)':>20}")
    sel = np.array(cells)
    for d in DEVICES:
        # the front on one-shot accuracy; coverage: the best any choice among these cells could do
        q = judge_estimate_front(est, truth, lat[d], sel, reference_front(truth, lat[d]))
        loss = "/".join(f"{q[f'acc_loss_q{p}']:.2f}" for p in (25, 50, 75))
        print(f"{d[7:]:<18} {q['chosen_hv_ratio']:>8.3f} {loss:>22} {q['coverage']:>20.3f}")
    print(f"\ncost: training {train_s:.0f}s on {args.threads} threads ({images_seen} images), evaluation "
          f"{eval_s:.0f}s")


if __name__ == "__main__":
    main()
