"""How good is the front the sweep chooses for a device nobody has seen? Leave-one-device-out on real data.

Each of the six shipped HW-NAS-Bench devices in turn is the only target; the
other five are the transfer sources, and the proxy is the one of those five
whose latency ranking agrees best with the other four (mean SRCC). Accuracy is
NAS-Bench-201's CIFAR-10 table, the domain the table's 1,999 cells. The real
pipeline (``run_pipeline``, MLflow off) runs once per (target, k, seed,
method); every figure is judged at the target's TRUE latency against its true
front over all 1,999 cells (``search.quality``; reference point: the front's
worst accuracy, 1.1 x its slowest latency; budgets at the 25/50/75 % quantiles
of the true front's latency).

Rows:
- ``sweep``: the default sweep (k along the proxy's front and spread, bound
  decision, ``multi`` from the five sources, whole-domain search per target);
- ``adaproxy``: the same with ``sources: proxy`` (the seed's AdaProxy);
- ``plain reuse``: the proxy search's own front, reused as it is (the seed's
  shortcut; ``hv_ratio_reuse`` of the same runs);
- ``pool``: the best any choice from what the default target chose from could do (coverage);
- ``per-device``: NSGA-II against the target's true latency with the same
  number of trials (``--trials``) of true measurements.

    python bench/sweep_quality.py [--ks 5 10 20] [--seeds 0 1 2] [--trials 400]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import optuna
import ray

from orchestrator.config import parse_config
from orchestrator.latency.monotonicity import srcc_matrix
from orchestrator.latency.table import SHIPPED_DEVICES, shipped_table
from orchestrator.pipeline import run_pipeline

FIGURES = ("hv_ratio", "acc_loss_q25", "acc_loss_q50", "acc_loss_q75", "unserved_budgets")


def proxy_for(target: str) -> str:
    rest = [d for d in SHIPPED_DEVICES if d != target]
    return srcc_matrix(shipped_table().select(rest)).proxy("mean")[0]


def run(work: Path, target: str, k: int, seed: int, trials: int, sources: str, per_device: bool) -> dict:
    cfg = parse_config({
        "name": f"{target}-k{k}-s{seed}-{sources}", "seed": seed, "output_dir": str(work / "runs"),
        "accuracy": {"source": "table"},
        "latency": {"table": "shipped", "proxy": proxy_for(target)},
        "search": {"algorithm": "nsga2", "n_trials": trials, "population": 40, "domain": "table"},
        "sweep": {"targets": [target], "k": k, "sources": sources, "per_device_search": per_device},
        "tracking": {"enabled": False},
    })
    s = run_pipeline(cfg, progress=False)
    return s["targets"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", nargs="+", default=list(SHIPPED_DEVICES))
    ap.add_argument("--trials", type=int, default=400, help="proxy search and per-device search trials")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="hwnas-sweep-quality-"))
    rows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    t0 = time.perf_counter()
    try:
        for k in args.ks:
            for target in args.targets:
                for seed in args.seeds:
                    r = run(work, target, k, seed, args.trials, "tabulated", per_device=True)
                    a = run(work, target, k, seed, args.trials, "proxy", per_device=False)
                    rows[("sweep", k)].append({f: r.get(f) for f in FIGURES} | {"target": target,
                                                                                "decision": r["decision"]})
                    rows[("adaproxy", k)].append({f: a.get(f) for f in FIGURES} | {"target": target,
                                                                                   "decision": a["decision"]})
                    rows[("plain reuse", k)].append({"hv_ratio": r["hv_ratio_reuse"],
                                                     "unserved_budgets": r["unserved_budgets_reuse"],
                                                     "target": target})
                    rows[("pool", k)].append({"hv_ratio": r["pool_hv_ratio"], "target": target})
                    rows[("per-device", k)].append({"hv_ratio": r["per_device_hv_ratio"],
                                                    "unserved_budgets": r["per_device_unserved_budgets"],
                                                    "target": target, "measurements": r["per_device_measurements"]})
                    print(f"k={k:3d} {target:8s} seed {seed}: sweep hv {r['hv_ratio']:.3f} ({r['decision']}), "
                          f"adaproxy {a['hv_ratio']:.3f}, plain reuse {r['hv_ratio_reuse']:.3f}, pool "
                          f"{r['pool_hv_ratio']:.3f}, per-device {r['per_device_hv_ratio']:.3f} "
                          f"[{time.perf_counter() - t0:.0f}s]", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def mean(vals: list, key: str) -> str:
        v = [x[key] for x in vals if x.get(key) is not None]
        return f"{np.mean(v):.3f}" if v else "-"

    print(f"\nleave-one-device-out over {len(args.targets)} shipped devices x seeds {args.seeds}; proxy search and "
          f"per-device search {args.trials} NSGA-II trials; truth = the target's whole table (1,999 cells)")
    print(f"{'method':<12}{'k':>4}{'hv_ratio':>10}{'min hv':>8}{'loss q25':>10}{'loss q50':>10}{'loss q75':>10}"
          f"{'unserved':>10}{'adapt':>7}")
    for (method, k), vals in sorted(rows.items(), key=lambda x: (x[0][1], x[0][0])):
        hv = [x["hv_ratio"] for x in vals]
        unserved = sum(x.get("unserved_budgets") or 0 for x in vals)
        n_adapt = sum(x.get("decision") == "adapt" for x in vals)
        print(f"{method:<12}{k:>4}{np.mean(hv):>10.3f}{np.min(hv):>8.3f}{mean(vals, 'acc_loss_q25'):>10}"
              f"{mean(vals, 'acc_loss_q50'):>10}{mean(vals, 'acc_loss_q75'):>10}"
              f"{unserved if method != 'pool' else '-':>10}"
              f"{(f'{n_adapt}/{len(vals)}' if method in ('sweep', 'adaproxy') else '-'):>7}")
    for k in args.ks:
        per = {t: np.mean([x["hv_ratio"] for x in rows[("sweep", k)] if x["target"] == t]) for t in args.targets}
        print(f"k={k}: sweep hv_ratio per target: " + ", ".join(f"{t} {v:.3f}" for t, v in per.items()))
    meas = [x["measurements"] for x in rows[("per-device", args.ks[0])]]
    print(f"per-device search measured {np.mean(meas):.0f} distinct cells per target on average; the sweep k")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
