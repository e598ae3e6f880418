"""Search algorithms behind one call: ``run_search(problem, algorithm, settings) -> SearchResult``.

A :class:`SearchProblem` says what is searched: the space, where accuracy comes
from (an accuracy source: streaming, possibly expensive), the latency to
minimise (a batched callable: a device's predictor, or its true latency), the
domain (a table's cells or the whole space), an optional latency budget, and
the evaluation log that keeps evaluated accuracies. The registered algorithms:

- ``nsga2``, ``tpe``, ``random``: Optuna samplers driven by ask/tell
  (:class:`SearchDriver`), on a persistent study (the proxy search: journal,
  resume) or an in-memory one;
- ``milp``: the exact front of additive accuracy and latency models
  (epsilon-constraint integer programs), its members then evaluated like any
  candidates;
- ``dnas``: differentiable latency-aware search (FBNet; ``search/dnas.py``): a sweep of the latency weight,
  each derived architecture then evaluated like any candidate;
- ``exhaustive``: every cell of a finite domain (a table, or a space of at most
  ``MAX_EXHAUSTIVE`` cells): exact, and cheap where accuracy is (a table, a
  predictor).

The proxy search, the per-target searches of the sweep, the refinement and the
per-device baseline all call :func:`run_search`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import optuna

from orchestrator.errors import ConfigError
from orchestrator.registry import Registry
from orchestrator.search.accuracy import AccuracySource
from orchestrator.search.driver import SAMPLERS, Candidate, SearchDriver, TableDomain, make_sampler
from orchestrator.search.storage import EvalLog, open_study
from search_spaces.base import SearchSpace
from search_spaces.costs import CostModel

log = logging.getLogger(__name__)

MAX_EXHAUSTIVE = 100_000
DIRECTIONS = ("maximize", "minimize")


@dataclass
class SearchProblem:
    space: SearchSpace
    accuracy: AccuracySource
    latency: Callable[[Sequence[str]], np.ndarray]
    domain: TableDomain | None = None  # None: the whole space
    latency_budget_ms: float | None = None
    eval_log: EvalLog | None = None
    latency_model: Any = None  # the additive model behind ``latency`` (coef_, intercept_), where there is one
    accuracy_model: Any = None  # the additive model behind ``accuracy``, where there is one
    objectives: tuple[str, ...] = ()  # extra objectives (costs, minimised) beyond accuracy and latency
    constraints: dict[str, float] = field(default_factory=dict)  # cost limits (search_spaces.costs.COSTS)
    costs: CostModel | None = None  # where objectives or constraints are set
    label: str = "search"  # names the search in log lines ("per-device search edgegpu", ...)

    def __post_init__(self) -> None:
        if (self.objectives or self.constraints) and self.costs is None:
            self.costs = CostModel(self.space.spec())

    def directions(self) -> list[str]:
        return [*DIRECTIONS, *(["minimize"] * len(self.objectives))]

    def allowed(self, ids: Sequence[str]) -> np.ndarray:
        """Mask of the architectures within every cost limit."""
        if not self.constraints or self.costs is None:
            return np.ones(len(ids), dtype=bool)
        return self.costs.within(ids, self.constraints)

    def traits(self) -> ProblemTraits:
        """What this problem offers an algorithm (see :class:`ProblemTraits`)."""
        return ProblemTraits(self.space, self.domain is not None or (hasattr(self.space, "enumerate")
                                                                     and self.space.size <= MAX_EXHAUSTIVE),
                             additive_latency=hasattr(self.latency_model, "coef_"),
                             additive_accuracy=hasattr(self.accuracy_model, "coef_"),
                             costs=bool(self.objectives or self.constraints))

    def domain_ids(self) -> list[str] | None:
        """Every architecture of the domain, if it is finite and small enough to list."""
        if self.domain is not None:
            return list(self.domain.ids)
        if hasattr(self.space, "enumerate") and self.space.size <= MAX_EXHAUSTIVE:
            return [self.space.arch_id(a) for a in self.space.enumerate()]
        return None


@dataclass
class SearchSettings:
    n_trials: int = 200
    population: int = 20
    batch_size: int | None = None
    seed: int = 0
    start_from: Sequence[str] = ()  # architectures evaluated first (enqueued)
    storage: Any = None  # an Optuna storage: the study persists and resumes; None: in memory
    study_name: str = "search"
    resume: bool = False
    progress: bool = False
    dnas: Any = None  # DnasConfig of the 'dnas' algorithm (None: its defaults)


@dataclass
class SearchResult:
    candidates: list[Candidate]
    evaluated: int  # new accuracy evaluations this call made
    seconds: float
    info: dict[str, float] = field(default_factory=dict)

    def feasible(self) -> list[Candidate]:
        """Budget-feasible candidates, one per architecture."""
        return list({c.arch_id: c for c in self.candidates if c.feasible}.values())


@dataclass(frozen=True)
class ProblemTraits:
    """What a search problem offers an algorithm: known before any work (``hwnas validate``: the plan states
    them, ``pipeline.checks``) or read off a :class:`SearchProblem` at run time (``SearchProblem.traits()``).
    None: not known before the run (the run checks it)."""

    space: SearchSpace
    finite: bool  # the domain can be listed: a table's cells, or a space of at most MAX_EXHAUSTIVE cells
    additive_latency: bool | None  # the latency minimised has an additive model (coef_, intercept_)
    additive_accuracy: bool | None  # the accuracy source has an additive model
    costs: bool = False  # extra objectives or cost limits beside accuracy and latency
    per_target: bool | None = None  # one search per sweep target (its predictor), not the run's own search
    batch_size: int | None = None  # trials asked per round (None: the population, or not known)
    population: int | None = None
    n_trials: int | None = None  # the trials the search may run


@dataclass(frozen=True)
class Requirement:
    """One thing an algorithm needs of a problem: what (``needs``), whether the problem meets it (None: not
    known before the run) and how a config provides it (``fix``)."""

    needs: str
    met: bool | None
    fix: str


class SearchAlgorithm(Protocol):
    help: str
    samples: bool  # a sampler: trials may repeat an architecture; takes ``start_from``
    trains_supernet: bool  # trains a supernet of its own (minutes), whatever the accuracy source

    def requirements(self, problem: ProblemTraits) -> list[Requirement]: ...

    def run(self, problem: SearchProblem, settings: SearchSettings) -> SearchResult: ...


ALGORITHMS: Registry[SearchAlgorithm] = Registry("search algorithm")

AUTO = "auto"  # sweep.target_search.algorithm: the first of AUTO_ORDER whose requirements the problem meets
NONE = "none"  # sweep.target_search.algorithm: no search per target (the proxy search's candidates re-ranked)
AUTO_ORDER = ("exhaustive", "milp", "nsga2")  # exact where it can be: every cell, the MILP of additive models


def unmet(algorithm: str, problem: ProblemTraits) -> list[Requirement]:
    """The requirements of ``algorithm`` that ``problem`` is known not to meet (UnknownNameError: no such
    algorithm)."""
    return [r for r in ALGORITHMS.get(algorithm).requirements(problem) if r.met is False]


def requirement_problems(where: str, algorithm: str, problem: ProblemTraits) -> list[str]:
    """One line per unmet requirement: ``<where>: '<algorithm>' needs <what>; <fix>``."""
    return [f"{where}: {algorithm!r} needs {r.needs}; {r.fix}" for r in unmet(algorithm, problem)]


def choose(problem: ProblemTraits) -> str:
    """'auto': the first algorithm of ``AUTO_ORDER`` none of whose requirements ``problem`` is known to miss."""
    return next(a for a in AUTO_ORDER if not unmet(a, problem))


def run_search(problem: SearchProblem, algorithm: str, settings: SearchSettings) -> SearchResult:
    """Run the registered ``algorithm`` on ``problem``; ConfigError naming each requirement of the algorithm
    that the problem does not meet, and its fix, before any work."""
    algo = ALGORITHMS.get(algorithm)
    bad = requirement_problems(f"search algorithm {algorithm!r} ({problem.label})", algorithm, problem.traits())
    if bad:
        raise ConfigError("; ".join(bad))
    return algo.run(problem, settings)


def _costs_requirement(problem: ProblemTraits, name: str) -> Requirement:
    return Requirement("two objectives (accuracy against latency) without cost limits", not problem.costs,
                       f"'{name}' solves accuracy against latency without cost limits; with search.objectives / "
                       f"search.constraints / sweep.memory_mb use nsga2 (or exhaustive on a finite domain)")


def _evaluate(problem: SearchProblem, ids: Sequence[str]) -> tuple[dict[str, float], int]:
    """Accuracy of ``ids``: the evaluation log first, the accuracy source for the rest (logged)."""
    elog = problem.eval_log or EvalLog(None)
    acc = {a: elog.values[a] for a in ids if a in elog.values}
    todo = [a for a in dict.fromkeys(ids) if a not in acc]
    new = dict(problem.accuracy.evaluate(todo)) if todo else {}
    if problem.eval_log is not None and new:
        problem.eval_log.add(new)
    return acc | new, len(new)


def _as_candidates(problem: SearchProblem, ids: Sequence[str], acc: dict[str, float]) -> list[Candidate]:
    lat = np.asarray(problem.latency(list(ids)), dtype=float) if ids else np.zeros(0)
    budget = problem.latency_budget_ms
    ok = problem.allowed(ids)
    extra = problem.costs.matrix(ids, problem.objectives) if problem.costs is not None and problem.objectives \
        else np.zeros((len(ids), 0))
    return [Candidate(n, a, float(acc[a]), float(t), bool(ok[n]) and (budget is None or t <= budget),
                      tuple(float(v) for v in extra[n]))
            for n, (a, t) in enumerate(zip(ids, lat, strict=True))]


class SamplerSearch:
    """An Optuna sampler (registered in ``SAMPLERS``) driven by :class:`SearchDriver`."""

    samples = True
    trains_supernet = False

    def __init__(self, sampler: str) -> None:
        self.sampler = sampler
        self.help = SAMPLERS.describe(sampler)

    def requirements(self, problem: ProblemTraits) -> list[Requirement]:
        if self.sampler != "nsga2":  # in its own registry's terms: NSGA-II breeds complete generations
            return []
        ok = None if problem.batch_size is None or problem.population is None \
            else problem.batch_size <= problem.population
        first = None if problem.n_trials is None or problem.population is None \
            else problem.population <= problem.n_trials
        return [Requirement("complete generations (search.batch_size <= population)", ok,
                            f"NSGA-II would ask children of a generation that is not complete (batch_size "
                            f"{problem.batch_size} > population {problem.population}); use <= population"),
                Requirement("a complete first generation (population <= n_trials)", first,
                            f"population {problem.population} > n_trials {problem.n_trials}: the first generation "
                            f"would not finish; raise n_trials or lower population")]

    def run(self, problem: SearchProblem, settings: SearchSettings) -> SearchResult:
        t0 = time.perf_counter()
        if settings.storage is not None:
            study = open_study(settings.storage, settings.study_name, optuna.samplers.RandomSampler(),
                               settings.resume, problem.objectives)
        else:
            study = optuna.create_study(directions=problem.directions())
        study.sampler = make_sampler(self.sampler, settings.seed, settings.population)
        for a in dict.fromkeys(settings.start_from):
            study.enqueue_trial(problem.space.to_params(problem.space.parse(a)), skip_if_exists=True)
        driver = SearchDriver(study, problem.space, problem.accuracy, problem.latency,
                              n_trials=settings.n_trials + (len(settings.start_from) if settings.storage is None
                                                            else 0),
                              batch_size=settings.batch_size or settings.population,
                              latency_budget_ms=problem.latency_budget_ms, domain=problem.domain,
                              eval_log=problem.eval_log, progress=settings.progress,
                              objectives=problem.objectives, costs=problem.costs, constraints=problem.constraints,
                              label=problem.label)
        found = driver.run()
        return SearchResult(found, driver.stats.evaluated, time.perf_counter() - t0,
                            {"from_log": float(driver.stats.from_log)})


class MilpSearch:
    """The exact front of additive models by epsilon-constraint integer programs (see ``search.milp``)."""

    help = "exact front of additive accuracy and latency models (epsilon-constraint MILP)"
    samples = False
    trains_supernet = False

    def requirements(self, problem: ProblemTraits) -> list[Requirement]:
        return [Requirement("an additive latency model", problem.additive_latency,
                            "set latency.predictor: additive (or a lookup-table proxy, latency.lut); the "
                            "refinement and the per-device baseline have none: with them use nsga2, tpe or random"),
                Requirement("an additive accuracy model", problem.additive_accuracy,
                            "use accuracy.source: predictor with accuracy.predictor: additive (or source: table)"),
                _costs_requirement(problem, "milp")]

    def run(self, problem: SearchProblem, settings: SearchSettings) -> SearchResult:
        from orchestrator.search.milp import milp_front, space_model, table_model

        t0 = time.perf_counter()
        table = problem.domain is not None
        model = table_model(problem.space, problem.domain.ids) if table else space_model(problem.space)
        lm, am = problem.latency_model, problem.accuracy_model
        # a table's front is small: every point; a space's additive front can hold thousands: a grid
        front = milp_front(model, am.coef_, am.intercept_, lm.coef_, lm.intercept_, max_points=settings.n_trials,
                           grid=None if table else settings.n_trials, max_latency=problem.latency_budget_ms)
        ids = [p.arch_id for p in front.points]
        acc, evaluated = _evaluate(problem, ids)
        log.info("%s: milp front of %d architectures, %d new evaluations, in %.1fs", problem.label, len(ids),
                 evaluated, time.perf_counter() - t0)
        return SearchResult(_as_candidates(problem, ids, acc), evaluated, time.perf_counter() - t0,
                            {"milp_solves": float(front.solves), "milp_s": front.seconds})


class ExhaustiveSearch:
    """Every cell of a finite domain: the exact front of whatever accuracy and latency are given."""

    help = f"every cell of a finite domain (a table, or a space of at most {MAX_EXHAUSTIVE:,} cells)"
    samples = False
    trains_supernet = False

    def requirements(self, problem: ProblemTraits) -> list[Requirement]:
        return [Requirement("a finite domain", problem.finite,
                            f"space {problem.space.name!r} has {problem.space.size:.3g} architectures: use "
                            f"search.domain: table, or milp / nsga2")]

    def run(self, problem: SearchProblem, settings: SearchSettings) -> SearchResult:
        t0 = time.perf_counter()
        ids = problem.domain_ids()
        assert ids is not None  # run_search checked the requirement
        ok = problem.allowed(ids)
        ids = [a for a, keep in zip(ids, ok, strict=True) if keep]  # outside the cost limits: not evaluated
        acc, evaluated = _evaluate(problem, ids)
        log.info("%s: exhaustive over %d architectures, %d new evaluations, in %.1fs", problem.label, len(ids),
                 evaluated, time.perf_counter() - t0)
        return SearchResult(_as_candidates(problem, ids, acc), evaluated, time.perf_counter() - t0,
                            {"cells": float(len(ids))})


for _name in SAMPLERS.names():
    ALGORITHMS.add(_name, SamplerSearch(_name), help=SAMPLERS.describe(_name))
ALGORITHMS.add("milp", MilpSearch(), help=MilpSearch.help)
ALGORITHMS.add("exhaustive", ExhaustiveSearch(), help=ExhaustiveSearch.help)


class DnasSearch:
    """``run_search`` algorithm (``search/dnas.py``: the method): the lambda sweep on the space's DNAS view
    (``dnas.VIEWS``: fbnet's layers, nb201's edges) with the view's latency table, then the derived architectures
    evaluated like any candidate (snapped to the domain's nearest cell on a table domain)."""

    help = ("differentiable latency-aware search (FBNet): Gumbel-softmax per layer (fbnet) or edge (nb201), a "
            "sweep of the latency weight")
    samples = False
    trains_supernet = True

    def requirements(self, problem: ProblemTraits) -> list[Requirement]:
        """A space with a DNAS view; the latency its view can tabulate (an additive model, or a finite domain to
        fit one over); accuracy against latency alone; a run's own search (it trains a supernet: not one per
        sweep target)."""
        from orchestrator.search.dnas import VIEWS

        space = problem.space
        view = VIEWS.get(space.name) if space.name in VIEWS else None
        reqs = [Requirement("a space with a DNAS view", view is not None,
                            f"space {space.name!r} has none (DNAS searches {', '.join(VIEWS.names())}): use nsga2")]
        if view is None or view.needs_additive_latency:
            reqs.append(Requirement("an additive latency model", problem.additive_latency,
                                    "a lookup-table proxy (latency.lut, proxy lut:<device>) or latency.predictor: "
                                    "additive"))
        else:
            reqs.append(Requirement("a finite domain (its per-layer latency table is fitted over the cells)",
                                    problem.finite, "use search.domain: table"))
        return [*reqs,
                Requirement("accuracy against latency only", not problem.costs,
                            "'dnas' trades accuracy against latency only; with search.objectives / "
                            "search.constraints use nsga2"),
                Requirement("a search of its own", None if problem.per_target is None else not problem.per_target,
                            "'dnas' trains a supernet; per target use 'auto'")]

    def run(self, problem: SearchProblem, settings: SearchSettings) -> SearchResult:
        from orchestrator.search.dnas import DnasConfig, dnas_sweep, dnas_view
        from orchestrator.supernet.data import DataConfig, load_dataset
        from orchestrator.supernet.spec import with_classes

        cfg: DnasConfig = settings.dnas or DnasConfig()
        t0 = time.perf_counter()
        data = load_dataset(cfg.data or DataConfig())
        spec = with_classes(problem.space.spec().with_options(**(cfg.supernet_options or {})), data.num_classes)
        view = dnas_view(spec.build())
        lut, base = view.latency_table(problem.latency_model, problem.latency, problem.domain_ids())
        results = dnas_sweep(view, data, lut, base, cfg, seed=settings.seed)
        ids = [a for r in results for a in r.archs]
        if problem.domain is not None:
            ids = [problem.domain.snap(a) for a in ids]
        ids = list(dict.fromkeys(ids))
        acc, evaluated = _evaluate(problem, ids)
        info = {"dnas_lambdas": float(len(cfg.lambdas)), "dnas_archs": float(len(ids)),
                "dnas_search_s": float(sum(r.seconds for r in results)),
                "dnas_images": float(results[0].warmup_images + sum(r.weight_images + r.arch_images
                                                                    for r in results))}
        return SearchResult(_as_candidates(problem, ids, acc), evaluated, time.perf_counter() - t0, info)


ALGORITHMS.add("dnas", DnasSearch(), help=DnasSearch.help)
