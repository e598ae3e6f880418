"""Contract tests over every registered predictor, plus quality floors on real data."""

import pickle

import numpy as np
import pytest

from orchestrator.errors import PredictorError
from orchestrator.latency.metrics import regression_report, srcc
from orchestrator.latency.predictors import PREDICTORS, load_predictor, make_predictor, save_predictor
from search_spaces.base import encode_ids

FAST = {"mlp": {"epochs": 150}}


@pytest.fixture(scope="module")
def data(space, shipped):
    X = encode_ids(space, shipped.archs)
    y = shipped.column("raspi4")
    order = np.random.default_rng(0).permutation(len(y))
    return X[order[:600]], y[order[:600]], X[order[600:]], y[order[600:]]


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_contract(name, data, tmp_path):
    Xtr, ytr, Xte, yte = data
    p = make_predictor(name, **FAST.get(name, {}))
    with pytest.raises(PredictorError, match="not fitted"):
        p.predict(Xte)
    assert p.fit(Xtr, ytr) is p
    pred = p.predict(Xte)
    assert pred.shape == (len(Xte),) and np.all(np.isfinite(pred))
    assert srcc(pred, yte) > 0.85  # real signal on real data
    assert any(k.endswith("_") and not k.startswith("_") for k in vars(p))  # learned state ends in _
    np.testing.assert_allclose(pickle.loads(pickle.dumps(p)).predict(Xte), pred)
    back = load_predictor(save_predictor(p, tmp_path / f"{name}.npz", device="raspi4"))
    assert type(back) is type(p)
    np.testing.assert_allclose(back.predict(Xte), pred, rtol=1e-9)
    with pytest.raises(PredictorError, match="features"):
        p.predict(Xte[:, :10])
    with pytest.raises(PredictorError, match="one latency per row"):
        make_predictor(name).fit(Xtr, ytr[:-1])
    with pytest.raises(PredictorError, match="finite"):
        make_predictor(name).fit(Xtr[:3], np.array([1.0, np.nan, 2.0]))


def test_a_value_of_zero_fits_the_additive_model_and_is_refused_by_the_log_scale_one(data):
    """An accuracy predictor's targets can be 0 (a subnet at 0 % after a short training): the additive (linear)
    model fits them; the MLP, fitted on log values, refuses them naming the additive one."""
    Xtr, ytr = data[0], data[1]
    y = np.asarray(ytr, dtype=float).copy()
    y[0] = 0.0
    p = make_predictor("additive").fit(Xtr, y)
    assert np.all(np.isfinite(p.predict(Xtr)))
    with pytest.raises(PredictorError, match="positive for this model.*additive"):
        make_predictor("mlp").fit(Xtr, y)


def test_load_errors(tmp_path, data):
    with pytest.raises(PredictorError, match="no such predictor file"):
        load_predictor(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PredictorError, match="not a saved hwnas predictor"):
        load_predictor(junk)
    Xtr, ytr, _, _ = data
    path = save_predictor(make_predictor("additive").fit(Xtr, ytr), tmp_path / "a.npz")
    import json

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["__header__"]))
    header["format_version"] = 99
    arrays["__header__"] = np.array(json.dumps(header))
    with (tmp_path / "v99.npz").open("wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(PredictorError, match="version 99"):
        load_predictor(tmp_path / "v99.npz")


@pytest.mark.parametrize("device, floor", [("fpga", 0.99), ("edgetpu", 0.97), ("edgegpu", 0.95), ("pixel3", 0.9)])
def test_additive_quality_floor(space, shipped, device, floor):
    archs, y = shipped.measured(device)
    X = encode_ids(space, archs)
    order = np.random.default_rng(1).permutation(len(y))
    tr, te = order[:800], order[800:]
    rep = regression_report(y[te], make_predictor("additive").fit(X[tr], y[tr]).predict(X[te]))
    assert rep["srcc"] >= floor
    assert set(rep) == {"rmse_ms", "mape_pct", "within10_pct", "srcc", "n"}


@pytest.mark.parametrize("name", ["additive", "mlp"])
def test_scikit_learn_clone_and_cross_validation(name, space, shipped):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    ids, y = shipped.measured("pixel3")
    X = encode_ids(space, ids[:300])
    params = {"epochs": 60} if name == "mlp" else {"alpha": 0.1}
    pred = make_predictor(name, **params)
    twin = clone(pred)
    assert twin is not pred and twin.get_params() == pred.get_params() and not hasattr(twin, "n_features_in_")
    scores = cross_val_score(pred, X, y[:300], cv=3)  # score: R^2 of the latency
    assert len(scores) == 3 and scores.min() > 0.5
    assert pred.set_params(**params) is pred


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_declared_additive_is_the_fitted_model(name, data):
    """A predictor declaring ``additive`` (read by the MILP checks and the latency budget's check at validation,
    without building it) fits ``X @ coef_ + intercept_``, the model the MILP search takes; one that does not
    declare it is not affine in the encoding."""
    from orchestrator.latency.predictors import predictor_declares

    Xtr, ytr, Xte, _ = data
    p = make_predictor(name, **FAST.get(name, {})).fit(Xtr, ytr)
    if predictor_declares(name, "additive"):
        assert hasattr(p, "coef_") and hasattr(p, "intercept_")
        np.testing.assert_allclose(p.predict(Xte), Xte @ p.coef_ + p.intercept_, rtol=1e-12)
    else:  # an affine model would give f(a) - f(b) - f(c) + f(b + c - a) = 0 on every quadruple
        a, b, c = Xte[:20], Xte[20:40], Xte[40:60]
        gap = p.predict(a) - p.predict(b) - p.predict(c) + p.predict(b + c - a)
        assert np.abs(gap).max() > 1e-6


def test_make_predictor_forwards_a_seed_to_the_predictors_that_declare_it(data, monkeypatch):
    """Callers pass a seed (an int, or a Generator) to every predictor; only one declaring ``seeded`` takes it,
    and a Generator is drawn from only for one (an unseeded predictor leaves it as it was)."""
    from orchestrator.latency.predictors import MLPPredictor, predictor_declares

    assert predictor_declares("mlp", "seeded") and not predictor_declares("additive", "seeded")
    assert make_predictor("mlp", seed=7).get_params()["seed"] == 7
    assert make_predictor("additive", seed=7).get_params() == make_predictor("additive").get_params()
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    make_predictor("additive", seed=rng)
    assert rng.integers(2**31) == twin.integers(2**31)  # untouched
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    assert make_predictor("mlp", seed=rng).get_params()["seed"] == int(twin.integers(2**31))

    class Seeded(MLPPredictor):  # a predictor registered elsewhere: declared by inheritance
        kind = "seeded-test"

    monkeypatch.setitem(PREDICTORS._items, "seeded-test", Seeded)
    monkeypatch.setitem(PREDICTORS._help, "seeded-test", "a test predictor")
    assert make_predictor("seeded-test", seed=3).get_params()["seed"] == 3
    with pytest.raises(KeyError, match="unknown predictor 'mpl'.*Did you mean 'mlp'"):
        predictor_declares("mpl", "additive")  # the registry's error: the valid names
