"""Summarise the per-target rows that ``bench/sweep_quality.py --jsonl FILE`` appended (runs split over several
invocations, or cut short: the table is of the rows present).

    python bench/sweep_quality_summary.py FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    rows = [json.loads(line) for f in args.files for line in Path(f).read_text().splitlines()
            if line.strip()]
    by_k: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_k[r["k"]].append(r)

    def q(v: list) -> str:
        v = [x for x in v if x is not None and np.isfinite(x)]
        return f"{np.mean(v):.3f}" if v else "-"

    print(f"{'method':<12}{'k':>4}{'rows':>6}{'seeds':>7}{'hv_ratio':>10}{'min hv':>8}{'loss q25':>10}{'loss q50':>10}"
          f"{'loss q75':>10}{'unserved':>10}{'adapt':>8}")
    for k, rs in sorted(by_k.items()):
        seeds = ",".join(str(s) for s in sorted({r["seed"] for r in rs}))
        for method, hv, un in (("sweep", "hv_ratio", "unserved_budgets"),
                               ("plain reuse", "hv_ratio_reuse", "unserved_budgets_reuse"),
                               ("pool", "pool_hv_ratio", None)):
            h = [r[hv] for r in rs]
            loss = [q([r.get(f"acc_loss_q{p}") for r in rs]) if method == "sweep" else "-" for p in (25, 50, 75)]
            unserved = str(int(sum(r.get(un) or 0 for r in rs))) if un else "-"
            adapt = f"{sum(r['decision'] == 'adapt' for r in rs)}/{len(rs)}" if method == "sweep" else "-"
            print(f"{method:<12}{k:>4}{len(rs):>6}{seeds:>7}{np.mean(h):>10.3f}{np.min(h):>8.3f}{loss[0]:>10}"
                  f"{loss[1]:>10}{loss[2]:>10}{unserved:>10}{adapt:>8}")
    for k, rs in sorted(by_k.items()):
        below = sorted({f"{r['target']} (seed {r['seed']})" for r in rs if r["hv_ratio"] < r["hv_ratio_reuse"] - 1e-9})
        targets = list(dict.fromkeys(r["target"] for r in rs))
        print(f"k={k}: hv_ratio per target (mean over its seeds): "
              + ", ".join(f"{t} {np.mean([r['hv_ratio'] for r in rs if r['target'] == t]):.3f}" for t in targets)
              + f"; below plain reuse: {', '.join(below) or '-'}")
        own = [r["seconds"] for r in rs]
        amort = [r["run_sweep_s"] / r["run_targets"] for r in rs]
        runs = {(r["proxy"], r["seed"]): r for r in rs}
        print(f"k={k}: seconds per target: its own steps (decision, transfer, whole-domain search, judging) mean "
              f"{np.mean(own):.1f} (max {np.max(own):.1f}); the sweep stage's wall over its targets (with the "
              f"meta-learning of each target's source set) mean {np.mean(amort):.1f}; proxy searches "
              + ", ".join(f"{p} (seed {sd}) {r['run_search_s']:.0f}s" for (p, sd), r in runs.items()))


if __name__ == "__main__":
    main()
