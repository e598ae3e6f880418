"""One target of the sweep: decide, search its front over the whole domain, judge it against the truth.

``run_target`` is what each Ray task of the sweep runs (pure NumPy on arrays
the driver shipped once; the space is rebuilt from its spec):

1. the decision on the k measurements (``decision.decide``): reuse the proxy's
   ranking (its predictions mapped to the target's ms by a positive affine
   fit) or adapt a transfer predictor. Measured architectures keep their
   measured latency;
2. the target's own search over the whole domain on that latency and the
   run's accuracy oracle (``run_search``: exhaustive on a finite domain, MILP
   for additive models, NSGA-II otherwise). The target chooses its front from
   the proxy search's candidates, its measured architectures and what its
   search found. The k measurements come in two rounds: the first along the
   proxy's front (``decision.pick_k``), the second along the front this
   target's own first-round predictor finds (``propose``);
3. where the target's latency is known (a table, a simulator), ``finalize``
   judges the chosen front at true latency against the true front over the
   whole known domain (``search.quality``), and reports the pool's coverage and
   plain reuse's figures beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.latency.devices.protocol import DeviceSpec
from orchestrator.latency.metrics import srcc
from orchestrator.latency.transfer import FlooredPredictor, SourceSet, adapt, affine_positive, latency_floor
from orchestrator.search.accuracy import AccuracyOracle
from orchestrator.search.algorithms import SearchProblem, SearchSettings, run_search
from orchestrator.search.driver import TableDomain, extra_matrix
from orchestrator.search.pareto import pareto_front, pareto_mask_nd
from orchestrator.sweep.decision import ADAPT, Decision, decide
from search_spaces.base import SearchSpace, SpaceSpec, encode_ids
from search_spaces.costs import CostModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSettings:
    threshold: float = 0.9
    rule: str = "bound"  # bound | point
    confidence: float = 0.9
    method: str = "multi"
    quantiles: tuple[float, ...] = (0.25, 0.5, 0.75)
    seed: int = 0
    algorithm: str = "exhaustive"  # the target search (resolved, or 'none')
    n_trials: int = 400
    population: int = 40
    budget_ms: float | None = None
    objectives: tuple[str, ...] = ()  # extra objectives (costs) of every front
    constraints: dict[str, float] = field(default_factory=dict)  # cost limits of every architecture
    memory_mb: dict[str, float] = field(default_factory=dict)  # per target: peak activation memory limit

    def limits(self, target: str) -> dict[str, float]:
        """The cost limits an architecture must meet to serve ``target``: the search's constraints and the
        target's memory (the tighter of the two)."""
        out = dict(self.constraints)
        if target in self.memory_mb:
            out["peak_mem_mb"] = min(out.get("peak_mem_mb", np.inf), self.memory_mb[target])
        return out


@dataclass
class SweepShared:
    """What every target needs, shipped to the tasks once."""

    space_spec: SpaceSpec
    proxy: str
    proxy_predictor: Any
    oracle: AccuracyOracle
    pool_ids: list[str]  # the proxy search's candidates
    pool_proxy_ms: np.ndarray
    search_ids: list[str] | None  # the domain of the target searches, where it is finite
    search_X: np.ndarray | None
    proxy_front_ids: list[str]  # the front of (oracle accuracy, proxy prediction) over the domain and the pool
    ref_ids: list[str]  # the known domain: the run's accuracy is known there, and truth can be
    truth_ids: list[str]  # the ids that targets' truth arrays are given over
    settings: SweepSettings
    costs: CostModel | None = None  # where objectives, constraints or memory limits are set
    reference_ids: list[str] = field(default_factory=list)  # measured first on every target (sweep/reference.py)

    def allowed(self, ids: Sequence[str], target: str) -> np.ndarray:
        """Mask of ``ids`` within the cost limits for ``target``."""
        limits = self.settings.limits(target)
        if not limits or self.costs is None:
            return np.ones(len(ids), dtype=bool)
        return self.costs.within(list(ids), limits)

    def extra(self, ids: Sequence[str]) -> np.ndarray | None:
        """The extra objectives of ``ids`` (None: accuracy and latency only)."""
        if not self.settings.objectives or self.costs is None:
            return None
        return self.costs.matrix(list(ids), self.settings.objectives)


