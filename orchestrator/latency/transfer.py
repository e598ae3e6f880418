"""Proxy-to-target latency transfer.

Every method takes fully (or mostly) measured *source* devices and k measured
samples of a *target*, and returns a **new** predictor for the target; sources
are never mutated, so one :class:`SourceSet` serves any number of targets.

- ``reuse``: the proxy's latencies as they are (its ranking), mapped to the
  target's milliseconds by a positive affine fit on the k samples.
- ``adaproxy``: OneProxy's adaptation (SIGMETRICS 2022): a linear proxy
  predictor ``w`` is adapted as ``X (w * (a + b)) + c`` with an L2 penalty on
  ``b``, the penalty chosen by leave-one-out cross-validation on the k samples.
- ``multi``: all sources at once. The target is modelled as a combination of
  the sources' latencies plus a residual over coarse (per-op count) and fine
  (per-edge) encoding features, each group with its own ridge penalty. The
  penalties are meta-learned *on the sources*: each source in turn plays a
  target with k samples, predicted from the others, and the penalties that rank
  those pseudo-targets best are used (cached per bucket of k, so many targets
  share it) unless they do not clearly beat per-target leave-one-out selection,
  or, with k >= 10, the target's own LOO error vetoes them. The source columns are
  the sources' measured latencies or their additive fits' predictions
  (``SourceSet.smoothed``: the measurement noise of sources that report whole
  milliseconds left out), whichever ranks the same pseudo-targets better.
- ``auto``: chooses one of the above per target by K-fold cross-validation on
  its k samples (pooled out-of-fold SRCC).

For reuse and adaproxy the proxy is the source whose latencies rank the k
target samples best.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.errors import TransferError
from orchestrator.latency.metrics import srcc
from orchestrator.latency.predictors import AdditivePredictor, LatencyPredictor
from orchestrator.latency.ridge_dual import dual_applies, ridge_many_dual
from orchestrator.latency.selection_cache import cached_selection, selection_key
from orchestrator.latency.table import LatencyTable
from orchestrator.ranks import average_ranks, is_constant
from orchestrator.registry import Registry
from search_spaces.base import SearchSpace, encode_ids

log = logging.getLogger(__name__)

MIN_SAMPLES = 3


def min_source_samples(n_features: int) -> int:
    """The measured architectures a source device needs (its additive fit over ``n_features`` encoding columns)."""
    return max(MIN_SAMPLES, 2 * n_features // 10)


class SourceSet:
    """Source devices: their measured latencies and a fitted additive model each.

    ``latency(X)`` returns, per source, the measured latency where the
    architecture is in the sources' table and the additive model's prediction
    elsewhere.
    """

    def __init__(self, names: Sequence[str], X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None,
                 alpha: float = 1e-3, seed: int = 0) -> None:
        X = np.asarray(X, dtype=np.float32)
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2 or Y.shape != (len(X), len(names)):
            raise TransferError(f"source latencies must have shape ({len(X)}, {len(names)}), got {Y.shape}")
        if not names:
            raise TransferError("no source devices; give at least one fully measured source device")
        self.names = list(names)
        self.seed = seed
        self.X = X
        self.Y = Y
        self.groups = None if groups is None else np.asarray(groups, dtype=np.float32)
        self.linear: list[AdditivePredictor] = []
        for s, name in enumerate(self.names):
            ok = ~np.isnan(Y[:, s])
            if ok.sum() < min_source_samples(X.shape[1]):
                raise TransferError(
                    f"source device {name!r} has {int(ok.sum())} measured architectures; a source must be "
                    f"fully or mostly measured (at least {min_source_samples(X.shape[1])})"
                )
            self.linear.append(AdditivePredictor(alpha).fit(X[ok], Y[ok, s]))
        self._row = {r.tobytes(): i for i, r in enumerate(X)}
        self.floor = 0.05 * np.nanmin(np.where(np.isnan(self.Y), np.inf, self.Y), axis=0)
        self.filled = self._fill(X, np.arange(len(X)))
        self.scale = np.nanmean(self.filled, axis=0)
        self._cache: dict[bytes, np.ndarray] = {}
        self._hparams: dict[tuple[int, int], tuple[tuple[float, float, float] | str, int, bool]] = {}

    @classmethod
    def from_table(cls, table: LatencyTable, space: SearchSpace, seed: int = 0) -> SourceSet:
        groups = space.encoding_groups() if hasattr(space, "encoding_groups") else None
        return cls(table.devices, encode_ids(space, table.archs), table.values, groups, seed=seed)

    def _fill(self, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(X), len(self.names)))
        for s, lin in enumerate(self.linear):
            out[:, s] = lin.predict(X)
        known = rows >= 0
        if known.any():
            meas = self.Y[rows[known]]
            sub = out[known]
            np.copyto(sub, meas, where=~np.isnan(meas))
            out[known] = sub
        return np.maximum(out, self.floor)

    def rows(self, X: np.ndarray) -> np.ndarray:
        """Index of each row of ``X`` in the sources' table, -1 where absent."""
        X = np.asarray(X, dtype=np.float32)
        return np.array([self._row.get(r.tobytes(), -1) for r in X], dtype=np.int64)

    def latency(self, X: np.ndarray) -> np.ndarray:
        """(n, n_sources) latencies in ms: measured where known, predicted elsewhere."""
        return self._cached(X, measured=True)

    def smoothed(self, X: np.ndarray) -> np.ndarray:
        """(n, n_sources) latencies in ms of each source's additive fit (measured or not; floored like
        ``latency``): a source's measurement noise (whole milliseconds, jitter) left out."""
        return self._cached(X, measured=False)

    def _cached(self, X: np.ndarray, measured: bool) -> np.ndarray:
        """``_fill`` of ``X`` (with the measurements where ``measured``), kept for the last 17 inputs."""
        X = np.asarray(X, dtype=np.float32)
        key = (b"" if measured else b"s") + hashlib.blake2b(X.tobytes() + str(X.shape).encode(),
                                                            digest_size=16).digest()
        hit = self._cache.get(key)
        if hit is None:
            hit = self._fill(X, self.rows(X) if measured else np.full(len(X), -1))
            if len(self._cache) > 16:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = hit
        return hit

    def _buckets(self, ks: Sequence[int]) -> list[int]:
        return sorted({k_bucket(k) for k in ks if k >= MIN_SAMPLES}) if len(self.names) >= 2 else []

    def prepare(self, ks: Sequence[int]) -> SourceSet:
        """Meta-learn the ``multi`` penalties for these sample counts now (they travel with the set, so tasks
        that receive it do not redo them)."""
        for k in self._buckets(ks):
            select_multi_hparams(self, k)
        return self

    def prepared_from_cache(self, ks: Sequence[int], draws: int = 16) -> bool:
        """Take what ``prepare(ks)`` would compute from the disk cache (``selection_cache``) where all of it is
        there; whether it was (nothing is computed either way)."""
        from orchestrator.latency.selection_cache import lookup

        found = {}
        for k in self._buckets(ks):
            if (k, draws) in self._hparams:
                continue
            hit = lookup(selection_key(self.names, self.X, self.Y, self.groups, self.seed, k, draws))
            if hit is None:
                return False
            found[(k, draws)] = hit
        self._hparams.update(found)
        return True

    def best_proxy(self, X: np.ndarray, y: np.ndarray) -> int:
        """The source that ranks the target samples best (ties: highest mean SRCC to the other sources)."""
        L = self.latency(X)
        scores = [srcc(L[:, s], y) for s in range(len(self.names))]
        scores = [-2.0 if np.isnan(v) else v for v in scores]
        if len(self.names) > 1:
            R = _rank_columns(self.filled)
            C = np.corrcoef(R, rowvar=False)
            tie = [(C[s].sum() - 1) / (len(self.names) - 1) for s in range(len(self.names))]
        else:
            tie = [0.0]
        return max(range(len(self.names)), key=lambda s: (round(scores[s], 9), tie[s]))


