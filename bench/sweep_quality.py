"""How good is the front the sweep chooses for a device nobody has seen? Leave-one-device-out on real data.

Each device of the latency table in turn is the only target; the others are
the transfer sources, and the proxy is the one of those others whose latency
ranking agrees best with the rest (mean SRCC). ``--table shipped`` (default):
NB201's whole space, 15,625 cells on HELP's 19 devices, 200-epoch CIFAR-10
accuracy; ``--table nb201-hwnasbench``: the 1,999-cell subset on HW-NAS-Bench's
six devices with its 12-epoch accuracy (the figures of issues 4-11). The real
pipeline (``run_pipeline``, MLflow off) runs once per (proxy, k, seed, variant)
for every target that proxy serves (targets do not depend on each other within
a run: the same figures as one run per target, fewer proxy searches); every
figure is judged at the target's TRUE latency against its true front over the
whole table (``search.quality``; reference point: the front's worst accuracy,
1.1 x its slowest latency; budgets at the 25/50/75 % quantiles of the true
front's latency).

Rows:
- ``sweep``: the default sweep (k along the proxy's front and spread, bound
  decision, ``multi`` from the other devices, whole-domain search per target);
- ``sweep+ref``: the same with ``--reference`` of the k being the fixed
  reference cells (sweep.reference_cells) instead of today's first picks;
- ``adaproxy``: ``sources: proxy`` (the seed's AdaProxy; ``--adaproxy``);
- ``plain reuse``: the proxy search's own front, reused as it is (the seed's
  shortcut; ``hv_ratio_reuse`` of the same runs);
- ``pool``: the best any choice from what the default target chose from could do (coverage);
- ``per-device``: NSGA-II against the target's true latency with the same
  number of trials (``--trials``) of true measurements (``--per-device``).

    python bench/sweep_quality.py [--table shipped] [--ks 5 10 20] [--seeds 0 1 2] [--trials 400]
        [--reference 5] [--adaproxy] [--per-device]
"""

from __future__ import annotations

import argparse
import json
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
from orchestrator.latency.table import shipped_table
from orchestrator.pipeline import run_pipeline

FIGURES = ("hv_ratio", "acc_loss_q25", "acc_loss_q50", "acc_loss_q75", "unserved_budgets")


def proxies(table: str, targets: list[str]) -> dict[str, list[str]]:
    """{proxy: the targets it serves}: for each target, the best of the other devices by mean SRCC."""
    t = shipped_table(name=table)
    out: dict[str, list[str]] = defaultdict(list)
    for target in targets:
        out[srcc_matrix(t.select([d for d in t.devices if d != target])).proxy("mean")[0]].append(target)
    return dict(out)