@dataclass
class TargetInput:
    name: str
    kind: str
    spec: DeviceSpec | None  # rebuilds the device where a truth outside ``truth`` is needed
    k_ids: list[str]
    k_latency: np.ndarray
    truth: np.ndarray | None = None  # over SweepShared.truth_ids (NaN: unknown); None: no truth (measured)
    seconds_measuring: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. the test-retest figures
    domain: list[str] | None = None  # the architectures it can be measured on (a table's rows); None: any


@dataclass
class TargetReport:
    name: str
    kind: str
    k: int
    decision: Decision
    method: str
    options: list[str]  # what the target chose from: the candidates and its search's front
    accuracy: np.ndarray  # over options
    predicted: np.ndarray  # the target's predicted latency over options
    front: list[int]  # indices into options, by predicted latency
    true_ms: np.ndarray | None = None  # over options (NaN: unknown)
    metrics: dict[str, float] = field(default_factory=dict)
    budgets_ms: list[float] = field(default_factory=list)
    measured_front: dict[str, float] = field(default_factory=dict)
    n_measurements: int = 0
    seconds: float = 0.0
    png: bytes | None = None
    predictor: Any = None  # the adapted predictor, when kept for a refinement search
    reference: Any = None  # the search.quality.Reference the front was judged against
    sources_used: str = ""  # the transfer's sources and their shares (adapted targets)
    samples: dict[str, float] = field(default_factory=dict)  # the k measurements (arch id -> ms)

    def front_ids(self) -> list[str]:
        return [self.options[i] for i in self.front]

    def summary(self) -> dict[str, Any]:
        return {"target": self.name, "kind": self.kind, "k": self.k, "srcc_k": self.decision.srcc_k,
                "srcc_lb": self.decision.srcc_lb,
                "decision": self.decision.decision, "reason": self.decision.reason, "method": self.method,
                "sources_used": self.sources_used,
                "front_size": len(self.front), "n_options": len(self.options),
                "n_measurements": self.n_measurements, "seconds": self.seconds, **self.metrics}


class Encoder:
    """Encodings of arch ids, cached (seeded with the shared domain's)."""

    def __init__(self, space: SearchSpace, ids: Sequence[str] | None = None, X: np.ndarray | None = None) -> None:
        self.space = space
        self.rows: dict[str, np.ndarray] = dict(zip(ids, X, strict=True)) if ids is not None and X is not None \
            else {}

    def __call__(self, ids: Sequence[str]) -> np.ndarray:
        miss = [a for a in dict.fromkeys(ids) if a not in self.rows]
        if miss:
            self.rows.update(zip(miss, encode_ids(self.space, miss), strict=True))
        if not ids:
            return np.zeros((0, self.space.encoding_size), dtype=np.float32)
        return np.stack([self.rows[a] for a in ids])


def front_of(acc: np.ndarray, lat: np.ndarray, extra: np.ndarray | None = None) -> list[int]:
    """Indices of the non-dominated points (accuracy up, latency and any ``extra`` columns down), by
    latency."""
    if len(acc) == 0:
        return []
    if extra is None or extra.shape[1] == 0:
        return [int(i) for i in pareto_front(acc, lat)[0]]
    mask = pareto_mask_nd(np.column_stack([-np.asarray(acc, dtype=float), lat, extra]))
    idx = np.where(mask)[0]
    return [int(i) for i in idx[np.argsort(np.asarray(lat)[idx], kind="stable")]]


def target_search(space: SearchSpace, shared: SweepShared, predict: Callable[[Sequence[str]], np.ndarray],
                  model: Any, name: str) -> tuple[list[str], dict[str, float]]:
    """The front of (oracle accuracy, the target's predicted latency) over the whole domain."""
    s = shared.settings
    domain = TableDomain(space, shared.search_ids, X=shared.search_X) if shared.search_ids is not None else None
    problem = SearchProblem(space, shared.oracle, predict, domain=domain, latency_budget_ms=s.budget_ms,
                            latency_model=model if hasattr(model, "coef_") else None,
                            accuracy_model=shared.oracle.additive, objectives=s.objectives,
                            constraints=s.limits(name), costs=shared.costs, label=f"target search {name}")
    seed = int(np.random.SeedSequence([s.seed, *name.encode()]).generate_state(1)[0])
    algorithm = s.algorithm
    if algorithm == "auto":  # exact where it can be: every cell of a finite domain, the MILP of additive models
        additive = problem.latency_model is not None and problem.accuracy_model is not None
        two = not problem.objectives and not problem.constraints
        algorithm = "exhaustive" if domain is not None else "milp" if additive and two else "nsga2"
    res = run_search(problem, algorithm, SearchSettings(n_trials=s.n_trials, population=s.population, seed=seed))
    found = res.feasible()
    acc = np.array([c.accuracy for c in found])
    lat = np.array([c.latency_ms for c in found])
    return [found[i].arch_id for i in front_of(acc, lat, extra_matrix(found))], {"search_s": res.seconds,
                                                           "search_points": float(len(found))}


