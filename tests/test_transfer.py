"""Contract tests over every transfer method, and quality floors on the shipped data."""

import numpy as np
import pytest

from orchestrator.errors import TransferError
from orchestrator.latency.metrics import srcc
from orchestrator.latency.transfer import TRANSFERS, SourceSet, adapt
from search_spaces.base import encode_ids


@pytest.fixture(scope="module")
def sources_without(space, shipped):
    """``sources_without(target)``: the SourceSet of the shipped devices but ``target``, one per target for the
    module. A SourceSet caches its meta-learned multi penalties per bucket of k (seconds each), seeded by the
    bucket alone, so sharing one between tests changes no result, only how often that selection is computed."""
    made: dict[str, SourceSet] = {}

    def get(target: str) -> SourceSet:
        if target not in made:
            made[target] = SourceSet.from_table(shipped.select([d for d in shipped.devices if d != target]), space)
        return made[target]

    return get


@pytest.fixture(scope="module")
def setup(space, shipped, sources_without):
    target = "pixel3"
    src = sources_without(target)
    X = encode_ids(space, shipped.archs)
    return src, X, shipped.column(target)


@pytest.mark.parametrize("method", TRANSFERS.names())
def test_contract(method, setup):
    src, X, y = setup
    before = (src.Y.copy(), [lin.coef_.copy() for lin in src.linear], src.X.copy())
    pick = np.random.default_rng(3).choice(len(y), 12, replace=False)
    p1 = adapt(method, src, X[pick], y[pick], np.random.default_rng(0))
    p2 = adapt(method, src, X[pick[:8]], y[pick[:8]] * 3, np.random.default_rng(0))
    assert p1 is not p2
    pred = p1.predict(X)
    assert pred.shape == (len(X),) and np.all(np.isfinite(pred))
    assert srcc(pred, y) > 0.5  # signal; quality floors are tested below
    # sources are never mutated
    np.testing.assert_array_equal(src.Y, before[0])
    np.testing.assert_array_equal(src.X, before[2])
    for lin, coef in zip(src.linear, before[1], strict=True):
        np.testing.assert_array_equal(lin.coef_, coef)
    # deterministic for a given generator
    np.testing.assert_allclose(adapt(method, src, X[pick], y[pick], np.random.default_rng(0)).predict(X[:50]),
                               pred[:50])
    with pytest.raises(TransferError, match="at least 3"):
        adapt(method, src, X[:2], y[:2])
    with pytest.raises(TransferError, match="positive"):
        adapt(method, src, X[:4], np.array([1.0, 2.0, -1.0, 3.0]))


def test_adaproxy_is_additive_over_encoding(setup):
    src, X, y = setup
    p = adapt("adaproxy", src, X[:20], y[:20])
    assert p.coef_.shape == (X.shape[1],)  # a standalone, saveable additive predictor


def test_reuse_keeps_proxy_ranking(setup):
    src, X, y = setup
    p = adapt("reuse", src, X[:10], y[:10])
    assert srcc(p.predict(X), src.latency(X)[:, p.index]) == pytest.approx(1.0)


def leave_one_out(space, shipped, methods, ks, draws, sources_without):
    X = encode_ids(space, shipped.archs)
    out = {(m, k): [] for m in methods for k in ks}
    for ti, target in enumerate(shipped.devices):
        y = shipped.column(target)
        measured = np.where(~np.isnan(y))[0]
        src = sources_without(target)
        for k in ks:
            rng = np.random.default_rng([ti, k])
            for _ in range(draws):
                pick = rng.choice(measured, k, replace=False)
                rest = np.setdiff1d(measured, pick)
                for m in methods:
                    p = adapt(m, src, X[pick], y[pick], np.random.default_rng(0))
                    out[(m, k)].append(srcc(p.predict(X[rest]), y[rest]))
    return {key: float(np.mean(v)) for key, v in out.items()}


@pytest.mark.slow
def test_multi_beats_adaproxy_on_shipped_devices(space, shipped, sources_without):
    """Leave-one-device-out on the six shipped devices (floors set below the measured means)."""
    res = leave_one_out(space, shipped, ["multi", "adaproxy"], [10, 20], draws=2, sources_without=sources_without)
    for k in (10, 20):
        assert res[("multi", k)] > res[("adaproxy", k)]
    assert res[("multi", 10)] >= 0.88
    assert res[("multi", 20)] >= 0.90


