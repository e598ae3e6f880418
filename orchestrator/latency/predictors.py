"""Latency predictors: scikit-learn estimators.

``fit(X, latency_ms)`` returns ``self``; learned state ends in ``_``;
``predict(X)`` returns milliseconds; ``get_params`` / ``set_params``,
``sklearn.base.clone`` and ``score`` (R^2) work, so ``cross_val_score`` and
grid searches take them. Predictors pickle, and save to / load from a ``.npz``
file holding their arrays and a JSON header with a format version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from orchestrator.errors import PredictorError
from orchestrator.registry import Registry

FORMAT_VERSION = 1


@runtime_checkable
class LatencyPredictor(Protocol):
    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> LatencyPredictor: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


PREDICTORS: Registry[type] = Registry("predictor")


def _check_xy(X: np.ndarray, y: np.ndarray | None = None,
              positive: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` as a float (n, d) matrix and ``y`` as n finite values, positive where ``positive`` (a model fitted
    on log values); raises PredictorError naming the problem."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise PredictorError(f"X must be a 2-D matrix of encodings (n, d), got shape {X.shape}")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != len(X):
        raise PredictorError(f"X has {len(X)} rows but latency_ms has {len(y)} values; pass one latency per row")
    if len(y) == 0:
        raise PredictorError("no training rows; pass at least one measured architecture")
    if not np.all(np.isfinite(y)):
        raise PredictorError("latency_ms must be finite; drop unmeasured (NaN) rows before fit")
    if positive and np.any(y <= 0):
        raise PredictorError(f"latency_ms must be positive for this model (it fits log values), got "
                             f"{float(y.min())}; use the additive predictor for values that can be 0 (an accuracy)")
    return X, y


class _Base(RegressorMixin, BaseEstimator):
    """What each registered predictor declares, read from its class (``PREDICTORS.get(name)``) without building
    it: ``additive`` (a sum of per-feature terms, ``X @ coef_ + intercept_``: the MILP search and the latency
    budget's check at validation need one) and ``seeded`` (its fit draws random numbers from a ``seed``
    parameter, which :func:`make_predictor` forwards)."""

    kind = ""
    additive: bool = False
    seeded: bool = False

    def _check_fitted(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            raise PredictorError(f"{type(self).__name__} is not fitted; call fit(X, latency_ms) first")
        X, _ = _check_xy(X)
        if X.shape[1] != self.n_features_in_:
            raise PredictorError(
                f"{type(self).__name__} was fitted on {self.n_features_in_} features, got {X.shape[1]}; "
                f"encode architectures with the same search space"
            )
        return X

    def state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


@PREDICTORS.register("additive", help="per-op additive model (ridge on the encoding; a lookup table)")
class AdditivePredictor(_Base):
    """Latency as a sum of per-feature costs: ``X @ coef_ + intercept_``.

    On a one-hot encoding this is exactly an operator lookup table; it is fast,
    interpretable, and the linear proxy that AdaProxy adapts.
    """

    kind = "additive"
    additive = True

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> AdditivePredictor:
        if self.alpha < 0:
            raise PredictorError(f"alpha must be >= 0, got {self.alpha}")
        X, y = _check_xy(X, latency_ms, positive=False)  # linear: a value of 0 (a subnet's 0 % accuracy) is fine
        assert y is not None
        self.intercept_ = float(y.mean())
        A = X.T @ X + self.alpha * np.eye(X.shape[1])
        self.coef_ = np.linalg.solve(A, X.T @ (y - self.intercept_))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._check_fitted(X)
        return X @ self.coef_ + self.intercept_

    def state(self) -> dict[str, np.ndarray]:
        return {"coef_": self.coef_, "intercept_": np.array(self.intercept_)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.coef_ = np.asarray(state["coef_"], dtype=np.float64)
        self.intercept_ = float(state["intercept_"])
        self.n_features_in_ = len(self.coef_)


@PREDICTORS.register("mlp", help="small MLP on the encoding, trained on log-latency (nonlinear)")
class MLPPredictor(_Base):
    """A two-hidden-layer MLP on the encoding, fitted on standardised log latency.

    Trained with full-batch Adam in PyTorch (seeded), served in NumPy.
    """

    kind = "mlp"
    seeded = True

    def __init__(self, hidden: int = 64, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-2,
                 seed: int = 0) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> MLPPredictor:
        import torch

        if self.hidden < 1 or self.epochs < 1 or self.lr <= 0:
            raise PredictorError(f"hidden and epochs must be >= 1 and lr > 0, got {self.hidden}, {self.epochs}, "
                                 f"{self.lr}")
        X, y = _check_xy(X, latency_ms)
        assert y is not None
        ly = np.log(y)
        self.y_mean_, self.y_std_ = float(ly.mean()), float(ly.std() or 1.0)
        g = torch.Generator().manual_seed(self.seed)
        d, h = X.shape[1], self.hidden
        layers = [torch.nn.Linear(d, h), torch.nn.Linear(h, h), torch.nn.Linear(h, 1)]
        with torch.no_grad():
            for lin in layers:
                bound = 1.0 / np.sqrt(lin.in_features)
                lin.weight.copy_(torch.empty_like(lin.weight).uniform_(-bound, bound, generator=g))
                lin.bias.copy_(torch.empty_like(lin.bias).uniform_(-bound, bound, generator=g))
        net = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2]).double()
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.epochs)
        xt = torch.from_numpy(X)
        yt = torch.from_numpy((ly - self.y_mean_) / self.y_std_)[:, None]
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(xt), yt)
            loss.backward()
            opt.step()
            sched.step()
        self.weights_ = [lin.weight.detach().numpy().T.copy() for lin in layers]
        self.biases_ = [lin.bias.detach().numpy().copy() for lin in layers]
        self.n_features_in_ = d
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._check_fitted(X)
        h = X
        for i, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            h = h @ w + b
            if i < len(self.weights_) - 1:
                np.maximum(h, 0.0, out=h)
        return np.exp(h[:, 0] * self.y_std_ + self.y_mean_)

    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"y_mean_": np.array(self.y_mean_), "y_std_": np.array(self.y_std_)}
        for i, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        n = sum(1 for k in state if k.startswith("w"))
        self.weights_ = [np.asarray(state[f"w{i}"]) for i in range(n)]
        self.biases_ = [np.asarray(state[f"b{i}"]) for i in range(n)]
        self.y_mean_, self.y_std_ = float(state["y_mean_"]), float(state["y_std_"])
        self.n_features_in_ = self.weights_[0].shape[0]


def make_predictor(name: str, seed: int | np.random.Generator | None = None, **params: Any) -> LatencyPredictor:
    """The registered predictor ``name`` with ``params``; ``seed`` goes to a predictor that declares ``seeded``
    (an int, or a Generator an int is drawn from, drawn only for a seeded predictor, so the generator of an
    unseeded one is left as it was) and is ignored by the others, so callers never ask which takes one."""
    cls = PREDICTORS.get(name)
    if seed is not None and predictor_declares(name, "seeded"):
        params["seed"] = int(seed.integers(2**31)) if isinstance(seed, np.random.Generator) else int(seed)
    return cls(**params)


def predictor_declares(name: str, trait: str) -> bool:
    """Whether the registered predictor ``name`` declares ``trait`` (``additive``, ``seeded``; see ``_Base``),
    asked of its class without building it; an unknown name lists the registered ones."""
    return bool(getattr(PREDICTORS.get(name), trait, False))


def save_predictor(predictor: Any, path: str | Path, **metadata: Any) -> Path:
    """Save a fitted registered predictor as ``.npz`` (arrays + JSON header with a version)."""
    if not isinstance(predictor, _Base) or predictor.kind not in PREDICTORS:
        raise PredictorError(f"only registered predictors ({', '.join(PREDICTORS.names())}) can be saved")
    if not hasattr(predictor, "n_features_in_"):
        raise PredictorError("the predictor is not fitted; fit it before saving")
    path = Path(path)
    header = {"format_version": FORMAT_VERSION, "kind": predictor.kind, "params": predictor.get_params(),
              "metadata": metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez(f, __header__=np.array(json.dumps(header)), **predictor.state())
    return path


def load_predictor(path: str | Path) -> Any:
    """Load a predictor saved by :func:`save_predictor`; errors name the file and the fix."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["__header__"]))
            state = {k: z[k] for k in z.files if k != "__header__"}
    except FileNotFoundError:
        raise PredictorError(f"{path}: no such predictor file") from None
    except (OSError, ValueError, KeyError) as e:
        raise PredictorError(f"{path}: not a saved hwnas predictor ({e}); save one with save_predictor") from None
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise PredictorError(
            f"{path}: predictor format version {version}, this hwnas reads version {FORMAT_VERSION}; "
            f"refit and save the predictor with this version"
        )
    pred = PREDICTORS.get(header["kind"])(**header["params"])
    pred.set_state(state)
    return pred