@dataclass
class _Predicted:
    decision: Decision
    method: str
    predict: Callable[[Sequence[str]], np.ndarray]  # the target's latency (ms), measured where measured
    raw: Callable[[Sequence[str]], np.ndarray]  # the predictor alone
    model: Any  # the adapted predictor (None for reuse)
    searched: list[str]  # its front over the whole domain
    info: dict[str, float]


def _predicted(shared: SweepShared, target: TargetInput, sources: SourceSet | None, space: SearchSpace,
               enc: Encoder) -> _Predicted:
    """The decision on the target's measurements, its latency predictor and its whole-domain front."""
    s = shared.settings
    y = np.asarray(target.k_latency, dtype=float)
    X_k = enc(target.k_ids)
    proxy_k = np.asarray(shared.proxy_predictor.predict(X_k), dtype=float)
    rng = np.random.default_rng(np.random.SeedSequence([s.seed, 7, len(y), *target.name.encode()]))
    dec = decide(proxy_k, y, threshold=s.threshold, rule=s.rule, confidence=s.confidence, rng=rng,
                 can_adapt=sources is not None)
    measured = dict(zip(target.k_ids, y, strict=True))
    info: dict[str, float] = {}
    adapted: Any = None
    if dec.decision == ADAPT:
        assert sources is not None
        adapted = adapt(s.method, sources, X_k, y, rng)
        method = getattr(adapted, "chosen_method", s.method)
        floor = latency_floor(y)
        if getattr(adapted, "log_fit", False) or isinstance(adapted, FlooredPredictor):
            info["transfer_constrained"] = 1.0  # its fit in ms went negative: refitted in log ms, or held
            info["transfer_unconstrained_min_ms"] = float(adapted.linear_min_ms)

        def model(ids: Sequence[str]) -> np.ndarray:
            out = np.asarray(adapted.predict(enc(list(ids))), dtype=float)
            if len(out) and out.min() <= 0:  # beyond the sources' architectures: a latency stays positive
                info["transfer_floored"] = 1.0
                out = np.maximum(out, floor)
            return out
    else:
        p_min = float(np.min(shared.pool_proxy_ms)) if len(shared.pool_proxy_ms) else None
        if shared.search_X is not None and len(shared.search_X):
            p_dom = float(np.min(shared.proxy_predictor.predict(shared.search_X)))
            p_min = p_dom if p_min is None else min(p_min, p_dom)
        a, c = affine_positive(proxy_k, y, p_min=None if p_min is None else min(p_min, float(proxy_k.min())))
        method = "reuse"

        def model(ids: Sequence[str]) -> np.ndarray:
            return a * np.asarray(shared.proxy_predictor.predict(enc(list(ids))), dtype=float) + c

    def predict(ids: Sequence[str]) -> np.ndarray:  # a measured architecture's latency is its measurement
        ids = list(ids)
        out = model(ids)
        for i, a in enumerate(ids):
            if a in measured:
                out[i] = measured[a]
        return out

    searched: list[str] = []
    if s.algorithm != "none":
        if dec.decision == ADAPT or len(measured) > 0:
            searched, found = target_search(space, shared, predict, adapted if dec.decision == ADAPT else None,
                                            target.name)
            info.update(found)
        else:
            searched = list(shared.proxy_front_ids)
    return _Predicted(dec, method, predict, model, adapted, searched, info)


def _evenly(ids: Sequence[str], n: int) -> list[str]:
    if n <= 0 or not ids:
        return []
    return [ids[i] for i in np.unique(np.round(np.linspace(0, len(ids) - 1, min(n, len(ids)))).astype(int))]


