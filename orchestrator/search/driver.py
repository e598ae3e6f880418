"""The search driver: Optuna ask/tell over a search space, evaluation elsewhere.

Objectives: accuracy (maximise), latency on one device (minimise) and optional
extra costs of the network (``search.objectives``: parameters, MACs, peak
activation memory; minimised). A latency budget and cost limits
(``search.constraints``) are Optuna constraints (``trial.set_constraint``;
NSGA-II's constrained domination and TPE read them). The driver asks a batch of
trials, gets their latencies in one call to the device's latency service, sends
the architectures it has not seen to the accuracy source (a Ray actor pool for
the supernet) and tells each trial as its accuracy arrives. Only the driver
touches the Optuna storage.

No work is done twice: an architecture proposed again (NSGA-II does that, and
table-restricted search snaps many proposals to one row) is told from the
evaluation log, which also survives a killed driver. The sampler's random state
is set before each trial from (seed, the trial's position: trials before it that
did not fail), and NSGA-II's elite population and each generation's parents
are ordered by value, not by trial number, so a driver resumed after a kill (its dead trials failed and re-queued)
proposes what the uninterrupted driver would have: the same seed, the same run.
A continued study does not replay its first proposals (positions differ).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from orchestrator.errors import ConfigError
from orchestrator.registry import Registry
from orchestrator.search.accuracy import AccuracySource
from orchestrator.search.storage import REQUEUED_FROM, EvalLog
from search_spaces.base import SearchSpace, encode_ids
from search_spaces.costs import CostModel

log = logging.getLogger(__name__)

ARCH_ATTR = "arch"
BUDGET_KEY = "latency_budget"
VIOLATION_ATTR = "violation"  # the largest constraint value (<= 0: feasible)

SAMPLERS: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("search algorithm")


@SAMPLERS.register("nsga2", help="NSGA-II (Deb et al. 2002): elitist genetic search, crowding distance")
def _nsga2(seed: int, population: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


@SAMPLERS.register("tpe", help="multi-objective TPE (Ozaki et al. 2020): a baseline")
def _tpe(seed: int, population: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=population, multivariate=True)


@SAMPLERS.register("random", help="uniform random sampling: the baseline every search must beat")
def _random(seed: int, population: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def make_sampler(name: str, seed: int, population: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name``, reproducible across a resume (:class:`ReproducibleSampler`)."""
    s = int(np.random.SeedSequence([seed]).generate_state(1)[0])
    return ReproducibleSampler(SAMPLERS.get(name)(s, population), seed)


