"""Search efficiency on NB201 with the shipped tables: hypervolume reached vs architectures evaluated.

Objectives: NAS-Bench-201 CIFAR-10 test accuracy (maximise) and the FPGA's
measured latency (minimise), over the 1,999 cells of the shipped table, whose
exhaustive front is the reference. Every figure is the hypervolume of what was
*evaluated* (true accuracy and latency of each evaluated cell), divided by the
true front's hypervolume; the cost is the number of distinct cells evaluated
(what a supernet evaluation or a training run costs in practice).

- NSGA-II, multi-objective TPE, random: the search driver restricted to the
  table (proposals snap to the nearest cell), 3 seeds.
- MILP: an additive accuracy model fit on n randomly evaluated cells and the
  proxy's additive latency model (fit on its full table, as the pipeline does);
  the exact front of those models (epsilon-constraint integer programs over the
  table's cells) is then evaluated. Cost: n plus the front's new cells.

Part 2 stays in the models' world: NSGA-II on the *predicted* objectives over
the whole space (15,625 cells) against the MILP's exact predicted front.
Part 3 does the same in the elastic MobileNetV3 space (about 10^19
architectures): latency is an additive model fit to a SIMULATED device (sim:0)
on 300 sampled architectures; the second objective is a stand-in for accuracy,
an additive fit of log(FLOPs) (capacity), not a trained network's accuracy.

    python bench/search_efficiency.py [--seeds 3] [--trials 1500]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import optuna

from orchestrator.latency.predictors import make_predictor
from orchestrator.latency.table import shipped_accuracy, shipped_table
from orchestrator.search.accuracy import TableAccuracy
from orchestrator.search.driver import SearchDriver, TableDomain, make_sampler
from orchestrator.search.milp import milp_front, space_model, table_model
from orchestrator.search.pareto import hypervolume, pareto_mask
from search_spaces.base import encode_ids
from search_spaces.nb201 import NB201Space

CHECKPOINTS = [25, 50, 100, 200, 400]


class Additive:
    """Objective values of an additive model, as an accuracy source (part 2)."""

    name = "additive"

    def __init__(self, space: NB201Space, model) -> None:
        self.space, self.model = space, model

    def evaluate(self, ids):
        yield from zip(ids, map(float, self.model.predict(encode_ids(self.space, list(ids)))), strict=True)


def nsga2_vs_exact(space, acc_model, lat_model, ref: tuple[float, float], hv_exact: float,
                   trials: tuple[int, ...], seeds: int, population: int) -> None:
    """NSGA-II on two additive models' predictions: hypervolume over the exact MILP front's, per budget."""
    print(f"{'trials':>8} {'NSGA-II hv / exact':>20} {'front pts':>10} {'NSGA-II s':>10}")
    for n in trials:
        vals, secs, pts = [], [], []
        for seed in range(seeds):
            t0 = time.perf_counter()
            study = optuna.create_study(directions=["maximize", "minimize"],
                                        sampler=make_sampler("nsga2", seed, population))
            found = SearchDriver(study, space, Additive(space, acc_model),
                                 lambda a: lat_model.predict(encode_ids(space, list(a))),
                                 n_trials=n, batch_size=population).run()
            secs.append(time.perf_counter() - t0)
            found = list({c.arch_id: c for c in found}.values())  # repeats of one cell are one point
            fa, fl = np.array([c.accuracy for c in found]), np.array([c.latency_ms for c in found])
            vals.append(hypervolume(fa, fl, *ref) / hv_exact)
            pts.append(int(pareto_mask(fa, fl).sum()))
        print(f"{n:>8} {f'{np.mean(vals):.4f}+-{np.std(vals):.4f}':>20} {np.mean(pts):>10.0f} {np.mean(secs):>10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=1500)
    ap.add_argument("--device", default="fpga")
    ap.add_argument("--skip-part3", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = NB201Space()
    table = shipped_table(space, "nb201-hwnasbench")
    acc_tab = shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")
    ids, lat_true = table.measured(args.device)
    acc_true = np.array([acc_tab[a] for a in ids])
    lat_of = dict(zip(ids, lat_true, strict=True))
    ref = (float(acc_true.min()) - 1e-6, float(lat_true.max()) * 1.001)
    hv_true = hypervolume(acc_true, lat_true, *ref)
    n_front = int(pareto_mask(acc_true, lat_true).sum())
    print(f"NB201, {len(ids)} cells with {args.device} latency; true front {n_front} cells")

    def hv_of(evaluated: list[str]) -> float:
        return hypervolume([acc_tab[a] for a in evaluated], [lat_of[a] for a in evaluated], *ref) / hv_true

    results: dict[str, dict[int, list[float]]] = {}
    for alg in ("nsga2", "tpe", "random"):
        results[alg] = {c: [] for c in CHECKPOINTS}
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(alg, seed, 40))
            SearchDriver(study, space, TableAccuracy(space, acc_tab), lambda a: table.lookup(args.device, a),
                         n_trials=args.trials, batch_size=40, domain=TableDomain(space, ids)).run()
            order = list(dict.fromkeys(t.user_attrs["arch"] for t in sorted(study.trials, key=lambda t: t.number)
                                       if t.state == optuna.trial.TrialState.COMPLETE))
            for c in CHECKPOINTS:
                if len(order) >= c:
                    results[alg][c].append(hv_of(order[:c]))
        print(f"  {alg}: {time.perf_counter() - t0:.1f}s for {args.seeds} x {args.trials} trials", flush=True)

    lat_model = make_predictor("additive").fit(encode_ids(space, ids), lat_true)
    milp_rows = []
    tmodel = table_model(space, ids)
    for n_fit in (25, 50, 100, 200):
        hv, cost, secs, size = [], [], [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, n_fit])
            sample = [ids[i] for i in rng.choice(len(ids), n_fit, replace=False)]
            acc_model = make_predictor("additive").fit(encode_ids(space, sample),
                                                       np.array([acc_tab[a] for a in sample]))
            front = milp_front(tmodel, acc_model.coef_, acc_model.intercept_, lat_model.coef_,
                               lat_model.intercept_, max_points=400)
            evaluated = list(dict.fromkeys([*sample, *(p.arch_id for p in front.points)]))
            hv.append(hv_of(evaluated))
            cost.append(len(evaluated))
            secs.append(front.seconds)
            size.append(len(front.points))
        milp_rows.append((n_fit, float(np.mean(cost)), float(np.mean(hv)), float(np.std(hv)), float(np.mean(secs)),
                          float(np.mean(size))))

    print(f"\nhypervolume / true front's, vs distinct cells evaluated (mean +- std over {args.seeds} seeds; "
          f"'-': not reached in {args.trials} trials)")
    print(f"{'evaluated':>10}" + "".join(f"{a:>16}" for a in results))
    for c in CHECKPOINTS:
        cells = []
        for a in results:
            v = results[a][c]
            cells.append(f"{np.mean(v):.4f}+-{np.std(v):.4f}" if len(v) == args.seeds else "-")
        print(f"{c:>10}" + "".join(f"{x:>16}" for x in cells))
    print("\nMILP front of additive models (accuracy fit on n random cells, latency on the proxy table)")
    print(f"{'n fit':>6} {'evaluated':>10} {'hv ratio':>16} {'front':>6} {'solve s':>8}")
    for n_fit, cost, m, s, secs, size in milp_rows:
        print(f"{n_fit:>6} {cost:>10.0f} {f'{m:.4f}+-{s:.4f}':>16} {size:>6.0f} {secs:>8.2f}")

    # Part 2: the models' world over the whole space
    rng = np.random.default_rng(0)
    sample = [ids[i] for i in rng.choice(len(ids), 200, replace=False)]
    acc_model = make_predictor("additive").fit(encode_ids(space, sample), np.array([acc_tab[a] for a in sample]))
    t0 = time.perf_counter()
    exact = milp_front(space_model(space), acc_model.coef_, acc_model.intercept_, lat_model.coef_,
                       lat_model.intercept_, max_points=2000)
    t_milp = time.perf_counter() - t0
    ea = np.array([p.accuracy for p in exact.points])
    el = np.array([p.latency_ms for p in exact.points])
    # reference point: the worst predicted values over all 15,625 cells
    import itertools

    from search_spaces.nb201 import OPS

    all_ids = [space.arch_id({"ops": list(o)}) for o in itertools.product(OPS, repeat=6)]
    X = encode_ids(space, all_ids)
    pa, pl = acc_model.predict(X), lat_model.predict(X)
    ref2 = (float(pa.min()) - 1e-6, float(pl.max()) * 1.001)
    hv_exact = hypervolume(ea, el, *ref2)
    brute = int(pareto_mask(pa, pl).sum())
    print(f"\npart 2: predicted objectives over all 15,625 cells; exact MILP front {len(exact.points)} points "
          f"(brute force: {brute}) in {t_milp:.2f}s ({exact.solves} solves)")
    nsga2_vs_exact(space, acc_model, lat_model, ref2, hv_exact, (100, 400, 1600), args.seeds, 40)
    if not args.skip_part3:
        part3(args.seeds)


def part3(seeds: int) -> None:
    from orchestrator.latency.devices.simulated import SimulatedDevice, layer_profile
    from search_spaces.base import get_space

    space = get_space("mobilenetv3", resolution=32, num_classes=10)
    rng = np.random.default_rng(0)
    ids = list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(300)))
    X = encode_ids(space, ids)
    t0 = time.perf_counter()
    lat = SimulatedDevice(0, space).latency_ms(ids)
    flops = np.array([layer_profile(space, space.parse(a)).flops.sum() for a in ids])
    t_prof = time.perf_counter() - t0
    lat_model = make_predictor("additive").fit(X, lat)
    cap_model = make_predictor("additive").fit(X, np.log(flops))
    t0 = time.perf_counter()
    exact = milp_front(space_model(space), cap_model.coef_, cap_model.intercept_, lat_model.coef_,
                       lat_model.intercept_, grid=200)
    t_milp = time.perf_counter() - t0
    ea = np.array([p.accuracy for p in exact.points])
    el = np.array([p.latency_ms for p in exact.points])
    # a common reference point: the worst predicted values over the 300 sampled architectures
    pa, pl = cap_model.predict(X), lat_model.predict(X)
    ref = (float(pa.min()) - 1e-6, float(pl.max()) * 1.001)
    hv_exact = hypervolume(ea, el, *ref)
    print(f"\npart 3: MobileNetV3 (res 32), latency = additive fit to SIMULATED sim:0 ({len(ids)} archs profiled "
          f"in {t_prof:.0f}s), second objective = additive log-FLOPs stand-in")
    print(f"exact MILP front on a grid of 200 latency bounds: {len(exact.points)} points, {exact.solves} solves, "
          f"{t_milp:.1f}s ({exact.stats['n_vars']:.0f} binaries); NSGA-II below, hv against it")
    nsga2_vs_exact(space, cap_model, lat_model, ref, hv_exact, (400, 1600, 6400), seeds, 100)


if __name__ == "__main__":
    main()