# -- predictors returned by transfer methods ----------------------------------------


@dataclass
class SourceAffinePredictor:
    """``a * source_latency + c`` for one source of a SourceSet (a > 0: the source's ranking)."""

    sources: SourceSet
    index: int
    a: float
    c: float

    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> SourceAffinePredictor:
        raise TransferError("transferred predictors are fitted by adapt(); call a transfer method instead")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.a * self.sources.latency(X)[:, self.index] + self.c

    @property
    def proxy(self) -> str:
        return self.sources.names[self.index]


@dataclass
class MultiSourcePredictor:
    """Ridge combination of source latencies and encoding features (see module doc)."""

    sources: SourceSet
    theta: np.ndarray
    y_scale: float
    hparams: tuple[float, float, float]
    selected: np.ndarray | None = None  # indices of the sources used (None: all)
    shares: dict[str, float] | None = None  # each used source's share of the fitted combination on the k samples
    log_fit: bool = False  # fitted in log latency (the fit in ms predicted zero or less)
    linear_min_ms: float | None = None  # where log_fit: the lowest latency the fit in ms predicted
    smooth: bool = False  # source columns: the sources' additive fits (SourceSet.smoothed), not their measurements

    def describe(self, top: int = 5) -> str:
        """The sources it uses, most weight first (e.g. ``raspi4 0.61, fpga 0.22``)."""
        items = sorted((self.shares or {}).items(), key=lambda kv: -kv[1])
        return ", ".join(f"{n} {w:.2f}" for n, w in items[:top])

    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> MultiSourcePredictor:
        raise TransferError("transferred predictors are fitted by adapt(); call a transfer method instead")

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = _multi_design(self.sources, X, keep=self.selected, log=self.log_fit, smooth=self.smooth) @ self.theta
        return (np.exp(z) if self.log_fit else z) * self.y_scale