def _canonical_key(t: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    return tuple(t.values or ()), sorted((k, repr(v)) for k, v in t.params.items())


class ReproducibleSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler whose proposal for a trial depends on the seed, the trial's position and the study's
    results, not on the process history: before each trial its random states (the sampler's and its inner
    random sampler's) are set from ``SeedSequence([seed, position])``, where position = trials before it that
    did not fail (a trial a killed driver left RUNNING is failed and re-queued on resume, so the uninterrupted
    and the resumed study number their live trials alike); NSGA-II's elite selection sees its population
    ordered by (values, parameters) instead of trial numbers (re-queued trials get new numbers), and so do the
    parents a child is bred from (Optuna returns a generation's cached parents in trial-number order, so a kill
    in generation >= 2 gave the resumed study's children other parents at the same random draw), and every
    trial gets its generation when it is asked (a re-queued one too)."""

    def __init__(self, inner: optuna.samplers.BaseSampler, seed: int) -> None:
        self.inner = inner
        self.seed = seed
        elite = getattr(inner, "_elite_population_selection_strategy", None)
        if elite is not None:
            inner._elite_population_selection_strategy = (  # type: ignore[attr-defined]
                lambda study, population: elite(study, sorted(population, key=_canonical_key)))
        parents = getattr(inner, "get_parent_population", None)
        if parents is not None:  # Optuna returns a generation's cached parents by trial number (not as selected)
            inner.get_parent_population = (  # type: ignore[method-assign]
                lambda study, generation: sorted(parents(study, generation), key=_canonical_key))

    def _reseed(self, position: int) -> None:
        states = np.random.SeedSequence([self.seed, position]).generate_state(2)
        for owner, st in ((self.inner, states[0]), (getattr(self.inner, "_random_sampler", None), states[1])):
            lazy = getattr(owner, "_rng", None)
            if lazy is not None and hasattr(lazy, "rng"):
                lazy.rng.seed(int(st))

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        position = sum(1 for t in study.get_trials(deepcopy=False)
                       if t.number < trial.number and t.state != TrialState.FAIL)
        self._reseed(position)
        self.inner.before_trial(study, trial)
        if hasattr(self.inner, "get_trial_generation"):  # a GA's generation, also for a re-queued trial (fixed
            self.inner.get_trial_generation(study, trial)  # parameters: Optuna would never ask the sampler)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        # the trial as stored now: with the generation set in before_trial (Optuna's snapshot predates it)
        return self.inner.sample_relative(study, study._storage.get_trial(trial._trial_id), search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class TableDomain:
    """Restrict candidates to a finite set (a latency table's rows): a proposal snaps to the
    nearest member by L1 distance between encodings (ties: first in the set)."""

    def __init__(self, space: SearchSpace, arch_ids: Sequence[str], X: np.ndarray | None = None) -> None:
        if not arch_ids:
            raise ConfigError("search.domain 'table': the table has no architectures")
        self.ids = list(arch_ids)
        self._index = {a: i for i, a in enumerate(self.ids)}
        self.X = encode_ids(space, self.ids) if X is None else np.asarray(X, dtype=np.float32)
        self.space = space

    def snap(self, arch_id: str) -> str:
        if arch_id in self._index:
            return arch_id
        x = encode_ids(self.space, [arch_id])[0]
        return self.ids[int(np.abs(self.X - x).sum(axis=1).argmin())]


@dataclass(frozen=True)
class Candidate:
    number: int
    arch_id: str
    accuracy: float
    latency_ms: float
    feasible: bool
    extra: tuple[float, ...] = ()  # the search's extra objectives, in order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def extra_matrix(cands: Sequence[Candidate]) -> np.ndarray:
    """The candidates' extra objectives as an (n, m) array (m = 0 without extra objectives)."""
    m = len(cands[0].extra) if cands else 0
    return np.array([c.extra for c in cands], dtype=float).reshape(len(cands), m)


def candidates(study: optuna.Study, budget_ms: float | None = None) -> list[Candidate]:
    """Completed trials as candidates, by trial number (feasible: within the budget and every constraint)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        acc, lat, *extra = t.values
        ok = (budget_ms is None or lat <= budget_ms) and t.user_attrs.get(VIOLATION_ATTR, 0.0) <= 0
        out.append(Candidate(t.number, t.user_attrs[ARCH_ATTR], float(acc), float(lat), ok,
                             tuple(float(v) for v in extra)))
    return sorted(out, key=lambda c: c.number)


@dataclass
class SearchStats:
    asked: int = 0
    told: int = 0
    evaluated: int = 0
    from_log: int = 0  # trials answered from the evaluation log, of which:
    logged_before: int = 0  # ... architectures already in the log when this search began (a resume, an earlier stage)
    seconds: float = 0.0


class SearchDriver:
    """Run a study until it holds ``n_trials`` completed trials.

    ``latency(arch_ids) -> ms`` is one batched call (the device's latency
    service); ``accuracy`` streams results. ``domain`` restricts candidates.
    """

    def __init__(self, study: optuna.Study, space: SearchSpace, accuracy: AccuracySource,
                 latency: Callable[[Sequence[str]], np.ndarray], *, n_trials: int, batch_size: int,
                 latency_budget_ms: float | None = None, domain: TableDomain | None = None,
                 eval_log: EvalLog | None = None, progress: bool = False, objectives: Sequence[str] = (),
                 costs: CostModel | None = None, constraints: Mapping[str, float] | None = None,
                 label: str = "search") -> None:
        if n_trials < 1 or batch_size < 1:
            raise ConfigError(f"n_trials and batch_size must be >= 1, got {n_trials}, {batch_size}")
        self.study = study
        self.space = space
        self.accuracy = accuracy
        self.latency = latency
        self.n_trials = n_trials
        self.batch_size = batch_size
        self.budget = latency_budget_ms
        self.domain = domain
        self.log = eval_log or EvalLog(None)
        self.progress = progress
        self.label = label  # names the search in its log lines (e.g. "per-device search edgegpu")
        self.stats = SearchStats()
        self._lat: dict[str, float] = {}
        self._dists = space.distributions()
        self.objectives = tuple(objectives)
        self.constraints = dict(constraints or {})
        if (self.objectives or self.constraints) and costs is None:
            raise ConfigError("extra objectives and cost constraints need a cost model")
        self.costs = costs
        if len(study.directions) != 2 + len(self.objectives):
            raise ConfigError(f"the study has {len(study.directions)} objectives, the search "
                              f"{2 + len(self.objectives)}")

    def n_complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def _tell(self, trial: optuna.Trial, arch_id: str, acc: float) -> None:
        lat = self._lat[arch_id]
        trial.set_user_attr(ARCH_ATTR, arch_id)
        cons: dict[str, float] = {}
        if self.budget is not None:
            cons[BUDGET_KEY] = lat - self.budget
        extra: list[float] = []
        if self.costs is not None:
            (c,) = self.costs.of([arch_id])
            extra = [c.get(o) for o in self.objectives]
            cons.update({name: c.get(name) - limit for name, limit in self.constraints.items()})
        for name, v in cons.items():
            trial.set_constraint(name, v)
        if cons:
            trial.set_user_attr(VIOLATION_ATTR, max(cons.values()))
        self.study.tell(trial, [acc, lat, *extra], skip_if_finished=True)
        self.stats.told += 1

    def run(self) -> list[Candidate]:
        t0 = time.perf_counter()
        bar = None
        done = self.n_complete()
        before = set(self.log.values)
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.n_trials, initial=done, desc="search", unit="trial", disable=None)
        try:
            while (done := self.n_complete()) < self.n_trials:
                n = min(self.batch_size, self.n_trials - done)
                # after a resume, the re-queued trials of the killed batch make a batch of their own: the
                # batches (NSGA-II's generations) then fall where the uninterrupted run's did
                n = min(n, sum(REQUEUED_FROM in t.user_attrs for t in self.study.get_trials(
                    deepcopy=False, states=(TrialState.WAITING,)))) or n
                trials = [self.study.ask(self._dists) for _ in range(n)]
                self.stats.asked += n
                ids = [self.space.arch_id(self.space.from_params(t.params)) for t in trials]
                if self.domain is not None:
                    ids = [self.domain.snap(a) for a in ids]
                new_lat = [a for a in dict.fromkeys(ids) if a not in self._lat]
                if new_lat:
                    self._lat.update(zip(new_lat, map(float, self.latency(new_lat)), strict=True))
                waiting: dict[str, list[optuna.Trial]] = {}
                for t, a in zip(trials, ids, strict=True):
                    if a in self.log.values:
                        self._tell(t, a, self.log.values[a])
                        self.stats.from_log += 1
                        self.stats.logged_before += a in before
                        if bar is not None:
                            bar.update(1)
                    else:
                        waiting.setdefault(a, []).append(t)
                for a, acc in self.accuracy.evaluate(list(waiting)):
                    self.log.add([(a, acc)])
                    self.stats.evaluated += 1
                    for t in waiting.pop(a):
                        self._tell(t, a, acc)
                        if bar is not None:
                            bar.update(1)
                if waiting:
                    raise RuntimeError(f"accuracy source returned no result for {sorted(waiting)}")
        finally:
            if bar is not None:
                bar.close()
        self.stats.seconds += time.perf_counter() - t0
        repeats = max(0, self.stats.asked - self.stats.evaluated - self.stats.logged_before)  # within this search
        log.info("%s: %d completed trials; this run asked %d, evaluated %d new architectures%s%s, in %.1fs",
                 self.label, self.n_complete(), self.stats.asked, self.stats.evaluated,
                 f", {repeats} asked again (accuracy reused)" if repeats else "",
                 f", {self.stats.logged_before} already in the evaluation log" if self.stats.logged_before else "",
                 self.stats.seconds)
        return candidates(self.study, self.budget)


def hypervolume_history(cands: Sequence[Candidate], ref_accuracy: float, ref_latency: float,
                        every: int = 1) -> list[tuple[int, float]]:
    """Hypervolume of the front of the first n candidates (by trial number), for n = every, 2*every, ..."""
    from orchestrator.search.pareto import hypervolume

    acc = np.array([c.accuracy for c in cands])
    lat = np.array([c.latency_ms for c in cands])
    out = []
    for n in range(every, len(cands) + 1, every):
        out.append((n, hypervolume(acc[:n], lat[:n], ref_accuracy, ref_latency)))
    return out
