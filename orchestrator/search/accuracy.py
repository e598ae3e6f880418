"""Where a candidate's accuracy comes from: a table, the supernet evaluator pool, or a predictor.

Every source answers ``evaluate(arch_ids)`` with ``(arch_id, accuracy %)``
pairs as they finish (completion order); the search driver tells Optuna each
one as it arrives. Accuracies are percentages throughout the pipeline.

Each source also gives an :class:`AccuracyOracle` (``source.oracle(known)``):
accuracy for *any* architecture at no evaluation cost, the run's own value
where it has one and a model's prediction elsewhere, each labelled. The sweep's
per-target searches over a whole domain run on the oracle; what they choose
that only has a provisional prediction is then evaluated for real.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from orchestrator.errors import ConfigError
from orchestrator.latency.predictors import make_predictor
from search_spaces.base import SearchSpace, distinct_sample, encode_ids

log = logging.getLogger(__name__)


class AccuracySource(Protocol):
    name: str

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]: ...


TABLE, EVALUATED, PREDICTED = "table", "evaluated", "predicted"


class AccuracyOracle:
    """Accuracy (%) of any architecture without new evaluations.

    ``known``: the run's own values (a table's rows, evaluated subnets), labelled ``known_label``; every other
    architecture gets ``predict(ids)``, labelled ``predicted``. ``predictions_final``: whether a prediction *is*
    the run's accuracy (a predictor source) or only a provisional guess (a supernet's subnets not evaluated
    yet). ``additive``: the additive model behind the predictions, where there is one (the MILP search uses it).
    """

    name = "oracle"

    def __init__(self, known: Mapping[str, float], known_label: str, predict: Callable[[Sequence[str]], np.ndarray],
                 predictions_final: bool, additive: Any = None) -> None:
        self.known = dict(known)
        self.known_label = known_label
        self.predict = predict
        self.predictions_final = predictions_final
        self.additive = additive

    def values(self, arch_ids: Sequence[str]) -> np.ndarray:
        ids = list(arch_ids)
        out = np.array([self.known.get(a, np.nan) for a in ids], dtype=float)
        miss = np.flatnonzero(np.isnan(out))
        if len(miss):
            out[miss] = np.asarray(self.predict([ids[i] for i in miss]), dtype=float)
        return out

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        yield from zip(arch_ids, map(float, self.values(arch_ids)), strict=True)

    def final(self, arch_id: str) -> bool:
        """Whether the oracle's value is the run's accuracy (not a provisional prediction)."""
        return arch_id in self.known or self.predictions_final

    def label(self, arch_id: str) -> str:
        return self.known_label if arch_id in self.known else PREDICTED

    def add(self, values: Mapping[str, float], label: str = EVALUATED) -> None:
        """Values evaluated since (they replace the predictions)."""
        if label != self.known_label and values:
            raise ValueError(f"an oracle of {self.known_label} values cannot take {label} ones")
        self.known.update({a: float(v) for a, v in values.items()})


class TableAccuracy:
    """Accuracy looked up in a table (NB201: the shipped NAS-Bench-201 test accuracies).

    An architecture the table lacks gets the prediction of a model fit on the
    whole table; ``exact(arch_id)`` tells which is which. With the search domain
    restricted to the table every candidate is exact.
    """

    name = "table"

    def __init__(self, space: SearchSpace, table: Mapping[str, float], predictor: str = "mlp", seed: int = 0) -> None:
        if not table:
            raise ConfigError("accuracy table is empty")
        self.space = space
        self.table = dict(table)
        self.predictor_name = predictor
        self.seed = seed
        self._model: Any = None

    def exact(self, arch_id: str) -> bool:
        return arch_id in self.table

    def _fallback(self, arch_ids: Sequence[str]) -> np.ndarray:
        if self._model is None:
            ids = list(self.table)
            self._model = make_predictor(self.predictor_name, seed=self.seed).fit(
                encode_ids(self.space, ids), np.array([self.table[a] for a in ids]))
            log.info("accuracy: %s predictor fit on %d table rows for architectures the table lacks",
                     self.predictor_name, len(ids))
        return np.asarray(self._model.predict(encode_ids(self.space, list(arch_ids))), dtype=float)

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        missing = [a for a in arch_ids if a not in self.table]
        pred = dict(zip(missing, self._fallback(missing), strict=True)) if missing else {}
        for a in arch_ids:
            yield a, float(self.table[a]) if a in self.table else float(pred[a])

    def oracle(self, known: Mapping[str, float] | None = None) -> AccuracyOracle:
        """The table's values; the fallback model's predictions elsewhere (final: this source answers so)."""
        ids = list(self.table)
        additive = make_predictor("additive", alpha=1e-2).fit(encode_ids(self.space, ids),
                                                              np.array([self.table[a] for a in ids]))
        return AccuracyOracle(self.table, TABLE, self._fallback, predictions_final=True, additive=additive)


class SupernetAccuracy:
    """Validation accuracy of subnets with inherited weights, evaluated by a Ray actor pool.

    ``make_pool()`` builds the pool when first needed; ``release()`` ends its
    actors (their CPUs go back to Ray: a measured device's actor needs them, and
    timing latency next to busy evaluators would measure the contention).
    """

    name = "supernet"

    def __init__(self, space: SearchSpace, make_pool: Any) -> None:
        self.space = space
        self.make_pool = make_pool
        self.pool: Any = None

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        if not arch_ids:
            return
        if self.pool is None:
            self.pool = self.make_pool()
        archs = [self.space.parse(a) for a in arch_ids]
        for r in self.pool.evaluate(archs, progress=False):
            yield arch_ids[r.index], 100.0 * float(r.accuracy)

    def release(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def oracle(self, known: Mapping[str, float] | None = None) -> AccuracyOracle:
        """The evaluated subnets (``known``: the evaluation log); elsewhere a provisional prediction of an
        additive model fit on them (to be evaluated before it counts)."""
        return provisional_oracle(self.space, dict(known or {}))


class PredictorAccuracy:
    """An accuracy predictor fit on ``n`` subnets the inner source evaluated (sampled with ``rng``).

    Cheap after the fit: every later candidate costs one prediction. The fit's
    held-out quality (SRCC on a fifth of the samples) is kept in ``quality``.

    ``features``: the predictor's inputs, ``"encoding"`` (the space's architecture encoding), or a
    :class:`ZeroCostFeatures` (zero-cost scores, with or without the encoding). With zero-cost features each new
    architecture costs its scoring (seconds), so the oracle is provisional like a supernet's: an additive
    model of the values computed so far elsewhere, and what a search chooses on it is computed for real.
    """

    name = "predictor"

    def __init__(self, space: SearchSpace, inner: AccuracySource, n: int, rng: np.random.Generator,
                 predictor: str = "mlp", features: Any = "encoding") -> None:
        from orchestrator.latency.metrics import srcc

        self.space = space
        self.features = features
        self.cheap = features == "encoding"
        ids = distinct_sample(space, n, rng)
        acc = dict(inner.evaluate(ids))
        y = np.array([acc[a] for a in ids])
        X = self._x(ids)
        from sklearn.base import clone

        model = make_predictor(predictor, seed=rng)  # a seed drawn from rng where the predictor takes one
        cut = max(2, n // 5)
        held = clone(model).fit(X[cut:], y[cut:])  # the same parameters (seed included)
        self.quality = {"n": n, "heldout_srcc": float(srcc(y[:cut], held.predict(X[:cut])))}
        self.model = model.fit(X, y)
        self.samples = acc
        self.predicted: dict[str, float] = {}
        log.info("accuracy predictor (%s, features %s) fit on %d evaluated subnets; held-out SRCC %.3f",
                 predictor, "encoding" if self.cheap else features.kind, n, self.quality["heldout_srcc"])

    def _x(self, ids: Sequence[str]) -> np.ndarray:
        return encode_ids(self.space, list(ids)) if self.cheap else self.features.matrix(list(ids))

    def _predict(self, ids: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.predict(self._x(ids)), dtype=float) if len(ids) else np.empty(0)

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        new = [a for a in dict.fromkeys(arch_ids) if a not in self.samples and a not in self.predicted]
        self.predicted.update(zip(new, map(float, self._predict(new)), strict=True))
        for a in arch_ids:
            yield a, float(self.samples.get(a, self.predicted.get(a, np.nan)))

    def oracle(self, known: Mapping[str, float] | None = None) -> AccuracyOracle:
        """The evaluated samples; the predictor elsewhere (final: this source's accuracy is the prediction).
        With zero-cost features: the values computed so far, provisional predictions elsewhere."""
        if not self.cheap:
            return provisional_oracle(self.space, {**self.predicted, **self.samples, **dict(known or {})})
        additive = self.model if hasattr(self.model, "coef_") else None
        return AccuracyOracle(self.samples, EVALUATED, self._predict, predictions_final=True, additive=additive)


class ZeroCostFeatures:
    """Predictor inputs from zero-cost scores: ``kind`` ``"zero_cost"`` (the standardised scores of the
    ``scorer``'s proxies, one column each) or ``"both"`` (those and the space's encoding). Scores are cached."""

    def __init__(self, space: SearchSpace, scorer: Any, kind: str) -> None:
        if kind not in ("zero_cost", "both"):
            raise ConfigError(f"zero-cost predictor features: 'zero_cost' or 'both', got {kind!r}")
        self.space, self.scorer, self.kind = space, scorer, kind
        self.cache: dict[str, np.ndarray] = {}

    def matrix(self, arch_ids: Sequence[str]) -> np.ndarray:
        """(n, f): one row per architecture."""
        new = [a for a in dict.fromkeys(arch_ids) if a not in self.cache]
        if new:
            z = self.scorer.zscores(self.scorer.raw(new))
            cols = np.column_stack([z[n] for n in self.scorer.names])
            self.cache.update({a: cols[i] for i, a in enumerate(new)})
        m = np.array([self.cache[a] for a in arch_ids]).reshape(len(arch_ids), len(self.scorer.names))
        return m if self.kind == "zero_cost" else np.hstack([m, encode_ids(self.space, list(arch_ids))])


class ZeroCostAccuracy:
    """A zero-cost proxy's score as the accuracy (larger = better; a standardised score, not a percentage: only
    its order means anything): each architecture's network scored at initialisation on one batch of training
    images (:class:`orchestrator.search.zero_cost.ZeroCostScorer`).

    Seconds per architecture, computed once (cached). The oracle is provisional: an additive model of the
    scores computed so far; what a search chooses on it is scored for real.
    """

    name = "zero_cost"

    def __init__(self, space: SearchSpace, scorer: Any) -> None:
        self.space = space
        self.scorer = scorer
        self.cache: dict[str, float] = {}

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        new = [a for a in dict.fromkeys(arch_ids) if a not in self.cache]
        if new:
            self.cache.update(zip(new, map(float, self.scorer.scores(new)), strict=True))
        for a in arch_ids:
            yield a, self.cache[a]

    def oracle(self, known: Mapping[str, float] | None = None) -> AccuracyOracle:
        return provisional_oracle(self.space, {**self.cache, **dict(known or {})})


def provisional_oracle(space: SearchSpace, known: Mapping[str, float], alpha: float = 1.0) -> AccuracyOracle:
    """Evaluated values, and an additive (ridge) model fit on them for the rest: provisional guesses."""
    ids = list(known)
    if len(ids) < 2:
        raise ConfigError(f"an accuracy model needs at least 2 evaluated architectures, got {len(ids)}")
    model = make_predictor("additive", alpha=alpha).fit(encode_ids(space, ids), np.array([known[a] for a in ids]))

    def predict(q: Sequence[str]) -> np.ndarray:
        return np.asarray(model.predict(encode_ids(space, list(q))), dtype=float)

    return AccuracyOracle(known, EVALUATED, predict, predictions_final=False, additive=model)