# -- methods -------------------------------------------------------------------------

TransferFn = Callable[[SourceSet, np.ndarray, np.ndarray, np.random.Generator], LatencyPredictor]
TRANSFERS: Registry[TransferFn] = Registry("transfer method")


def _check(sources: SourceSet, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[1] != sources.X.shape[1]:
        raise TransferError(
            f"target encodings have shape {X.shape}; sources use {sources.X.shape[1]} features per architecture"
        )
    if len(y) != len(X):
        raise TransferError(f"{len(X)} target architectures but {len(y)} latencies")
    if len(y) < MIN_SAMPLES:
        raise TransferError(f"{len(y)} target samples; transfer needs at least {MIN_SAMPLES} measured architectures")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise TransferError("target latencies must be positive and finite")
    return X, y


# A latency is positive: a fit that predicts zero or less anywhere on the sources' architectures is constrained
# (refitted in log latency, a positive scale, or held at this share of the target's fastest measured sample,
# the floor the sources' own fill uses).
FLOOR_SHARE = 0.05


def latency_floor(y: np.ndarray) -> float:
    """The latency (ms) a constrained transfer fitted on the target samples ``y`` is held at, at the least."""
    return FLOOR_SHARE * float(np.min(y))


def affine_positive(p: np.ndarray, y: np.ndarray, p_min: float | None = None) -> tuple[float, float]:
    """Least-squares y ~ a p + c with a > 0 (falls back to a scale ratio, y ~ a p). With ``p_min``, the
    smallest p the map will be applied to: where the affine map would take it to zero or below (a negative
    intercept), the scale ratio instead, positive for every positive p."""
    if np.ptp(p) > 0:
        a, c = np.polyfit(p, y, 1)
        if a > 0 and (p_min is None or a * p_min + c > 0):
            return float(a), float(c)
        if a > 0:
            log.warning("the affine map of the proxy's latency would predict %.3g ms for its fastest architecture; "
                        "using a positive scale without offset", a * p_min + c)
    return float(y.mean() / max(p.mean(), 1e-12)), 0.0


@dataclass
class FlooredPredictor:
    """A transferred predictor whose predictions are held at or above ``floor_ms`` (and flagged): the last guard
    for methods that cannot refit in log latency (``adaproxy``'s additive adaptation)."""

    inner: LatencyPredictor
    floor_ms: float
    linear_min_ms: float  # the lowest latency the unconstrained fit predicted on the sources' architectures

    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> FlooredPredictor:
        raise TransferError("transferred predictors are fitted by adapt(); call a transfer method instead")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(self.inner.predict(X), dtype=float), self.floor_ms)


