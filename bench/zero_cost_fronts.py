"""Fronts chosen on zero-cost accuracy, judged at TRUE 200-epoch accuracy and TRUE latency (issue 20, turn 7).

For each device, the front over the scored NB201 cells on (estimated accuracy up, true latency down), judged
against the true front of all 15,625 cells (``orchestrator/search/front_truth.py``: the reference point and
budgets of ``search/quality.py``). Reports apart: **coverage** (the scored cells' own true front against the
whole space's) and **selection** (the estimate's front against the scored cells' true front); their product
is the chosen front's hv_ratio; accuracy lost at the q25/q50/q75 latency budgets of the true front.

Inputs: the raw scores ``bench/zero_cost_truth.py --out`` wrote (params, synflow, naswot per cell), turned into
the pipeline's estimates by its own scorer (``ZeroCostScorer``: each proxy standardised over the same 32
reference cells as the pipeline, on the same batch of CIFAR-10 training images). Then pools of 100 to 1,000
cells drawn from the scored ones (how many cells a run scores), and, with ``--run``, a pipeline run's own
fronts (``fronts/<device>.csv``) and the cells it scored (``evaluations.jsonl``).

    python bench/zero_cost_fronts.py bench/data/zero_cost_scores_t6.csv [--run runs/e2e/nb201_cifar_default]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch

from bench.zero_cost_truth import NPZ, TABLE
from orchestrator.search.front_truth import judge_estimate_front
from orchestrator.search.quality import reference_front
from orchestrator.search.zero_cost import ENSEMBLE, ZeroCostScorer, proxy_batch, transform
from orchestrator.supernet.data import DataConfig, load_dataset
from search_spaces.nb201 import NB201Space

SCORES = Path(__file__).resolve().parent / "data" / "zero_cost_scores_t6.csv"

DEVICES = ("pixel3", "gold_6240", "titanxp_1")  # a phone, a server CPU, a GPU (batch 1)
TRUTH = "test_acc_cifar10_200ep"
QS = (25, 50, 75)


def read_table(space: NB201Space, devices: list[str]) -> tuple[dict[str, int], np.ndarray, np.ndarray,
                                                                dict[str, np.ndarray]]:
    """(arch id -> row, 200-epoch accuracy (n,), 12-epoch accuracy (n,), true latency per device (n,))."""
    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    index = {space.arch_id(space.parse(r["arch"])): i for i, r in enumerate(rows)}
    truth = np.array([float(r[TRUTH]) for r in rows])
    acc12 = np.array([float(r["test_acc_cifar10_12ep"]) if r["test_acc_cifar10_12ep"] else np.nan for r in rows])
    lat = {d: np.array([float(r[f"lat_ms_{d}"]) if r[f"lat_ms_{d}"] else np.nan for r in rows]) for d in devices}
    return index, truth, acc12, lat


def estimates(space: NB201Space, scores: Path, index: dict[str, int], n: int, data: str, seed: int
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(indices of the scored cells, estimate name -> (n,) values, NaN where not scored)."""
    with scores.open() as f:
        rows = list(csv.DictReader(f))
    idx = np.array([index[space.arch_id(space.parse(r["arch"]))] for r in rows])
    raw = {p: np.array([float(r[p]) for r in rows]) for p in ENSEMBLE}
    ds = load_dataset(DataConfig(name="npz", root=data, max_train=5000, seed=seed))
    x, y = proxy_batch(ds, 64, seed)
    out: dict[str, np.ndarray] = {}
    for name in ("ensemble", "ensemble_mean"):
        v = np.full(n, np.nan)
        v[idx] = ZeroCostScorer(space, name, x, y, seed).combine(raw)  # the pipeline's value of the source
        out[name] = v
    for p in ENSEMBLE:
        v = np.full(n, np.nan)
        t = transform(p, raw[p])
        v[idx] = np.where(np.isfinite(t), t, -np.inf)  # a cell the proxy cannot score ranks last
        out[p] = v
    return idx, out


def fmt(q: dict[str, float], prefix: str = "") -> str:
    return "/".join(f"{q[f'{prefix}acc_loss_q{p}']:.2f}" for p in QS)


