"""The zero-cost ensemble on a batch of digits vs on a batch of CIFAR-10, on the same random NB201 cells,
against the 200-epoch CIFAR-10 truth (issue 20, turn 7: what the default source should be for digits).

Reads the cells (and their CIFAR-10 raw scores) of ``bench/zero_cost_truth.py --out``: the first ``--n`` cells
of sample 1 (random, held out from the ensemble's choice); scores them again on 64 digits images (8x8
upscaled to 32, the pipeline's scorer: same seed, 32 reference cells), and prints both ensembles' SRCC with
the truth and with each other.

    python bench/zero_cost_digits.py bench/data/zero_cost_scores_t6.csv --n 150
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.zero_cost_truth import NPZ
from orchestrator.search.zero_cost import ENSEMBLE, make_scorer
from orchestrator.supernet.data import DataConfig
from search_spaces.nb201 import NB201Space

SCORES = Path(__file__).resolve().parent / "data" / "zero_cost_scores_t6.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", nargs="?", default=str(SCORES),
                    help="CSV of bench/zero_cost_truth.py (arch, sample, truth, params, synflow, naswot); default: "
                         "the 2,127 cells of turn 6 (bench/data)")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--sample", default="1")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.scores) as f:
        rows = [r for r in csv.DictReader(f) if r["sample"] == args.sample][: args.n]
    ids = [r["arch"] for r in rows]
    truth = np.array([float(r["test_acc_cifar10_200ep"]) for r in rows])
    space = NB201Space()
    cifar = make_scorer(space, "ensemble", DataConfig(name="npz", root=str(NPZ), max_train=5000), 64, 32, 0)
    zc = cifar.combine({p: np.array([float(r[p]) for r in rows]) for p in ENSEMBLE})
    t0 = time.perf_counter()
    digits = make_scorer(space, "ensemble", DataConfig(name="digits"), 64, 32, 0)
    raw = digits.raw(ids)
    zd = digits.combine(raw)
    print(f"{len(ids)} cells of sample {args.sample}, digits scored in {time.perf_counter() - t0:.0f}s; SRCC with "
          f"the 200-epoch CIFAR-10 accuracy: ensemble on digits {spearmanr(zd, truth)[0]:.3f}, on CIFAR-10 "
          f"{spearmanr(zc, truth)[0]:.3f}; naswot on digits {spearmanr(raw['naswot'], truth)[0]:.3f}; the two "
          f"ensembles with each other {spearmanr(zd, zc)[0]:.3f}")


if __name__ == "__main__":
    main()