@TRANSFERS.register("reuse", help="the proxy's latency ranking as is (right when SRCC >= 0.9)")
def reuse(sources: SourceSet, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> LatencyPredictor:
    X, y = _check(sources, X, y)
    s = sources.best_proxy(X, y)
    a, c = affine_positive(sources.latency(X)[:, s], y, p_min=float(np.min(sources.filled[:, s])))
    return SourceAffinePredictor(sources, s, a, c)


# The penalties adaproxy's leave-one-out chooses among, on the residual of costs in units of the proxy's mean
# latency: the old grid (1e-4 .. 1e4 on costs in ms) spans 1e-4/m^2 .. 1e4/m^2 here for a proxy of mean m ms,
# and this one covers it for proxies of 0.3 to 300 ms.
_ADAPROXY_GRID = tuple(10.0 ** (e / 2) for e in range(-18, 11))  # half decades


def _mean_prediction(model: AdditivePredictor, X: np.ndarray) -> float:
    """The mean of ``model``'s predictions on ``X`` (its scale), 1.0 where that is not a positive number."""
    m = float(np.mean(model.predict(X)))
    return m if np.isfinite(m) and m > 0 else 1.0


def _ridge(F: np.ndarray, y: np.ndarray, pen: np.ndarray) -> np.ndarray:
    if dual_applies(F, pen[None, :]):  # fewer samples than features: the same fit as k x k solves
        return ridge_many_dual(F, y, pen[None, :])[0][0]
    return np.linalg.lstsq(F.T @ F + np.diag(pen), F.T @ y, rcond=None)[0]


def _ridge_many(F: np.ndarray, y: np.ndarray, pens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge fits for a batch of penalty vectors at once.

    Returns ``thetas`` (n_pens, p) and the leave-one-out residuals (n_pens, k)
    from the hat matrix's diagonal (the closed form for linear smoothers).
    With fewer samples than features, the same fits in the dual form (``ridge_dual``: k x k solves).
    """
    if dual_applies(F, pens):
        return ridge_many_dual(F, y, pens)
    G = F.T @ F
    A = G[None, :, :] + pens[:, :, None] * np.eye(F.shape[1])[None, :, :]
    rhs = np.concatenate([(F.T @ y)[:, None], F.T], axis=1)
    try:
        sol = np.linalg.solve(A, np.broadcast_to(rhs, (len(pens), *rhs.shape)))
    except np.linalg.LinAlgError:  # an unpenalised column set that is rank deficient
        sol = np.stack([np.linalg.pinv(a) @ rhs for a in A])
    thetas = sol[:, :, 0]
    h = np.clip(np.einsum("ij,nji->ni", F, sol[:, :, 1:]), 0.0, 0.99)
    loo = (y[None, :] - thetas @ F.T) / (1 - h)
    return thetas, loo


def _loo_mses(F: np.ndarray, y: np.ndarray, pens: np.ndarray) -> np.ndarray:
    """Leave-one-out mean squared error for each penalty vector (rows of ``pens``)."""
    return np.mean(_ridge_many(F, y, pens)[1] ** 2, axis=1)


@TRANSFERS.register("adaproxy", help="OneProxy's proxy adaptation: X(w*(a+b))+c, L2 on b chosen by LOO-CV")
def adaproxy(sources: SourceSet, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> LatencyPredictor:
    X, y = _check(sources, X, y)
    proxy = sources.linear[sources.best_proxy(X, y)]
    # The proxy's per-feature costs in units of its mean latency over the sources' architectures: the penalty
    # on b below then means the same whatever unit or magnitude the proxy's latencies have (ms or us, a 1 ms
    # or a 100 ms device); with the raw costs, a proxy in us made b 1000x cheaper to use (a break test).
    w = proxy.coef_ / _mean_prediction(proxy, sources.X)
    Xd = X.astype(np.float64)
    # Parameters: c (offset), a (scale), b (per-feature residual, penalised).
    F = np.hstack([np.ones((len(Xd), 1)), (Xd @ w)[:, None], Xd * w[None, :]])
    scale = float(y.mean())
    yy = y / scale
    def pen(lam: float) -> np.ndarray:
        return np.r_[0.0, 0.0, np.full(len(w), lam)]
    lam = _ADAPROXY_GRID[_loo_select(F, yy, np.stack([pen(v) for v in _ADAPROXY_GRID]))]
    c, a, *b = _ridge(F, yy, pen(lam)) * scale
    out = AdditivePredictor()
    out.set_state({"coef_": w * (a + np.asarray(b)), "intercept_": np.array(c)})
    low = float(min(out.predict(sources.X).min(), out.predict(X).min()))
    if low <= 0:
        log.warning("adaproxy: the adapted predictor goes down to %.3g ms on the sources' architectures (fastest "
                    "sample %.3g ms); its predictions are held at %.3g ms", low, float(y.min()), latency_floor(y))
        return FlooredPredictor(out, latency_floor(y), low)
    return out


def _multi_design(sources: SourceSet, X: np.ndarray, exclude: int | None = None,
                  keep: np.ndarray | None = None, log: bool = False, smooth: bool = False) -> np.ndarray:
    L = (sources.smoothed(X) if smooth else sources.latency(X)) / sources.scale
    if log:  # the fit in log latency: log source latencies (positive: SourceSet floors them)
        L = np.log(L)
    if exclude is not None:
        L = np.delete(L, exclude, axis=1)
    if keep is not None:
        L = L[:, keep]
    Xd = np.asarray(X, dtype=np.float64)
    coarse = Xd @ sources.groups.T if sources.groups is not None else np.zeros((len(Xd), 0))
    return np.hstack([np.ones((len(Xd), 1)), L, coarse, Xd])


def _multi_pen(n_src: int, n_coarse: int, n_fine: int, hp: tuple[float, float, float]) -> np.ndarray:
    return np.r_[0.0, np.full(n_src, hp[0]), np.full(n_coarse, hp[1]), np.full(n_fine, hp[2])]


# Source selection: only the m sources whose latencies rank the target's k samples most like the target
# does enter the combination (ties: the order of the sources); m is meta-learned on the sources like the
# penalties, among TOP_M (0: all of them).
TOP_M = (0, 1, 2, 3, 5, 10)
# A pseudo-target that no other source ranks like it (best SRCC on the sources' common cells below this)
# cannot teach how to transfer: it is left out of the meta-learning (a random-noise source, say).
PREDICTABLE_SRCC = 0.5
DEFAULT_HPARAMS = (1.0, 1.0, 10.0)  # when no source is a usable pseudo-target
DEFAULT_TOP_M = 3


def source_agreement(L: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each source column of ``L`` with ``y`` (-1 where a column is constant)."""
    R = _rank_columns(L)
    r = _corr_with(R, average_ranks(y))
    const = np.array([is_constant(c) for c in np.asarray(L, dtype=float).T], dtype=bool)
    return np.where(const | ~np.isfinite(r), -1.0, r)


def top_sources(agreement: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m best-agreeing sources, in source order (all when m is 0 or too large)."""
    if m <= 0 or m >= len(agreement):
        return np.arange(len(agreement))
    return np.sort(np.argsort(-agreement, kind="stable")[:m])


def predictable(sources: SourceSet) -> np.ndarray:
    """Per source: whether another source ranks it at least PREDICTABLE_SRCC alike (over the filled table)."""
    R = _rank_columns(sources.filled)
    C = np.corrcoef(R, rowvar=False) if R.shape[1] > 1 else np.ones((1, 1))
    np.fill_diagonal(C, -np.inf)
    return np.nanmax(C, axis=1) >= PREDICTABLE_SRCC


MULTI_GRID: tuple[tuple[float, float, float], ...] = tuple(
    itertools.product((1e-2, 1e-1, 1.0, 10.0), (1e-2, 1e-1, 1.0, 10.0, 100.0), (1e-1, 1.0, 10.0, 100.0, 1e3))
)


def _rank_columns(P: np.ndarray) -> np.ndarray:
    """Ranks of each column, ties (within float rounding) at their average rank: Spearman's convention, so
    no figure depends on the order of the rows (a source reporting whole milliseconds has many ties)."""
    return average_ranks(P, axis=0)


def _loo_select(F: np.ndarray, y: np.ndarray, pens: np.ndarray) -> int:
    """Index of the penalty vector with the lowest leave-one-out MSE."""
    return int(np.argmin(_loo_mses(F, y, pens)))


def _corr_with(R: np.ndarray, ry: np.ndarray) -> np.ndarray:
    R = R - R.mean(0)
    ry = ry - ry.mean()
    return (R.T @ ry) / (np.linalg.norm(R, axis=0) * np.linalg.norm(ry) + 1e-12)


LOO = "loo"
# The target's LOO error vetoes a meta-learned triple that is VETO_RATIO times
# worse than the target's best, once there are VETO_MIN_K samples to trust LOO.
VETO_RATIO = 2.0
VETO_MIN_K = 10

# Penalties are meta-learned per bucket of k, not per exact k: the best penalty
# varies slowly with k, and hundreds of targets with varied k then share a few
# selections instead of paying one each.
K_BUCKETS = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 70, 100, 150, 200, 300, 500, 1000)


def k_bucket(k: int) -> int:
    """The largest bucket <= k (k itself below the first bucket)."""
    fit = [b for b in K_BUCKETS if b <= k]
    return fit[-1] if fit else k


META_REST = 2000  # meta-learning: pseudo-targets are scored on at most this many held-out cells
META_DRAWS = 128  # meta-learning: pseudo-target draws in all (per source: 16 at most, 4 at least)


def select_multi_hparams(sources: SourceSet, k: int, draws: int = 16
                         ) -> tuple[float, float, float] | str:
    """The meta-learned penalty triple (or ``"loo"``) for k samples; see ``select_multi``."""
    return select_multi(sources, k, draws)[0]


def select_multi(sources: SourceSet, k: int, draws: int = 16
                 ) -> tuple[tuple[float, float, float] | str, int, bool]:
    """Meta-learn the multi method's penalties and source selection for k samples on the sources themselves.

    Each source that another source can predict (``predictable``) in turn is a
    pseudo-target with k random samples, predicted from the other sources with
    every penalty triple of MULTI_GRID, and also with the triple that
    leave-one-out CV on its k samples picks (strategy ``"loo"``). The triple
    with the best mean SRCC is used if it beats ``"loo"`` by more than a
    standard error, else ``"loo"``. Then, with that choice, the number of
    sources ``m`` (TOP_M: the m that agree best with the pseudo-target's k
    samples) that ranks the same pseudo-targets best, if it beats using all of
    them by more than a standard error. Returns (choice, m, smooth); cached per
    bucket of k (see ``k_bucket``). With fewer than two usable pseudo-targets:
    (DEFAULT_HPARAMS, DEFAULT_TOP_M, False).

    ``smooth``: the same pseudo-target draws are also predicted with the other
    sources' additive fits as source columns (``SourceSet.smoothed``) instead of
    their measurements; that choice (its penalties chosen as above) is used if
    its pseudo-target SRCC beats the measured columns' by more than a standard
    error of the paired difference (the measured columns otherwise, as before).

    Kept per source set in memory and on disk (``selection_cache``: keyed by the sources' data, seed, bucket,
    draws and the code that computes it; ``$HWNAS_CACHE_DIR=off`` turns the disk cache off).
    """
    k = k_bucket(k)
    key = (k, draws)
    if key not in sources._hparams:
        disk = selection_key(sources.names, sources.X, sources.Y, sources.groups, sources.seed, k, draws)
        sources._hparams[key] = cached_selection(disk, lambda: _select_multi(sources, k, draws))
    return sources._hparams[key]


def _select_multi(sources: SourceSet, k: int, draws: int) -> tuple[tuple[float, float, float] | str, int, bool]:
    """``select_multi`` computed (``k`` already bucketed), without the caches."""
    # Seeded by the bucket alone, so a target's result does not depend on the
    # order in which targets are adapted (the selection is shared and cached).
    rng = np.random.default_rng([sources.seed, k, draws])
    S = len(sources.names)
    n_coarse = 0 if sources.groups is None else len(sources.groups)
    d = sources.X.shape[1]
    pens = np.stack([_multi_pen(S - 1, n_coarse, d, hp) for hp in MULTI_GRID])
    modes = (False, True)  # source columns: measured, smoothed
    rows: dict[bool, list[np.ndarray]] = {m: [] for m in modes}
    seen: dict[bool, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]] = {m: [] for m in modes}
    usable = predictable(sources)
    # bounded in the number of sources: about META_DRAWS pseudo-target draws in all (16 each up to 8 sources)
    draws = min(draws, max(4, -(-META_DRAWS // max(1, int(usable.sum())))))
    for t in range(S):
        ok = np.where(~np.isnan(sources.Y[:, t]))[0]
        if len(ok) <= k + 2 or not usable[t]:
            continue
        Falls = {m: _multi_design(sources, sources.X[ok], exclude=t, smooth=m) for m in modes}
        yall = sources.Y[ok, t]
        ry = None
        for _ in range(draws):
            pick = rng.choice(len(ok), size=k, replace=False)
            rest = np.setdiff1d(np.arange(len(ok)), pick)
            if len(rest) > META_REST:  # scored on a random subset: bounded on a large table (the whole NB201 space)
                rest = np.sort(rng.choice(rest, size=META_REST, replace=False))
            ry = average_ranks(yall[rest])
            yk = yall[pick] / yall[pick].mean()
            for mode, Fall in Falls.items():
                thetas, loo = _ridge_many(Fall[pick], yk, pens)
                r = _corr_with(_rank_columns(Fall[rest] @ thetas.T), ry)
                j = int(np.argmin(np.mean(loo**2, axis=1)))
                rows[mode].append(np.r_[r, r[j]])
                seen[mode].append((Fall, yall, pick, rest, j))
    best: tuple[float, float, float] | str = DEFAULT_HPARAMS
    m = DEFAULT_TOP_M
    smooth = False
    if len(rows[False]) >= 2:
        choice: dict[bool, tuple[float, float, float] | str] = {}
        score: dict[bool, np.ndarray] = {}
        for mode in modes:
            R = np.stack(rows[mode])
            i = int(np.argmax(R[:, :-1].mean(0)))
            # A fixed triple must beat the target's own LOO choice by more than one
            # standard error of the paired difference: when the sources are alike
            # and the target is not, their consensus is weak evidence.
            diff = R[:, i] - R[:, -1]
            choice[mode] = MULTI_GRID[i] if _beats(diff) else LOO
            score[mode] = R[:, i] if choice[mode] != LOO else R[:, -1]
        smooth = _beats(score[True] - score[False])
        best = choice[smooth]
        m = _select_top_m(seen[smooth], best, S - 1, n_coarse, d) if S >= 3 else 0
    log.debug("multi penalties for k=%d: %s, sources: %s, columns: %s", k, best, f"the best {m}" if m else "all",
              "smoothed" if smooth else "measured")
    return best, int(m), bool(smooth)


def _beats(diff: np.ndarray) -> bool:
    """Whether paired differences are positive by more than one standard error of their mean."""
    diff = np.nan_to_num(np.asarray(diff, dtype=float), nan=0.0)
    return bool(len(diff) >= 2 and diff.mean() > diff.std(ddof=1) / np.sqrt(len(diff)))


def _select_top_m(seen: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]],
                  best: tuple[float, float, float] | str, n_src: int, n_coarse: int, d: int) -> int:
    """How many of the best-agreeing sources rank the pseudo-targets best with the chosen penalties."""
    options = [m for m in TOP_M if m < n_src]  # 0 (all) first
    scores = []
    for Fall, yall, pick, rest, j in seen:
        hp = MULTI_GRID[j] if best == LOO else best
        Fk, yk = Fall[pick], yall[pick] / yall[pick].mean()
        agree = source_agreement(Fk[:, 1:1 + n_src], yk)
        Frest = Fall[rest]  # once per draw (not a column subset per option: a copy each, the bulk of the time)
        row = []
        for m in options:
            cols = _design_columns(top_sources(agree, m), n_src, Fall.shape[1])
            theta = np.zeros(Fall.shape[1])
            theta[cols] = _ridge(Fk[:, cols], yk, _multi_pen(len(cols) - (Fall.shape[1] - n_src), n_coarse, d, hp))
            row.append(srcc(Frest @ theta, yall[rest]))
        scores.append(row)
    R = np.nan_to_num(np.asarray(scores), nan=-1.0)
    i = int(np.argmax(R.mean(0)))
    diff = R[:, i] - R[:, 0]
    return options[i] if i and diff.mean() > diff.std(ddof=1) / np.sqrt(len(diff)) else 0


def _design_columns(keep: np.ndarray, n_src: int, width: int) -> np.ndarray:
    """Columns of a multi design with only the sources ``keep`` (intercept and features always)."""
    return np.r_[0, 1 + np.asarray(keep, dtype=int), np.arange(1 + n_src, width)]


@TRANSFERS.register("multi", help="several sources at once, penalties meta-learned on the sources")
def multi(sources: SourceSet, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> LatencyPredictor:
    X, y = _check(sources, X, y)
    S = len(sources.names)
    n_coarse = 0 if sources.groups is None else len(sources.groups)
    # With one source there is nothing to meta-learn from: leave-one-out on the samples.
    choice, m, smooth = select_multi(sources, len(y)) if S >= 2 else (LOO, 0, False)
    F = _multi_design(sources, X, smooth=smooth)
    scale = float(y.mean())
    yy = y / scale
    keep = top_sources(source_agreement(F[:, 1:1 + S], y), m)
    F = F[:, _design_columns(keep, S, F.shape[1])]
    S = len(keep)
    pens = np.stack([_multi_pen(S, n_coarse, X.shape[1], h) for h in MULTI_GRID])
    mse = _loo_mses(F, yy, pens)
    j = int(np.argmin(mse))
    if choice == LOO:
        hp = MULTI_GRID[j]
    elif len(y) >= VETO_MIN_K and mse[MULTI_GRID.index(choice)] > VETO_RATIO * mse[j]:
        # The target's own samples veto the sources' consensus when it is far off
        # for this target (an outlier device); with fewer samples LOO is too noisy.
        hp = MULTI_GRID[j]
    else:
        hp = choice
    theta = _ridge(F, yy, _multi_pen(S, n_coarse, X.shape[1], hp))
    contrib = np.abs(theta[1:1 + S]) * F[:, 1:1 + S].std(axis=0)
    shares = contrib / contrib.sum() if contrib.sum() > 0 else np.full(S, 1.0 / S)
    names = [sources.names[i] for i in keep]
    selected = None if m == 0 else keep
    out = MultiSourcePredictor(sources, theta, scale, hp, selected, dict(zip(names, map(float, shares), strict=True)),
                               smooth=smooth)
    low = float(out.predict(sources.X).min())
    if low <= 0:
        # The fit in ms goes to zero or below on the sources' own architectures (noisy samples with a small range
        # extrapolate to negative latencies): fit in log latency, positive by construction, and say so.
        Fl = _multi_design(sources, X, log=True, smooth=smooth)
        Fl = Fl[:, _design_columns(keep, len(sources.names), Fl.shape[1])]
        zz = np.log(y / scale)
        j = int(np.argmin(_loo_mses(Fl, zz, pens)))
        theta_l = _ridge(Fl, zz, pens[j])
        log.warning("multi: the fit in ms predicts down to %.3g ms on the sources' architectures (fastest sample "
                    "%.3g ms); fitted in log latency instead", low, float(y.min()))
        out = MultiSourcePredictor(sources, theta_l, scale, MULTI_GRID[j], selected, out.shares, log_fit=True,
                                   linear_min_ms=low, smooth=smooth)
    return out


AUTO_CANDIDATES = ("multi", "adaproxy", "reuse")


def cross_validated_srcc(method: str, sources: SourceSet, X: np.ndarray, y: np.ndarray,
                         rng: np.random.Generator, folds: int = 5) -> float:
    """Pooled out-of-fold SRCC of ``method`` on the k samples."""
    k = len(y)
    folds = min(folds, k)
    order = rng.permutation(k)
    oof = np.empty(k)
    fn = TRANSFERS.get(method)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        if len(train) < MIN_SAMPLES:
            return float("nan")
        oof[test] = fn(sources, X[train], y[train], rng).predict(X[test])
    return srcc(oof, y)


@TRANSFERS.register("auto", help="choose reuse/adaproxy/multi by cross-validation on the k samples")
def auto(sources: SourceSet, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> LatencyPredictor:
    X, y = _check(sources, X, y)
    if len(y) < MIN_SAMPLES + 2:  # too few to hold any out: the method best on public data
        return multi(sources, X, y, rng)
    scores = {m: cross_validated_srcc(m, sources, X, y, rng) for m in AUTO_CANDIDATES}
    best = max(AUTO_CANDIDATES, key=lambda m: -np.inf if np.isnan(scores[m]) else scores[m])
    log.debug("auto transfer scores %s -> %s", scores, best)
    pred = TRANSFERS.get(best)(sources, X, y, rng)
    pred.chosen_method = best  # type: ignore[union-attr]
    return pred


def adapt(method: str, sources: SourceSet, X: np.ndarray, latency_ms: np.ndarray,
          rng: np.random.Generator | None = None) -> LatencyPredictor:
    """Adapt to a target with the registered ``method``; returns a new predictor."""
    fn = TRANSFERS.get(method)
    return fn(sources, X, latency_ms, rng if rng is not None else np.random.default_rng(0))