def test_transfer_quality_floor_single_target(space, shipped, sources_without):
    """Fast floor: eyeriss from the five others with k=10 (measured mean about 0.93)."""
    X = encode_ids(space, shipped.archs)
    y = shipped.column("eyeriss")
    src = sources_without("eyeriss")
    rng = np.random.default_rng(5)
    scores = []
    for _ in range(3):
        pick = rng.choice(len(y), 10, replace=False)
        rest = np.setdiff1d(np.arange(len(y)), pick)
        scores.append(srcc(adapt("multi", src, X[pick], y[pick], rng).predict(X[rest]), y[rest]))
    assert np.mean(scores) >= 0.85


def test_source_set_uses_measurements_where_known(space, shipped):
    src = SourceSet.from_table(shipped.select(["edgetpu", "fpga"]), space)
    X = encode_ids(space, shipped.archs[:30])
    L = src.latency(X)
    np.testing.assert_allclose(L[:, 1], shipped.column("fpga")[:30])
    et = shipped.column("edgetpu")[:30]
    ok = ~np.isnan(et)
    np.testing.assert_allclose(L[ok, 0], et[ok])
    assert np.all(L[~ok, 0] > 0)  # blanks filled with the additive model


def test_source_set_rejects_unmeasured_source(space, shipped):
    t = shipped.select(["fpga"])
    t.values[5:, 0] = np.nan
    with pytest.raises(TransferError, match="'fpga' has 5 measured"):
        SourceSet.from_table(t, space)


def test_many_targets_independent_of_order_and_company(space, shipped):
    """A target's prediction does not depend on the other targets in the call (shared caches are seeded by k)."""
    from orchestrator.latency.table import LatencyTable
    from orchestrator.latency.transfer_job import transfer_many

    sources = shipped.select(["edgetpu", "eyeriss", "fpga", "raspi4"])
    rng = np.random.default_rng(11)
    cols, names = [], []
    for name, k in (("pixel3", 12), ("edgegpu", 7), ("pixel3b", 30)):
        y = shipped.column(name.rstrip("b"))
        col = np.full(len(y), np.nan)
        pick = rng.choice(np.where(~np.isnan(y))[0], k, replace=False)
        col[pick] = y[pick]
        cols.append(col)
        names.append(name)
    full = LatencyTable(list(shipped.archs), names, np.stack(cols, axis=1), "targets")
    archs = list(shipped.archs[:300])
    together = {r.target: r.predictions for r in transfer_many(space, sources, full, archs, method="multi")}
    for j in (2, 0, 1):
        alone = LatencyTable(list(shipped.archs), [names[j]], full.values[:, [j]], "one target")
        (res,) = transfer_many(space, sources, alone, archs, method="multi")
        np.testing.assert_allclose(res.predictions, together[names[j]], rtol=1e-9)


def test_k_bucket():
    from orchestrator.latency.transfer import K_BUCKETS, k_bucket

    assert k_bucket(3) == 3 and k_bucket(7) == 6 and k_bucket(20) == 20 and k_bucket(49) == 40
    assert k_bucket(10**6) == K_BUCKETS[-1]
    assert all(k_bucket(k) <= k for k in range(3, 2000))


def _noise(n_rows, n_cols, seed=0):
    """Latencies of devices unrelated to anything: random positive numbers per architecture."""
    return np.exp(np.random.default_rng(seed).normal(0.0, 0.5, size=(n_rows, n_cols)))


def test_a_copy_of_one_source_is_predicted_by_it_among_unrelated_sources(space, shipped):
    """The target is pixel3 (scaled): with pixel3 among 30 unrelated sources, multi finds it and ranks like it."""
    X = encode_ids(space, shipped.archs)
    names = [f"noise{i}" for i in range(30)] + ["pixel3"]
    src = SourceSet(names, X, np.c_[_noise(len(X), 30), shipped.column("pixel3")], space.encoding_groups())
    y = 3.0 * shipped.column("pixel3")
    for d in range(3):
        pick = np.random.default_rng(d).choice(len(X), 10, replace=False)
        rest = np.setdiff1d(np.arange(len(X)), pick)
        pred = adapt("multi", src, X[pick], y[pick], np.random.default_rng(0))
        assert srcc(pred.predict(X[rest]), y[rest]) > 0.99
        assert pred.describe().startswith("pixel3") and pred.shares["pixel3"] > 0.9


