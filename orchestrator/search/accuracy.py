"""Where a candidate's accuracy comes from: a table, the supernet evaluator pool, or a predictor.

Every source answers ``evaluate(arch_ids)`` with ``(arch_id, accuracy %)``
pairs as they finish (completion order); the search driver tells Optuna each
one as it arrives. Accuracies are percentages throughout the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from orchestrator.errors import ConfigError
from orchestrator.latency.predictors import make_predictor
from search_spaces.base import SearchSpace, encode_ids

log = logging.getLogger(__name__)


class AccuracySource(Protocol):
    name: str

    def evaluate(self, arch_ids: Sequence[str]) -> Iterator[tuple[str, float]]: ...


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


class PredictorAccuracy:
    """An accuracy predictor fit on ``n`` subnets the inner source evaluated (sampled with ``rng``).

    Cheap after the fit: every later candidate costs one prediction. The fit's
    held-out quality (SRCC on a fifth of the samples) is kept in ``quality``.
    """

    name = "predictor"

    def __init__(self, space: SearchSpace, inner: AccuracySource, n: int, rng: np.random.Generator,
                 predictor: str = "mlp") -> None:
        from orchestrator.latency.metrics import srcc

        seen: dict[str, None] = {}
        while len(seen) < n:
            seen.setdefault(space.arch_id(space.sample(rng)), None)
        ids = list(seen)
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
