"""Fronts the SEARCH chooses on the zero-cost ensemble, judged at TRUE accuracy and TRUE latency (issue 20, turn 8).

``bench/zero_cost_fronts.py`` judged fronts chosen over a fixed pool of random scored cells. A user's run does not
score random cells: the pipeline's search (NSGA-II through Optuna, ``search/driver.py``) proposes the cells, and
each proposal is scored. This bench runs that search over the whole NB201 space, per device and seed, with the
objectives of a run that knows its device's latency: the pipeline's ``zero_cost`` source with ``proxy: ensemble``
(``ZeroCostAccuracy`` over ``ZeroCostScorer``, maximised) and the device's TRUE latency (the shared whole-space
table, minimised); population 20 and one generation per batch as the pipeline's defaults. It stops after the
generation in which the largest budget of scored cells is reached. For each budget B, the front over the first
B cells the search scored (what a run stopped there would hold: the driver's proposals are a function of the
seed and the trial's position, so a shorter run is a prefix of a longer one) is judged as
``bench/zero_cost_fronts.py`` judges (``search/front_truth.py``: hv_ratio = coverage x selection, accuracy lost
at the q25/q50/q75 latency budgets, against the true front of all 15,625 cells), beside random pools of B cells
drawn from the 2,127 random scored cells of turn 6 (the fixed-pool figure at the same cost).

Scoring costs ~1.3 s per cell on one core, so raw proxy values are cached: ``bench/data/zero_cost_scores_t6.csv``
(2,127 random cells) and ``--cache`` (default ``bench/data/zero_cost_scores_search_t8.csv``): every cell the
searches score that neither holds is scored with the same code, batch and seed as ``bench/zero_cost_truth.py``
(``score_cells``: 64 CIFAR-10 training images of the shared npz, C=16, N=5, initialisation seed 0) and appended
to ``--cache`` at once (flushed per cell), so an interrupted run continues where it stopped. ``--check N``
re-scores N cached cells of turn 6 first and prints the largest difference.

    nice python bench/zero_cost_search_fronts.py --budgets 200 500 1000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import optuna
import torch

from bench.zero_cost_fronts import DEVICES, SCORES, TRUTH, fmt
from bench.zero_cost_truth import NPZ
from orchestrator.search.accuracy import ZeroCostAccuracy
from orchestrator.search.driver import SearchDriver, make_sampler
from orchestrator.search.front_truth import judge_estimate_front
from orchestrator.search.quality import Reference, reference_front
from orchestrator.search.zero_cost import ENSEMBLE, ZeroCostScorer, proxy_batch, score_cells
from orchestrator.supernet.data import DataConfig, load_dataset
from search_spaces.nb201 import NB201Space

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SHARED_TABLE = ROOT.parent / "shared" / "data" / "nb201_full_15625.csv"
CACHE = Path(__file__).resolve().parent / "data" / "zero_cost_scores_search_t8.csv"
FIELDS = ("arch", *ENSEMBLE, "seconds")


class CachedScorer(ZeroCostScorer):
    """The pipeline's scorer whose raw proxy values come from CSV caches where they hold the cell; every other
    cell is scored by ``score_cells`` (as ``ZeroCostScorer.raw``) and appended to ``out`` at once."""

    def __init__(self, space: NB201Space, x: torch.Tensor, y: torch.Tensor, seed: int, caches: Sequence[Path],
                 out: Path) -> None:
        super().__init__(space, "ensemble", x, y, seed)
        self.cache: dict[str, dict[str, float]] = {}
        for path in [*caches, out]:
            if path.is_file():
                with path.open() as f:
                    for r in csv.DictReader(f):
                        try:
                            self.cache[space.arch_id(space.parse(r["arch"]))] = {n: float(r[n]) for n in ENSEMBLE}
                        except (TypeError, ValueError):  # a row cut short by a kill (ArchError is one): scored again
                            log.warning("%s: skipped a damaged row", path)
        self.out = out
        self.scored = 0
        self.seconds = 0.0
        self.hits = 0

    def raw(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        ids = list(arch_ids)
        new = [a for a in dict.fromkeys(ids) if a not in self.cache]
        self.hits += len(set(ids)) - len(new)
        if new:
            fresh = not self.out.is_file()
            torn = not fresh and not self.out.read_bytes().endswith(b"\n")
            with self.out.open("a", newline="") as f:
                if torn:  # a kill cut the last row short: the next row starts on a line of its own
                    f.write("\n")
                w = csv.writer(f)
                if fresh:
                    w.writerow(FIELDS)
                for a in new:
                    t0 = time.perf_counter()
                    v = score_cells(self.space, [a], self.x, self.y, list(ENSEMBLE), self.seed)
                    dt = time.perf_counter() - t0
                    self.cache[a] = {n: float(v[n][0]) for n in ENSEMBLE}
                    w.writerow([a, *(repr(self.cache[a][n]) for n in ENSEMBLE), f"{dt:.3f}"])
                    f.flush()
                    self.scored += 1
                    self.seconds += dt
                    if self.scored % 25 == 0:
                        print(f"    {self.scored} new cells scored ({self.seconds / self.scored:.2f} s/cell), "
                              f"{self.hits} from the cache", flush=True)
        return {n: np.array([self.cache[a][n] for a in ids]) for n in ENSEMBLE}


def first_cells(trials: Sequence[tuple[int, str]]) -> tuple[list[str], list[int]]:
    """(cells in the order the search first proposed them, the number of trials up to and including each
    cell's first proposal) from completed trials as (trial number, cell): cell i of the order is what a run of
    ``trials_needed[i]`` trials had scored last."""
    order: list[str] = []
    needed: list[int] = []
    seen: set[str] = set()
    for k, (_, a) in enumerate(sorted(trials)):
        if a not in seen:
            seen.add(a)
            order.append(a)
            needed.append(k + 1)
    return order, needed


def search(space: NB201Space, source: ZeroCostAccuracy, latency: Callable[[Sequence[str]], np.ndarray],
           cells: int, seed: int, population: int) -> tuple[list[str], list[int], float]:
    """NSGA-II of the pipeline (``SamplerSearch``: in-memory study, ``make_sampler``, batch = population) on
    (estimate up, latency down) over the whole space, one generation at a time until ``cells`` distinct cells
    are scored; returns ``first_cells`` of its trials and the seconds."""
    t0 = time.perf_counter()
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.sampler = make_sampler("nsga2", seed, population)
    driver = SearchDriver(study, space, source, latency, n_trials=population, batch_size=population)
    while True:
        found = driver.run()
        order, needed = first_cells([(c.number, c.arch_id) for c in found])
        if len(order) >= cells:
            return order, needed, time.perf_counter() - t0
        driver.n_trials += population


def random_pools(est: np.ndarray, truth: np.ndarray, lat: np.ndarray, idx: np.ndarray, ref: Reference,
                 size: int, draws: int) -> dict[str, float]:
    """Mean of the judged figures over ``draws`` random pools of ``size`` cells of ``idx`` (seed 0)."""
    rng = np.random.default_rng(0)
    rows = [judge_estimate_front(est, truth, lat, rng.choice(idx, size, replace=False), ref) for _ in range(draws)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", nargs="+", default=list(DEVICES))
    ap.add_argument("--budgets", type=int, nargs="+", default=[200, 500, 1000], help="scored cells")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="search seeds")
    ap.add_argument("--population", type=int, default=20, help="NSGA-II population (the pipeline's default)")
    ap.add_argument("--data", default=str(NPZ), help="the images of the proxies' batch (the caches' own)")
    ap.add_argument("--seed", type=int, default=0, help="the proxies' seed (batch, initialisation, reference cells)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="CSV of raw scores computed here (appended)")
    ap.add_argument("--read", type=Path, nargs="*", default=[], help="more caches to read (not written)")
    ap.add_argument("--check", type=int, default=3, help="re-score this many cached turn-6 cells first")
    ap.add_argument("--draws", type=int, default=50, help="random pools per budget")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    space = NB201Space()
    with SHARED_TABLE.open() as f:
        rows = list(csv.DictReader(f))
    ids = [space.arch_id(space.parse(r["arch"])) for r in rows]
    index = {a: i for i, a in enumerate(ids)}
    truth = np.array([float(r[TRUTH]) for r in rows])
    lat = {d: np.array([float(r[f"lat_ms_{d}"]) if r[f"lat_ms_{d}"] else math.nan for r in rows])
           for d in args.devices}
    for d, v in lat.items():
        if not np.isfinite(v).all():
            raise SystemExit(f"device {d}: {int((~np.isfinite(v)).sum())} cells without a latency in {SHARED_TABLE}; "
                             f"the search needs every cell's")
    ds = load_dataset(DataConfig(name="npz", root=args.data, max_train=5000, seed=args.seed))
    x, y = proxy_batch(ds, 64, args.seed)
    scorer = CachedScorer(space, x, y, args.seed, [SCORES, *args.read], args.cache)
    with SCORES.open() as f:
        t6 = [space.arch_id(space.parse(r["arch"])) for r in csv.DictReader(f)]
    print(f"cache: {len(scorer.cache):,} cells ({len(t6):,} of turn 6, the rest in {args.cache})", flush=True)
    if args.check:
        t0 = time.perf_counter()
        check = t6[:: max(1, len(t6) // args.check)][: args.check]
        again = score_cells(space, check, x, y, list(ENSEMBLE), args.seed)
        diff = max(abs(again[n][i] / scorer.cache[a][n] - 1) if scorer.cache[a][n] else abs(again[n][i])
                   for i, a in enumerate(check) for n in ENSEMBLE)
        print(f"check: {len(check)} turn-6 cells scored again, largest relative difference {diff:.2e} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        if diff > 1e-6:
            raise SystemExit("the scores differ from the cache's: not the same batch, seed or code")
    scorer.zscores({n: np.ones(1) for n in ENSEMBLE})  # the 32 reference cells, scored once
    source = ZeroCostAccuracy(space, scorer)  # the pipeline's accuracy source

    # the random-pool figure: the 2,127 random cells of turn 6 on the same estimate
    t6_idx = np.array([index[a] for a in t6])
    est_all = np.full(len(truth), np.nan)
    refs = {d: reference_front(truth, lat[d]) for d in args.devices}
    budgets = sorted(args.budgets)
    results: list[tuple[str, int, int, int, dict[str, float]]] = []
    for d in args.devices:
        def latency(q: Sequence[str], d: str = d) -> np.ndarray:
            return lat[d][[index[a] for a in q]]

        for seed in args.seeds:
            before = scorer.scored
            print(f"search {d} seed {seed}: to {budgets[-1]} scored cells", flush=True)
            order, needed, secs = search(space, source, latency, budgets[-1], seed, args.population)
            print(f"  {len(order)} cells in {needed[-1]} trials, {secs:.0f} s ({scorer.scored - before} newly "
                  f"scored)", flush=True)
            values = dict(source.evaluate(order))
            pool_all = np.array([index[a] for a in order])
            est_all[pool_all] = [values[a] for a in order]
            for b in budgets:
                q = judge_estimate_front(est_all, truth, lat[d], pool_all[:b], refs[d])
                results.append((d, seed, b, needed[b - 1], q))
                print(f"  {b:>5} cells ({needed[b - 1]} trials): hv_ratio {q['chosen_hv_ratio']:.3f} coverage "
                      f"{q['coverage']:.3f} selection {q['selection']:.3f} lost {fmt(q)}", flush=True)
    t6_est = np.full(len(truth), np.nan)
    t6_est[t6_idx] = source.scorer.combine({n: np.array([scorer.cache[a][n] for a in t6]) for n in ENSEMBLE})

    print(f"\nfronts on (zero-cost ensemble up, true latency down), judged at true {TRUTH} and true latency "
          f"against the true front of all {len(truth):,} cells; NSGA-II population {args.population}")
    print(f"{'device':<10} {'cells':>5} {'seed':>4} {'trials':>6} {'chosen':>6} {'hv_ratio':>8} {'coverage':>8} "
          f"{'selection':>9} {'lost q25/q50/q75':>18} {'pool front lost':>16}")
    for d in args.devices:
        for b in budgets:
            mine = [r for r in results if r[0] == d and r[2] == b]
            for _, seed, _, trials, q in mine:
                print(f"{d:<10} {b:>5} {seed:>4} {trials:>6} {int(q['n_chosen']):>6} {q['chosen_hv_ratio']:>8.3f} "
                      f"{q['coverage']:>8.3f} {q['selection']:>9.3f} {fmt(q):>18} {fmt(q, 'pool_'):>16}")
            m = {k: float(np.mean([r[4][k] for r in mine])) for k in mine[0][4]}
            print(f"{d:<10} {b:>5} {'mean':>4} {'':>6} {'':>6} {m['chosen_hv_ratio']:>8.3f} {m['coverage']:>8.3f} "
                  f"{m['selection']:>9.3f} {fmt(m):>18} {fmt(m, 'pool_'):>16}")
            if b < len(t6_idx):
                r = random_pools(t6_est, truth, lat[d], t6_idx, refs[d], b, args.draws)
                print(f"{d:<10} {b:>5} {'rand':>4} {'':>6} {r['n_chosen']:>6.0f} {r['chosen_hv_ratio']:>8.3f} "
                      f"{r['coverage']:>8.3f} {r['selection']:>9.3f} {fmt(r):>18} {fmt(r, 'pool_'):>16}")
        print(f"{'':<10} budgets q25/q50/q75 (ms): " + "/".join(f"{v:.3g}" for v in refs[d].budgets))
    print(f"\n'rand': mean over {args.draws} random pools of that many of the 2,127 random turn-6 cells (seed 0)")
    print(f"{scorer.scored} cells newly scored ({scorer.seconds:.0f} s, "
          f"{scorer.seconds / max(scorer.scored, 1):.2f} s/cell), cache now {len(scorer.cache):,} cells; "
          f"{time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