def run(work: Path, table: str, proxy: str, targets: list[str], k: int, seed: int, trials: int, sources: str,
        per_device: bool, reference: int) -> list[dict]:
    column = "test_acc_cifar10_12ep" if table == "nb201-hwnasbench" else "test_acc_cifar10_200ep"
    cfg = parse_config({
        "name": f"{proxy}-k{k}-s{seed}-{sources}-r{reference}", "seed": seed, "output_dir": str(work / "runs"),
        "accuracy": {"source": "table", "table_column": column},
        "latency": {"table": table, "proxy": proxy},
        "search": {"algorithm": "nsga2", "n_trials": trials, "population": 40, "domain": "table"},
        "sweep": {"targets": targets, "k": k, "sources": sources, "per_device_search": per_device,
                  "reference_cells": reference},
        "tracking": {"enabled": False},
    })
    s = run_pipeline(cfg, progress=False)
    t = s["timings"]
    print(f"    {cfg.name}: wall {s['wall_s']:.0f}s, proxy search {t.get('search_s', 0):.0f}s, sweep "
          f"{t.get('sweep_s', 0):.0f}s; per target: "
          + ", ".join(f"{r['target']} {r['seconds']:.0f}s" for r in s["targets"]), flush=True)
    return [r | {"run_wall_s": s["wall_s"], "run_search_s": t.get("search_s"), "run_sweep_s": t.get("sweep_s"),
                 "run_targets": len(s["targets"])} for r in s["targets"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="shipped", help="shipped (the whole space) or nb201-hwnasbench")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", nargs="+", default=None, help="default: every device of the table")
    ap.add_argument("--trials", type=int, default=400, help="proxy search and per-device search trials")
    ap.add_argument("--reference", type=int, default=0, help="sweep+ref: reference cells of the k (k/2 if larger)")
    ap.add_argument("--adaproxy", action="store_true")
    ap.add_argument("--per-device", action="store_true")
    ap.add_argument("--jsonl", default=None, help="also append each target's row (with its seconds) to this file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="hwnas-sweep-quality-"))
    targets = args.targets or list(shipped_table(name=args.table).devices)
    groups = proxies(args.table, targets)
    print("proxy per target: " + "; ".join(f"{p} for {', '.join(ts)}" for p, ts in groups.items()), flush=True)
    rows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    t0 = time.perf_counter()
    try:
        for k in args.ks:
            for seed in args.seeds:
                for proxy, ts in groups.items():
                    t1 = time.perf_counter()
                    res = run(work, args.table, proxy, ts, k, seed, args.trials, "tabulated", args.per_device, 0)
                    print(f"k={k} seed {seed} proxy {proxy}: {len(ts)} targets in {time.perf_counter() - t1:.0f}s",
                          flush=True)
                    if args.jsonl:
                        with open(args.jsonl, "a") as fh:
                            for r in res:
                                fh.write(json.dumps({"k": k, "seed": seed, "proxy": proxy, "method": "sweep"} | r,
                                                    default=float) + "\n")
                    for r in res:
                        rows[("sweep", k)].append({f: r.get(f) for f in FIGURES} | {"target": r["target"],
                                                                                    "decision": r["decision"],
                                                                                    "seconds": r["seconds"]})
                        rows[("plain reuse", k)].append({"hv_ratio": r["hv_ratio_reuse"],
                                                         "unserved_budgets": r["unserved_budgets_reuse"],
                                                         "target": r["target"]})
                        rows[("pool", k)].append({"hv_ratio": r["pool_hv_ratio"], "target": r["target"]})
                        if args.per_device:
                            rows[("per-device", k)].append({"hv_ratio": r["per_device_hv_ratio"],
                                                            "unserved_budgets": r["per_device_unserved_budgets"],
                                                            "target": r["target"],
                                                            "measurements": r["per_device_measurements"]})
                    variants = []
                    if args.reference:
                        variants.append(("sweep+ref", "tabulated", min(args.reference, k // 2)))
                    if args.adaproxy:
                        variants.append(("adaproxy", "proxy", 0))
                    for label, sources, ref in variants:
                        for r in run(work, args.table, proxy, ts, k, seed, args.trials, sources, False, ref):
                            rows[(label, k)].append({f: r.get(f) for f in FIGURES} | {"target": r["target"],
                                                                                      "decision": r["decision"]})
                    print(f"  [{time.perf_counter() - t0:.0f}s]", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def mean(vals: list, key: str) -> str:
        v = [x[key] for x in vals if x.get(key) is not None]
        return f"{np.mean(v):.3f}" if v else "-"

    n_cells = len(shipped_table(name=args.table).archs)
    print(f"\nleave-one-device-out over {len(targets)} devices of {args.table} x seeds {args.seeds}; proxy search "
          f"{args.trials} NSGA-II trials; truth = the target's whole table ({n_cells:,} cells); sweep+ref: "
          f"{args.reference} of the k are reference cells (k/2 at most)")
    print(f"{'method':<12}{'k':>4}{'hv_ratio':>10}{'min hv':>8}{'loss q25':>10}{'loss q50':>10}{'loss q75':>10}"
          f"{'unserved':>10}{'adapt':>7}")
    for (method, k), vals in sorted(rows.items(), key=lambda x: (x[0][1], x[0][0])):
        hv = [x["hv_ratio"] for x in vals]
        unserved = sum(x.get("unserved_budgets") or 0 for x in vals)
        n_adapt = sum(x.get("decision") == "adapt" for x in vals)
        print(f"{method:<12}{k:>4}{np.mean(hv):>10.3f}{np.min(hv):>8.3f}{mean(vals, 'acc_loss_q25'):>10}"
              f"{mean(vals, 'acc_loss_q50'):>10}{mean(vals, 'acc_loss_q75'):>10}"
              f"{unserved if method != 'pool' else '-':>10}"
              f"{(f'{n_adapt}/{len(vals)}' if 'decision' in vals[0] else '-'):>7}")
    for k in args.ks:
        for method in ("sweep", "sweep+ref"):
            if (method, k) not in rows:
                continue
            per = {t: np.mean([x["hv_ratio"] for x in rows[(method, k)] if x["target"] == t]) for t in targets}
            reuse = {t: np.mean([x["hv_ratio"] for x in rows[("plain reuse", k)] if x["target"] == t])
                     for t in targets}
            below = [t for t in targets if per[t] < reuse[t] - 1e-9]
            print(f"k={k} {method}: hv_ratio per target: " + ", ".join(f"{t} {v:.3f}" for t, v in per.items())
                  + f"; below plain reuse on {len(below)}: {', '.join(below) or '-'}")
    for k in args.ks:
        sec = [x["seconds"] for x in rows[("sweep", k)]]
        if sec:
            print(f"k={k}: seconds per target (sweep stage, measuring + transfer + whole-domain search): mean "
                  f"{np.mean(sec):.1f}, median {np.median(sec):.1f}, max {np.max(sec):.1f}")
    if args.per_device:
        meas = [x["measurements"] for x in rows[("per-device", args.ks[0])]]
        print(f"per-device search measured {np.mean(meas):.0f} distinct cells per target on average")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