def run_fronts(run: Path, space: NB201Space, index: dict[str, int], truth: np.ndarray, lat: dict[str, np.ndarray],
               devices: list[str]) -> None:
    """A pipeline run's own fronts, and the front over the cells it scored, judged the same way."""
    scored: dict[str, float] = {}
    with (run / "evaluations.jsonl").open() as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                scored[space.arch_id(space.parse(r["arch"]))] = float(r["accuracy"])
    est = np.full(len(truth), np.nan)
    pool = np.array(sorted(index[a] for a in scored))
    est[pool] = [scored[a] for a in sorted(scored, key=lambda a: index[a])]
    print(f"\nthe run {run}: {len(pool)} cells scored; its fronts (fronts/<device>.csv) and the front over its "
          f"scored cells at true latency, judged at true accuracy and latency against all 15,625 cells")
    print(f"{'device':<11} {'front':<24} {'n':>3} {'hv_ratio':>8} {'coverage':>8} {'selection':>9} "
          f"{'lost q25/q50/q75':>18}")
    for d in devices:
        ref = reference_front(truth, lat[d])
        q = judge_estimate_front(est, truth, lat[d], pool, ref)
        path = run / "fronts" / f"{d}.csv"
        if path.is_file():
            with path.open() as f:
                members = np.array(sorted({index[space.arch_id(space.parse(r["arch"]))] for r in csv.DictReader(f)}))
            mark = np.full(len(truth), np.nan)
            mark[members] = truth[members]  # the run's chosen set: every member kept (its own choice)
            own = judge_estimate_front(mark, truth, lat[d], members, ref)
            print(f"{d:<11} {'the run (fronts/)':<24} {len(members):>3} {own['chosen_hv_ratio']:>8.3f} "
                  f"{q['coverage']:>8.3f} {own['chosen_hv_ratio'] / q['coverage']:>9.3f} {fmt(own, 'pool_'):>18}")
        print(f"{d:<11} {'scored cells, estimate':<24} {int(q['n_chosen']):>3} {q['chosen_hv_ratio']:>8.3f} "
              f"{q['coverage']:>8.3f} {q['selection']:>9.3f} {fmt(q):>18}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", nargs="?", default=str(SCORES),
                    help="CSV of bench/zero_cost_truth.py (arch, sample, params, synflow, naswot); default: the "
                         "2,127 cells of turn 6 (bench/data)")
    ap.add_argument("--devices", nargs="+", default=list(DEVICES))
    ap.add_argument("--data", default=str(NPZ), help="the images of the proxies' batch (the scores' own)")
    ap.add_argument("--seed", type=int, default=0, help="the proxies' seed (batch, reference cells)")
    ap.add_argument("--pools", type=int, nargs="+", default=[100, 200, 500, 1000], help="pool sizes drawn")
    ap.add_argument("--draws", type=int, default=50, help="random pools per size")
    ap.add_argument("--run", type=Path, help="a pipeline run dir (zero_cost source) whose fronts to judge too")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    space = NB201Space()
    all_devices = list(dict.fromkeys(args.devices))
    index, truth, acc12, lat = read_table(space, all_devices)
    idx, est = estimates(space, Path(args.scores), index, len(truth), args.data, args.seed)
    est["12-epoch accuracy (reference)"] = np.where(np.isin(np.arange(len(truth)), idx), acc12, np.nan)
    refs = {d: reference_front(truth, lat[d]) for d in all_devices}

    print(f"{len(idx)} scored cells of {len(truth):,}; fronts on the estimate and true latency, judged at true "
          f"{TRUTH} and true latency against the true front of all cells")
    print(f"{'device':<11} {'estimate':<30} {'chosen':>6} {'hv_ratio':>8} {'coverage':>8} {'selection':>9} "
          f"{'lost q25/q50/q75':>18} {'pool front lost':>16}")
    for d in all_devices:
        for name, v in est.items():
            q = judge_estimate_front(v, truth, lat[d], idx, refs[d])
            print(f"{d:<11} {name:<30} {int(q['n_chosen']):>6} {q['chosen_hv_ratio']:>8.3f} {q['coverage']:>8.3f} "
                  f"{q['selection']:>9.3f} {fmt(q):>18} {fmt(q, 'pool_'):>16}")
        print(f"{'':<11} budgets q25/q50/q75 (ms): " + "/".join(f"{b:.3g}" for b in refs[d].budgets)
              + f"; true front {len(refs[d].accuracy)} cells, best {refs[d].accuracy.max():.2f} %")

    print(f"\nrandom pools of the scored cells ({args.draws} draws per size, seed 0), the ensemble's front: "
          "mean (s.d.)")
    print(f"{'device':<11} {'pool':>5} {'hv_ratio':>14} {'coverage':>14} {'selection':>14} {'lost q50':>12}")
    rng = np.random.default_rng(0)
    for d in all_devices:
        for size in [s for s in args.pools if s < len(idx)]:
            rows = [judge_estimate_front(est["ensemble"], truth, lat[d], rng.choice(idx, size, replace=False),
                                         refs[d]) for _ in range(args.draws)]
            cols = {k: np.array([r[k] for r in rows]) for k in ("chosen_hv_ratio", "coverage", "selection",
                                                                  "acc_loss_q50")}
            loss = cols["acc_loss_q50"]
            print(f"{d:<11} {size:>5} " + " ".join(f"{f'{c.mean():.3f} ({c.std():.3f})':>14}"
                                                   for c in list(cols.values())[:3])
                  + f" {f'{loss.mean():.2f} ({loss.std():.2f})':>12}")
    if args.run is not None:
        run_fronts(args.run, space, index, truth, lat, all_devices)


if __name__ == "__main__":
    main()
