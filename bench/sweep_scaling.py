"""Cost of the one-proxy sweep as the number of target devices grows, against per-device search.

Runs the real pipeline (`run_pipeline`: search once on the proxy, then k
measurements, SRCC decision and transfer per target, files and MLflow records)
on NB201 with the shipped tables, for sweeps of N target devices: the five
other tabulated devices plus N-5 SIMULATED roofline devices (N=1: one tabulated
device). All sweeps share one local Ray and run side by side in one process.

Per-device search, the baseline, is a full search (same algorithm and budget)
per target with its ground-truth latency; it is run for real up to
--baseline-max devices and its mean cost per device is reported beside it for
larger N (marked as extrapolated).

    python bench/sweep_scaling.py [--sizes 1 8 64 256] [--trials 400] [--baseline-max 64]
    python bench/sweep_scaling.py --table shipped --sizes 1 64 --baseline-max 0 --no-tracking   # whole space
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import ray

from orchestrator.config import parse_config
from orchestrator.latency.predictors import make_predictor
from orchestrator.latency.simulator import SimulatedDevice, clear_profile_cache
from orchestrator.latency.table import shipped_accuracy, shipped_table
from orchestrator.pipeline import run_pipeline
from orchestrator.search.accuracy import TableAccuracy
from orchestrator.search.driver import SearchDriver, TableDomain, make_sampler
from search_spaces.base import encode_ids
from search_spaces.nb201 import NB201Space

TABULATED = ["edgegpu", "edgetpu", "eyeriss", "pixel3", "raspi4"]  # fpga is the proxy


def targets_for(n: int, simulated_only: bool = False) -> tuple[list[str], int]:
    """N=1: one simulated device; else the five tabulated ones and N-5 simulated ones (``simulated_only``: N
    simulated ones, all sharing the table's devices as their transfer sources)."""
    if n == 1 or simulated_only:
        return [], 1
    tab = TABULATED[:n]
    return tab, n - len(tab)


def per_device_search(space: NB201Space, name: str, trials: int, population: int, seed: int) -> tuple[float, int]:
    """One full NSGA-II search against the device's true latency; returns (seconds, cells measured)."""
    table = shipped_table(space, "nb201-hwnasbench")
    acc = TableAccuracy(space, shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench"))
    if name.startswith("sim:"):
        latency = SimulatedDevice(int(name[4:]), space).latency_ms
    else:  # the table's values; an additive model where the device column has gaps (edgetpu)
        ids, y = table.measured(name)
        model = make_predictor("additive").fit(encode_ids(space, ids), y)

        def latency(a):
            t = table.lookup(name, a)
            return np.where(np.isnan(t), model.predict(encode_ids(space, list(a))), t)
    t0 = time.perf_counter()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("nsga2", seed, population))
    found = SearchDriver(study, space, acc, latency, n_trials=trials, batch_size=population,
                         domain=TableDomain(space, table.archs)).run()
    return time.perf_counter() - t0, len({c.arch_id for c in found})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 256])
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--population", type=int, default=40)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--baseline-max", type=int, default=64)
    ap.add_argument("--no-tracking", action="store_true", help="leave MLflow out of the timed sweep")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (run dirs, MLflow store)")
    ap.add_argument("--table", default="nb201-hwnasbench",
                    help="nb201-hwnasbench (1,999 cells, proxy fpga) or shipped (the whole space, 15,625 cells, HELP's "
                         "19 devices as sources, 200-epoch accuracy; implies --simulated-only)")
    ap.add_argument("--proxy", default=None, help="default: fpga (nb201-hwnasbench), pixel3 (shipped)")
    ap.add_argument("--simulated-only", action="store_true", help="every target a simulated device")
    args = ap.parse_args()
    whole = args.table != "nb201-hwnasbench"
    proxy = args.proxy or ("pixel3" if whole else "fpga")
    column = "test_acc_cifar10_200ep" if whole else "test_acc_cifar10_12ep"
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    space = NB201Space()
    work = Path(tempfile.mkdtemp(prefix="hwnas-sweep-bench-"))
    print(f"Ray CPUs: {ray.cluster_resources().get('CPU')}; work dir {work}")
    rows = []
    for n in args.sizes:
        tab, sims = targets_for(n, args.simulated_only or whole)
        cfg = parse_config({
            "name": f"sweep{n}", "seed": 0, "output_dir": str(work / "runs"),
            "accuracy": {"source": "table", "table_column": column},
            "latency": {"table": args.table, "proxy": proxy},
            "search": {"algorithm": "nsga2", "n_trials": args.trials, "population": args.population,
                       "domain": "table"},
            "sweep": {"targets": tab, "simulated": sims, "k": args.k},
            "tracking": {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "bench",
                         "enabled": not args.no_tracking},
        })
        clear_profile_cache()  # each sweep pays the simulator's per-candidate profiling, as alone
        t0 = time.perf_counter()
        s = run_pipeline(cfg, progress=False)
        wall = time.perf_counter() - t0
        rows.append({"n": n, "wall": wall, "search": s["timings"]["search_s"], "sweep": s["timings"]["sweep_s"],
                     "meas": s["target_measurements"],
                     "sources": s["timings"].get("sources_s", 0.0), "reuse": s["n_reuse"], "adapt": s["n_adapt"],
                     "hv": s["mean_hv_ratio"]})
        parts = {k: round(v, 1) for k, v in s["timings"].items() if k.endswith("_s")}
        print(f"  N={n:4d}: {wall:6.1f}s (search {rows[-1]['search']:.1f}s, sweep {rows[-1]['sweep']:.1f}s, "
              f"{rows[-1]['sweep'] / n:.2f}s of sweep per target); {parts}", flush=True)
    if args.baseline_max == 0:  # the sweep's scaling alone
        base = rows[0]
        for r in rows[1:]:  # per-target cost: the sweep stage less the one meta-learning of the shared source set
            per = (r["sweep"] - r["sources"]) / r["n"]
            goal = 2 * (base["wall"] + r["n"] * per)
            print(f"N={r['n']}: {r['wall']:.1f}s = {r['wall'] / base['wall']:.2f} x N=1's {base['wall']:.1f}s; "
                  f"per-target cost {per:.2f}s; goal 2 x (N=1 + N x per-target) = {goal:.1f}s: "
                  f"{'met' if r['wall'] <= goal else 'NOT met'}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return
    # the baseline: a full search per target
    names = ["sim:0"] if max(args.sizes) == 1 else [*TABULATED, *(f"sim:{i}" for i in range(max(args.sizes)))]
    per: list[float] = []
    per_meas: list[int] = []
    for name in names[:args.baseline_max]:
        if name == "sim:0":  # the first simulated device pays the profiling, as it would alone
            clear_profile_cache()
        sec, meas = per_device_search(space, name, args.trials, args.population, 0)
        per.append(sec)
        per_meas.append(meas)
    mean_per = float(np.mean(per))
    mean_meas = float(np.mean(per_meas))
    if "sim:0" in names[:len(per)]:
        per_sim0, meas_sim0 = per[names.index("sim:0")], per_meas[names.index("sim:0")]
    else:
        clear_profile_cache()
        per_sim0, meas_sim0 = per_device_search(space, "sim:0", args.trials, args.population, 0)
    base = rows[0]["wall"]
    print(f"\nsweep of N targets, NB201 (shipped tables), proxy fpga, NSGA-II x {args.trials} trials once, "
          f"k={args.k} per target, MLflow {'off' if args.no_tracking else 'on'}")
    print(f"{'N':>5} {'wall s':>8} {'x N=1':>6} {'search s':>9} {'sweep s':>8} {'target meas':>12} "
          f"{'reuse/adapt':>12} {'mean hv':>8} {'per-device search s':>20} {'its meas':>9}")
    for r in rows:
        n = r["n"]
        if n == 1:
            pd, pm = f"{per_sim0:.1f}", f"{meas_sim0}"
        elif n <= len(per):
            pd, pm = f"{sum(per[:n]):.1f}", f"{sum(per_meas[:n])}"
        else:
            pd, pm = f"~{mean_per * n:.0f} (extrap.)", f"~{mean_meas * n:.0f}"
        hv = f"{r['hv']:.3f}" if r["hv"] is not None else "-"
        print(f"{n:>5} {r['wall']:8.1f} {r['wall'] / base:6.2f} {r['search']:9.1f} {r['sweep']:8.1f} "
              f"{r['meas']:>12} {r['reuse']:>5}/{r['adapt']:<6} {hv:>8} {pd:>20} {pm:>9}")
    if args.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"per-device search: {mean_per:.2f}s and {mean_meas:.0f} cells measured per device (mean of {len(per)} "
          f"real runs of {args.trials} trials); the sweep measures k={args.k} per device")


if __name__ == "__main__":
    main()