def test_a_noise_source_does_not_hurt(space, shipped, sources_without):
    """Adding a random-noise device to the five real sources leaves the mean SRCC where it was (within noise)."""
    from orchestrator.latency.transfer import predictable

    X = encode_ids(space, shipped.archs)
    diffs = []
    for target in ("pixel3", "edgegpu"):
        others = [d for d in shipped.devices if d != target]
        real = sources_without(target)
        noisy = SourceSet([*others, "noise"], X, np.c_[shipped.select(others).values, _noise(len(X), 1)],
                          space.encoding_groups())
        assert list(predictable(noisy)) == [True] * 5 + [False]  # noise cannot teach transfer
        y = shipped.column(target)
        measured = np.flatnonzero(~np.isnan(y))
        for d in range(4):
            pick = np.random.default_rng([d, 7]).choice(measured, 10, replace=False)
            rest = np.setdiff1d(measured, pick)
            a = srcc(adapt("multi", real, X[pick], y[pick]).predict(X[rest]), y[rest])
            b = srcc(adapt("multi", noisy, X[pick], y[pick]).predict(X[rest]), y[rest])
            diffs.append(b - a)
    # within noise: two standard errors of the mean of the paired differences (at least 0.01)
    assert np.mean(diffs) > -max(0.01, 2 * np.std(diffs, ddof=1) / np.sqrt(len(diffs))), diffs


def _additive_devices(n_devices: int, noise: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X one-hot (600, 8 layers x 4 choices), Y (600, n_devices)): additive devices (a shared per-block cost
    scaled per device) with ``noise``: "ms" rounds each device to its own whole milliseconds (a phone's report);
    "interaction" adds a large non-additive term every device shares (two layers' blocks together)."""
    rng = np.random.default_rng(seed)
    ops = rng.integers(0, 4, size=(600, 8))
    X = np.zeros((600, 32), dtype=np.float32)
    X[np.arange(600)[:, None], np.arange(8) * 4 + ops] = 1.0
    base = rng.uniform(0.5, 2.0, size=32)
    Y = np.empty((600, n_devices))
    for s in range(n_devices):
        w = base * rng.uniform(0.6, 1.4, size=32)
        y = 5.0 + X @ w
        if noise == "ms":
            y = np.round(y / rng.uniform(1.5, 3.0)) + 1.0
        else:
            y = y + 6.0 * ((ops[:, 0] == ops[:, 1]) & (ops[:, 2] == 3)) + rng.normal(0, 0.05, 600)
        Y[:, s] = y
    return X, Y


@pytest.mark.parametrize("noise, smooth", [("ms", True), ("interaction", False)])
def test_multi_uses_smoothed_sources_only_where_the_sources_say_so(noise, smooth):
    """The meta-learning on the sources picks the sources' additive fits as columns where the sources are additive
    but report whole milliseconds, and their measurements where a shared non-additive term carries the ranking;
    the target's predictor follows the choice."""
    from orchestrator.latency.transfer import select_multi

    X, Y = _additive_devices(7, noise)
    src = SourceSet([f"d{i}" for i in range(6)], X, Y[:, :6])
    assert select_multi(src, 10)[2] is smooth
    pick = np.random.default_rng(1).choice(len(X), 10, replace=False)
    pred = adapt("multi", src, X[pick], Y[pick, 6])
    assert pred.smooth is smooth
    np.testing.assert_allclose(src.smoothed(X[:5]), np.stack([lin.predict(X[:5]) for lin in src.linear], 1))


@pytest.mark.parametrize("method", TRANSFERS.names())
def test_a_source_in_another_unit_transfers_the_same(method, space, shipped):
    """A source device's latencies in microseconds instead of milliseconds (x1000) predict the same target
    latencies: a break test found adaproxy's penalty on its per-feature residual tied to the proxy's unit."""
    devices = ["pixel3"]  # one source, as with sweep.sources: proxy
    table = shipped.select(devices)
    X = encode_ids(space, table.archs)
    y = shipped.column("raspi4")
    pick = np.random.default_rng(5).choice(len(y), 10, replace=False)
    preds = []
    for factor in (1.0, 1000.0):
        Y = table.values.copy()
        Y[:, 0] *= factor
        src = SourceSet(devices, X, Y, space.encoding_groups() if hasattr(space, "encoding_groups") else None)
        preds.append(adapt(method, src, X[pick], y[pick], np.random.default_rng(0)).predict(X[:500]))
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6)