def propose(shared: SweepShared, target: TargetInput, sources: SourceSet | None, n: int) -> list[str]:
    """The second round's measurements: ``n`` architectures where the target's predicted front lives, not
    measured yet: the front's fast end twice (a wrong prediction there leaves a budget with nothing that
    fits), the rest evenly along it; where the front has fewer, the next non-dominated layers."""
    space = shared.space_spec.build()
    p = _predicted(shared, target, sources, space, Encoder(space, shared.search_ids, shared.search_X))
    options = list(dict.fromkeys([*shared.pool_ids, *p.searched]))
    pred = p.predict(options)
    if shared.settings.budget_ms is not None:
        options = [a for a, v in zip(options, pred, strict=True) if v <= shared.settings.budget_ms]
        pred = p.predict(options)
    done = set(target.k_ids)
    allowed = set(target.domain) if target.domain is not None else None
    fits = shared.allowed(options, target.name)
    keep = [i for i, a in enumerate(options) if a not in done and (allowed is None or a in allowed) and fits[i]]
    left, acc, lat = [options[i] for i in keep], shared.oracle.values([options[i] for i in keep]), pred[keep]
    picked: list[str] = []
    while left and len(picked) < n:
        layer = front_of(acc, lat)
        ids = [left[i] for i in layer]
        if not picked:  # the front itself
            fast = ids[:min(2, n - 1)] if n >= 3 else []
            picked += fast + _evenly(ids[len(fast):], n - len(fast))
        else:
            picked += _evenly(ids, n - len(picked))
        rest = np.setdiff1d(np.arange(len(left)), layer)
        left, acc, lat = [left[i] for i in rest], acc[rest], lat[rest]
    return picked[:n]


def run_target(shared: SweepShared, target: TargetInput, sources: SourceSet | None, *, plot: bool = False,
               keep_predictor: bool = False) -> TargetReport:
    """Steps 1-3 of the module doc for one target."""
    t0 = time.perf_counter()
    s = shared.settings
    space = shared.space_spec.build()
    enc = Encoder(space, shared.search_ids, shared.search_X)
    y = np.asarray(target.k_latency, dtype=float)
    p = _predicted(shared, target, sources, space, enc)
    dec, method, predict, adapted = p.decision, p.method, p.predict, p.model
    metrics: dict[str, float] = dict(target.metrics)
    options = list(dict.fromkeys([*shared.pool_ids, *p.searched, *target.k_ids]))
    pred = predict(options)
    metrics.update({f"target_{k}": v for k, v in p.info.items()})  # after every prediction (its flags)
    if s.budget_ms is not None:
        keep = [i for i in range(len(options)) if pred[i] <= s.budget_ms]
        if not keep:
            log.warning("target %s: nothing is predicted within the latency budget %g ms (fastest %.3g ms)",
                        target.name, s.budget_ms, float(np.min(pred)) if len(pred) else float("nan"))
            metrics["budget_infeasible"] = 1.0
        options, pred = [options[i] for i in keep], pred[keep]
    fits = shared.allowed(options, target.name)
    if not fits.all():
        metrics["outside_limits"] = float((~fits).sum())
        options, pred = [a for a, f in zip(options, fits, strict=True) if f], pred[fits]
    acc = shared.oracle.values(options)
    rep = TargetReport(target.name, target.kind, len(y), dec, method, options, acc, pred,
                       front_of(acc, pred, shared.extra(options)),
                       metrics=metrics, n_measurements=len(y) + int(metrics.get("retest_n", 0)),
                       predictor=adapted if keep_predictor else None,
                       sources_used=adapted.describe() if hasattr(adapted, "describe") else "",
                       samples=dict(zip(target.k_ids, map(float, y), strict=True)))
    truth = None
    if target.truth is not None:
        known = dict(zip(shared.truth_ids, target.truth, strict=True))
        missing = [a for a in dict.fromkeys([*options, *shared.ref_ids]) if a not in known]
        if missing and target.spec is not None:
            from orchestrator.latency.devices.catalog import make_device

            known.update(zip(missing, make_device(target.spec, space).truth(missing), strict=True))

        def truth(ids: Sequence[str]) -> np.ndarray:
            return np.array([known.get(a, np.nan) for a in ids], dtype=float)

        t_ref = truth(shared.ref_ids)
        ok = np.isfinite(t_ref)
        if ok.sum() >= 3:
            metrics["transfer_srcc"] = srcc(p.raw([a for a, m in zip(shared.ref_ids, ok, strict=True) if m]),
                                            t_ref[ok])
            metrics["proxy_srcc"] = srcc(shared.proxy_predictor.predict(enc(
                [a for a, m in zip(shared.ref_ids, ok, strict=True) if m])), t_ref[ok])
    from orchestrator.sweep.judge import finalize

    finalize(shared, rep, truth, plot=plot)
    rep.seconds = time.perf_counter() - t0 + target.seconds_measuring
    return rep
