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
            params = {"seed": self.seed} if self.predictor_name == "mlp" else {}
            self._model = make_predictor(self.predictor_name, **params).fit(
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
    """

    name = "predictor"

    def __init__(self, space: SearchSpace, inner: AccuracySource, n: int, rng: np.random.Generator,
                 predictor: str = "mlp") -> None:
        from orchestrator.latency.metrics import srcc

        ids = distinct_sample(space, n, rng)
        acc = dict(inner.evaluate(ids))
        y = np.array([acc[a] for a in ids])
        X = encode_ids(space, ids)
        params = {"seed": int(rng.integers(2**31))} if predictor == "mlp" else {}
        cut = max(2, n // 5)
        held = make_predictor(predictor, **params).fit(X[cut:], y[cut:])
        self.quality = {"n": n, "heldout_srcc": float(srcc(y[:cut], held.predict(X[:cut])))}
        self.model = make_predictor(predictor, **params).fit(X, y)
        self.space = space
        self.samples = acc
        log.info("accuracy predictor (%s) fit on %d evaluated subnets; held-out SRCC %.3f",
                 predictor, n, self.quality["heldout_srcc"])

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]:
        pred = self.model.predict(encode_ids(self.space, list(arch_ids)))
        for a, v in zip(arch_ids, pred, strict=True):
            yield a, float(self.samples.get(a, v))

    def oracle(self, known: Mapping[str, float] | None = None) -> AccuracyOracle:
        """The evaluated samples; the predictor elsewhere (final: this source's accuracy is the prediction)."""
        def predict(ids: Sequence[str]) -> np.ndarray:
            return np.asarray(self.model.predict(encode_ids(self.space, list(ids))), dtype=float)

        additive = self.model if hasattr(self.model, "coef_") else None
        return AccuracyOracle(self.samples, EVALUATED, predict, predictions_final=True, additive=additive)


def provisional_oracle(space: SearchSpace, known: Mapping[str, float], alpha: float = 1.0) -> AccuracyOracle:
    """Evaluated values, and an additive (ridge) model fit on them for the rest: provisional guesses."""
    ids = list(known)
    if len(ids) < 2:
        raise ConfigError(f"an accuracy model needs at least 2 evaluated architectures, got {len(ids)}")
    model = make_predictor("additive", alpha=alpha).fit(encode_ids(space, ids), np.array([known[a] for a in ids]))

    def predict(q: Sequence[str]) -> np.ndarray:
        return np.asarray(model.predict(encode_ids(space, list(q))), dtype=float)

    return AccuracyOracle(known, EVALUATED, predict, predictions_final=False, additive=model)
