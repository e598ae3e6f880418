"""Issue 17 (kinds 1 and 2, the column filter) and issue 23 (items 2 and 3): ranks with ties, degenerate devices,
tiny samples, negative predicted latencies and bad latency cells, each expected value through the CLI where a
user meets it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from orchestrator.cli import main
from orchestrator.errors import TableError
from orchestrator.latency.metrics import srcc
from orchestrator.latency.monotonicity import srcc_matrix
from orchestrator.latency.table import (
    HWNASBENCH_DEVICES as SHIPPED_DEVICES,  # these tests were written on the 1,999-cell table, pinned by name
)
from orchestrator.latency.table import (
    MAX_PROBLEMS_SHOWN,
    LatencyTable,
    read_table,
    shipped_table_path,
)
from orchestrator.latency.table import (
    shipped_table as shipped_table_by_name,
)
from orchestrator.latency.transfer import (
    FlooredPredictor,
    SourceSet,
    adapt,
    affine_positive,
    source_agreement,
)
from orchestrator.ranks import average_ranks, snap
from orchestrator.report import format_summary
from orchestrator.search.pareto import pareto_front
from orchestrator.search.quality import front_quality, reference_front
from orchestrator.sweep.decision import (
    copula_srcc_lower_bound,
    decide,
    empirical_srcc_lower_bound,
    exact_srcc_lower_bound,
    max_srcc_lower_bound,
    srcc_lower_bound,
)

SHIPPED = shipped_table_path("nb201-hwnasbench")


def _rows() -> list[list[str]]:
    with SHIPPED.open(newline="") as f:
        return list(csv.reader(f))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _config(tmp_path: Path, table: Path, proxy: str = "auto", targets: str = "[tabulated]", k: int = 10,
            extra: str = "") -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f"name: t\nspace: {{name: nb201}}\naccuracy: {{source: table, table_column: test_acc_cifar10_12ep}}\n"
                 f"latency: {{table: {table}, proxy: {proxy}}}\n"
                 f"search: {{algorithm: nsga2, n_trials: 100, population: 20, domain: table}}\n"
                 f"sweep: {{targets: {targets}, k: {k}{extra}}}\n")
    return p


# -- issue 23.3: every bad cell of a latency table, once ------------------------------------------------------

@pytest.fixture
def bad_csv(tmp_path):
    rows = _rows()
    h = rows[0]
    f, r = h.index("lat_ms_fpga"), h.index("lat_ms_raspi4")
    rows[2][f] = "nan"  # line 3
    rows[3][r] = "-1.5"  # line 4
    rows[5][f] = "fast"  # line 6
    rows.insert(7, list(rows[6]))  # line 8 repeats line 7
    return _write(tmp_path / "bad.csv", rows)


def test_every_bad_cell_is_reported(bad_csv, space):
    with pytest.raises(TableError) as e:
        read_table(bad_csv, space, device_prefix="lat_ms_")
    msg = str(e.value)
    assert "4 problem(s)" in msg
    for needle in ("line 3, column 'lat_ms_fpga': latency 'nan'", "line 4, column 'lat_ms_raspi4': latency '-1.5'",
                   "line 6, column 'lat_ms_fpga': latency 'fast' is not a number",
                   "line 8, column 'arch': duplicate architecture"):
        assert needle in msg


def test_many_bad_cells_are_capped_with_a_count(tmp_path, space):
    rows = _rows()
    col = rows[0].index("lat_ms_fpga")
    for i in range(1, 51):
        rows[i][col] = "x"
    with pytest.raises(TableError) as e:
        read_table(_write(tmp_path / "many.csv", rows), space, device_prefix="lat_ms_")
    msg = str(e.value)
    assert "50 problem(s)" in msg and f"... and {50 - MAX_PROBLEMS_SHOWN} more" in msg
    assert msg.count("is not a number") == MAX_PROBLEMS_SHOWN


def test_validate_reports_the_cells_and_nothing_that_follows(bad_csv, tmp_path, capsys):
    cfg = _config(tmp_path, bad_csv, proxy="fpga", targets="[edgegpu, torch-cpu, tabulated]",
                  extra=", memory_mb: {edgetpu: 1.0}")
    assert main(["validate", str(cfg)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "1 problem(s)" in text and "4 problem(s) in its rows" in text
    for follow_on in ("no shipped one", "needs a latency table", "unknown", "not a target"):
        assert follow_on not in text


# -- issue 17 "Also": non-latency columns are not devices -------------------------------------------------------

def test_latency_commands_leave_non_latency_columns_out(tmp_path, capsys):
    assert main(["latency", "srcc", "--table", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[1].split()
    assert header == list(SHIPPED_DEVICES)
    # a table without lat_ms_ columns: an index and accuracies beside the devices are not devices either
    rows = [["arch", "nb201_index", "acc_cifar10", "test_acc_cifar100_200ep", "fpga", "raspi4"]]
    src = _rows()
    h = src[0]
    for r in src[1:40]:
        rows.append([r[h.index("arch")], r[h.index("nb201_index")], r[h.index("acc_cifar10")], "70.0",
                     r[h.index("lat_ms_fpga")], r[h.index("lat_ms_raspi4")]])
    plain = _write(tmp_path / "plain.csv", rows)
    assert main(["latency", "srcc", "--table", str(plain)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["fpga", "raspi4"]


# -- issue 17 kind 1: devices that share no architecture --------------------------------------------------------

def _disjoint(tmp_path: Path, third: bool) -> Path:
    src = _rows()
    h = src[0]
    rows = [["arch", "a", "b", *(["c"] if third else [])]]
    for i, r in enumerate(src[1:100]):
        fpga, edgegpu, raspi4 = (r[h.index(f"lat_ms_{d}")] for d in ("fpga", "edgegpu", "raspi4"))
        a = fpga if i < 30 else ""
        b = edgegpu if 30 <= i < 60 else ""
        # c ranks exactly like a where a is measured, so a's only known SRCC is 1.0
        rows.append([r[h.index("arch")], a, b, *([fpga if i < 30 else raspi4] if third else [])])
    return _write(tmp_path / ("abc.csv" if third else "ab.csv"), rows)


def test_srcc_of_devices_without_a_shared_architecture_is_a_clear_refusal(tmp_path, capsys):
    t = _disjoint(tmp_path, third=False)
    assert main(["latency", "srcc", "--table", str(t)]) == 2
    out = capsys.readouterr()
    assert "a and b: no measured architecture in common" in out.err and "Traceback" not in out.err
    assert "All-NaN" not in out.err
    cfg = _config(tmp_path, t, proxy="auto", targets="[torch-cpu]").read_text().replace(
        f"table: {t}", f"table: {t}, predictor: additive")
    (tmp_path / "v.yaml").write_text(cfg)
    # the pipeline reads lat_ms_ columns: the same table with them
    rows = list(csv.reader(t.open()))
    rows[0] = ["arch", "lat_ms_a", "lat_ms_b"]
    t2 = _write(tmp_path / "ab2.csv", rows)
    assert main(["validate", str(_config(tmp_path, t2, proxy="auto", targets="[torch-cpu]"))]) == 2
    text = "".join(capsys.readouterr())
    assert "latency.proxy: 'auto'" in text and "a and b: no measured architecture in common" in text


def test_an_unknown_pair_is_never_taken_as_agreement(tmp_path, space, capsys):
    t = read_table(_disjoint(tmp_path, third=True), space)
    m = srcc_matrix(t)
    assert [(a, b) for a, b, _ in m.unknown_pairs()] == [("a", "b")]
    c = t.devices.index("c")
    for crit in ("min", "mean"):  # a's only known SRCC is 1.0: skipping its unknown pair would choose a
        dev, val = m.proxy(crit)
        assert dev == "c"
        others = [m.srcc[c, j] for j in range(3) if j != c]
        assert val == pytest.approx(min(others) if crit == "min" else np.mean(others))
    assert main(["latency", "srcc", "--table", str(tmp_path / "abc.csv")]) == 0
    out = capsys.readouterr().out
    assert "SRCC unknown for a and b" in out and "proxy by min SRCC to the others: c" in out


# -- issue 17 kind 2: ties ----------------------------------------------------------------------------------------

def test_agreement_with_ties_is_spearman_with_average_ranks():
    x = np.array([2.0, 8.0, 8.0, 8.0, 8.0])
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    assert source_agreement(x[:, None], y)[0] == pytest.approx(spearmanr(x, y)[0], abs=1e-9)
    assert srcc(x, y) == pytest.approx(spearmanr(x, y)[0])
    np.testing.assert_array_equal(average_ranks(x), [1.0, 3.5, 3.5, 3.5, 3.5])



def test_average_ranks_of_a_matrix_are_each_columns_spearman_ranks():
    """Column by column: scipy's average ranks of the values snapped within rounding, whatever the order of the
    rows (many exact ties, ties within float rounding, distinct values; 1-D, axis 0 and axis 1 alike)."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(5)
    P = rng.normal(size=(400, 7))
    P[:150] = np.round(P[:150], 1)  # exact ties
    P[150:200] = P[:50] * (1 + 1e-12)  # equal within rounding to rows 0-49
    P[:, 3] = 2.0  # a constant column
    R = average_ranks(P)
    want = np.column_stack([rankdata(snap(P[:, j])) for j in range(P.shape[1])])
    np.testing.assert_array_equal(R, want)
    assert R.flags.c_contiguous and np.all(R[:, 3] == 200.5)
    perm = rng.permutation(len(P))
    np.testing.assert_array_equal(average_ranks(P[perm]), R[perm])
    np.testing.assert_array_equal(average_ranks(P.T, axis=1), R.T)
    np.testing.assert_array_equal(average_ranks(P[:, 0]), R[:, 0])

@pytest.mark.slow
def test_transfer_does_not_depend_on_the_order_of_the_samples(space, shipped):
    # a source that reports whole milliseconds (as HELP's phone columns do) among the shipped devices
    rounded = np.round(shipped.column("pixel3"))
    devices = [d for d in SHIPPED_DEVICES if d not in ("edgegpu", "pixel3")]
    values = np.column_stack([shipped.column(d) for d in devices] + [rounded])
    sources = SourceSet.from_table(LatencyTable(shipped.archs, [*devices, "phone"], values), space)
    X = sources.X
    ids, y = shipped.measured("edgegpu")
    rows = {a: i for i, a in enumerate(shipped.archs)}
    r_ids = np.array([rounded[rows[a]] for a in ids])
    values_, counts = np.unique(r_ids, return_counts=True)
    mode = values_[np.argmax(counts)]  # four samples the source ties, one it ranks below them: [v, m, m, m, m]
    pick = [int(np.flatnonzero(r_ids < mode)[0]), *np.flatnonzero(r_ids == mode)[:4]]
    assert len(set(y[pick])) == 5
    Xk = X[[rows[ids[i]] for i in pick]]
    yk = y[pick]
    order = [4, 2, 0, 3, 1]
    p1 = adapt("multi", sources, Xk, yk, np.random.default_rng(0))
    p2 = adapt("multi", sources, Xk[order], yk[order], np.random.default_rng(0))
    np.testing.assert_allclose(p1.predict(X), p2.predict(X), rtol=1e-9)
    assert p1.shares == pytest.approx(p2.shares)


# -- issue 17 kind 2: a constant device ----------------------------------------------------------------------------

def test_srcc_against_a_constant_is_undefined():
    x = np.arange(6.0)
    assert math.isnan(srcc(x, np.full(6, 5.0)))
    assert math.isnan(srcc(x, 5.0 + np.array([0, 1, -1, 2, 0, 1]) * 1e-15))  # constant within rounding
    assert srcc(x, x[::-1]) == pytest.approx(-1.0)


def test_latencies_equal_within_rounding_are_one_latency():
    acc = np.array([70.0, 71.0, 72.0, 73.0, 74.0, 75.0])
    lat = 5.0 + np.array([-3, -2, -1, 0, 1, 2]) * 1e-15  # the faster, the less accurate: a staircase of 6
    idx, _, _ = pareto_front(acc, lat)
    assert list(idx) == [5]
    np.testing.assert_array_equal(snap(lat), np.full(6, lat.min()))


def test_a_one_point_true_front_is_judged_sensibly():
    acc = np.array([60.0, 70.0, 80.0, 90.0])
    true = np.full(4, 5.0)  # every architecture 5.0 ms
    ref = reference_front(acc, true)
    assert len(ref.accuracy) == 1 and ref.accuracy[0] == 90.0 and ref.hv > 0
    assert front_quality(ref, acc[[1, 3]], true[[1, 3]])["hv_ratio"] == pytest.approx(1.0)
    without = front_quality(ref, acc[[1]], true[[1]])["hv_ratio"]
    assert without == pytest.approx((70 - 60) / (90 - 60))
    same = reference_front(np.full(3, 80.0), np.array([5.0, 6.0, 7.0]))  # every accuracy equal: the latency axis
    assert front_quality(same, [80.0], [5.0])["hv_ratio"] == pytest.approx(1.0)
    assert front_quality(same, [80.0], [5.2])["hv_ratio"] == pytest.approx((5.5 - 5.2) / (5.5 - 5.0))


@pytest.mark.slow
def test_a_constant_target_in_the_sweep(space, shipped):
    from orchestrator.latency.predictors import make_predictor
    from orchestrator.latency.table import shipped_accuracy
    from orchestrator.search.accuracy import TableAccuracy
    from orchestrator.search.pareto import pareto_mask
    from orchestrator.sweep import SweepSettings, SweepShared, TargetInput, finalize, pick_k, run_target
    from search_spaces.base import encode_ids

    oracle = TableAccuracy(space, shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")).oracle()
    ids_all, y_all = shipped.measured("fpga")
    model = make_predictor("additive").fit(encode_ids(space, ids_all), y_all)
    X = encode_ids(space, shipped.archs)
    acc = oracle.values(shipped.archs)
    pms = model.predict(X)
    front = [shipped.archs[i] for i in np.flatnonzero(pareto_mask(acc, pms))]
    pool = list(shipped.archs[:200])
    shared = SweepShared(space.spec(), "fpga", model, oracle, pool, model.predict(encode_ids(space, pool)),
                         list(shipped.archs), X, front, list(shipped.archs), list(shipped.archs),
                         SweepSettings(algorithm="exhaustive"))
    k_ids = pick_k(shipped.archs, pms, 10, front, 0.5)
    t = TargetInput("flat", "tabulated", k_ids, np.full(10, 5.0), truth=np.full(len(shipped.archs), 5.0))
    sources = SourceSet.from_table(shipped.select([d for d in SHIPPED_DEVICES if d != "fpga"]), space)
    rep = run_target(shared, t, sources)
    finalize(shared, rep, lambda ids: np.full(len(ids), 5.0))  # judged on the driver, once accuracies are final
    assert math.isnan(rep.decision.srcc_k) and "undefined" in rep.decision.reason
    best = int(np.argmax(acc))
    assert shipped.archs[best] in rep.front_ids()  # the most accurate cell: the whole true front
    assert rep.metrics["hv_ratio"] == pytest.approx(1.0) and rep.metrics["unserved_budgets"] == 0
    assert len(rep.front) == 1  # predictions equal within rounding are one latency
    row = rep.summary()
    table = format_summary({"name": "x", "proxy": "fpga", "n_candidates": 200, "targets": [row]})
    assert "undef" in table.splitlines()[2] and " 1.000 " in table.splitlines()[2]


# -- issue 17 kind 2: the lower bound at small k ---------------------------------------------------------------------

def _copula(rng: np.random.Generator, rho_s: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    r = 2 * np.sin(np.pi * rho_s / 6)
    z = rng.standard_normal(k)
    return z, r * z + np.sqrt(1 - r * r) * rng.standard_normal(k)


@pytest.mark.parametrize("k", [3, 4, 5, 8, 10])
def test_the_exact_bound_holds_its_confidence_at_every_k(k):
    rng = np.random.default_rng(100 + k)  # not the bound's own table seed
    draws = 600
    for rho_s in (0.3, 0.6, 0.85, 0.9, 0.95):
        over = sum(exact_srcc_lower_bound(srcc(*_copula(rng, rho_s, k)), k, 0.9) > rho_s for _ in range(draws))
        assert over / draws <= 0.1 + 2.5 * math.sqrt(0.09 / draws), (k, rho_s, over / draws)


def test_three_samples_of_a_pair_with_srcc_060_never_reuse(shipped):
    a, b = shipped.column("fpga"), shipped.column("edgegpu")
    assert srcc(a, b) == pytest.approx(0.604, abs=1e-3)
    rng = np.random.default_rng(0)
    for k in (3, 4, 5, 6, 8, 10):
        reuse = 0
        for _ in range(150):
            i = rng.choice(len(a), k, replace=False)
            d = decide(a[i], b[i], threshold=0.9, rule="bound", confidence=0.9, rng=rng)
            reuse += d.decision == "reuse"
        assert reuse / 150 <= 0.1, (k, reuse)
        if k == 3:
            assert reuse == 0  # was 38 % with the bootstrap alone
    assert max_srcc_lower_bound(3, 0.9) < 0  # a perfectly ordered 3-sample: one in six when unrelated


def _real_pair_rates(a: str, b: str, k: int, draws: int, seed: int) -> tuple[float, float, float]:
    """(exact bound's exceedance, the sweep's bound's exceedance, the sweep's reuse rate at 0.9) over random
    k-samples of a device pair of the whole NB201 space."""
    t = shipped_table_by_name()
    va, vb = t.column(a), t.column(b)
    rho = srcc(va, vb)
    rng = np.random.default_rng(seed)
    ex = over = reuse = 0
    for _ in range(draws):
        i = rng.choice(len(va), k, replace=False)
        lb = srcc_lower_bound(va[i], vb[i], 0.9, rng, n_boot=500)
        ex += exact_srcc_lower_bound(srcc(va[i], vb[i]), k, 0.9) > rho
        over += lb > rho
        reuse += lb >= 0.9
    return ex / draws, over / draws, reuse / draws


def test_the_bound_holds_on_the_worst_real_pair_and_still_reuses():
    # samsung_a50 (whole milliseconds) / silver_4210r, SRCC 0.978: the exact bound alone exceeded it in 30 % of
    # random 10-samples (the issue: 15-17 % on the worst pairs of the subset); the sweep's bound stays within its
    # 10 %, and still reuses on a pair this close (37 % of 10-samples in bench/bound_coverage.py's protocol)
    draws = 300
    ex, over, reuse = _real_pair_rates("samsung_a50", "silver_4210r", 10, draws, 7)
    assert ex > 0.2
    assert over <= 0.1 + 2.5 * math.sqrt(0.09 / draws)
    assert reuse >= 0.2


def test_the_bound_reuses_close_pairs_at_k20_and_not_far_ones():
    draws = 200
    _, over, reuse = _real_pair_rates("2080ti_32", "titanx_32", 20, draws, 8)  # SRCC 0.982
    assert over <= 0.1 + 2.5 * math.sqrt(0.09 / draws) and reuse >= 0.5
    _, over, reuse = _real_pair_rates("essential_ph_1", "gold_6240", 20, draws, 9)  # SRCC 0.888: never clears 0.9
    assert over <= 0.1 + 2.5 * math.sqrt(0.09 / draws) and reuse <= 0.05


def test_the_calibrated_bound_is_deterministic_monotone_and_below_the_exact_one():
    rs = np.linspace(-1, 1, 41)
    for k in (3, 5, 10, 20, 60):
        emp = [empirical_srcc_lower_bound(r, k, 0.9) for r in rs]
        assert emp == [empirical_srcc_lower_bound(r, k, 0.9) for r in rs]
        assert all(np.diff(emp) >= 0)
    assert empirical_srcc_lower_bound(1.0, 10, 0.9) < exact_srcc_lower_bound(1.0, 10, 0.9)  # 0.959 < 0.985
    # a perfectly ordered 8-sample: 0.895 under the t1 copula (issue 17, turn 6; 0.921 calibrated, 0.96 Gaussian)
    assert max_srcc_lower_bound(9, 0.9) >= 0.9 and max_srcc_lower_bound(8, 0.9) < 0.9
    assert empirical_srcc_lower_bound(1.0, 10, 0.99) < empirical_srcc_lower_bound(1.0, 10, 0.9)
    assert np.isnan(empirical_srcc_lower_bound(float("nan"), 10, 0.9))


def test_validate_says_when_k_cannot_reuse(tmp_path, capsys):
    cfg = _config(tmp_path, "nb201-hwnasbench", proxy="fpga", targets="[edgegpu]", k=3)
    assert main(["validate", str(cfg)]) == 0
    text = "".join(capsys.readouterr())
    assert "sweep.k: 3 samples cannot show an SRCC lower bound of 0.9" in text and "k >= 9" in text
    assert main(["validate", str(_config(tmp_path, "nb201-hwnasbench", proxy="fpga", targets="[edgegpu]", k=10))]) == 0
    assert "cannot show" not in "".join(capsys.readouterr())


# -- issue 23.2: no negative predicted latency --------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy(space, shipped):
    """Ten noisy measurements (40 % log-normal) of a CPU-like device whose latency hardly varies: the unconstrained
    fit in ms of these predicts down to -14.7 ms on the sources' architectures. (The draw that once gave -10.6 ms,
    seed 14 at 30 %, no longer goes negative since the ridge's leave-one-out became exact in the dual form; the
    tests below assert the precondition so that this fixture cannot silently stop exercising the constraint.)"""
    sources = SourceSet.from_table(shipped, space)
    rng = np.random.default_rng(180)
    base = 9.0 + 0.02 * sources.filled[:, shipped.devices.index("fpga")]
    i = rng.choice(len(sources.X), 10, replace=False)
    return sources, sources.X[i], base[i] * rng.lognormal(0, 0.4, 10)


@pytest.mark.slow
def test_transfers_predict_positive_latencies_on_noisy_samples(noisy):
    sources, Xk, y = noisy
    p = adapt("multi", sources, Xk, y, np.random.default_rng(0))
    assert p.log_fit and p.linear_min_ms < -10  # flagged: the fit in ms would have gone negative
    assert p.predict(sources.X).min() > 0
    assert srcc(p.predict(Xk), y) > 0.5  # it still fits the samples
    a = adapt("adaproxy", sources, Xk, y, np.random.default_rng(0))
    if isinstance(a, FlooredPredictor):
        assert a.linear_min_ms <= 0
    assert a.predict(sources.X).min() > 0
    assert adapt("reuse", sources, Xk, y, np.random.default_rng(0)).predict(sources.X).min() > 0


def test_a_positive_scale_where_the_affine_map_would_go_negative():
    p = np.array([10.0, 11.0, 12.0, 13.0])
    y = np.array([1.0, 3.0, 5.0, 7.0])  # y = 2p - 19: negative below 9.5
    assert affine_positive(p, y) == pytest.approx((2.0, -19.0))
    a, c = affine_positive(p, y, p_min=2.0)
    assert c == 0.0 and a > 0


@pytest.mark.slow
def test_the_sweep_flags_a_constrained_transfer(space, shipped, noisy):
    from orchestrator.latency.table import shipped_accuracy
    from orchestrator.search.accuracy import TableAccuracy
    from orchestrator.sweep import SweepSettings, SweepShared, TargetInput, run_target
    from search_spaces.base import encode_ids

    sources, Xk, y = noisy
    oracle = TableAccuracy(space, shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")).oracle()
    rows = {r.tobytes(): i for i, r in enumerate(sources.X)}
    k_ids = [shipped.archs[rows[x.tobytes()]] for x in Xk]
    ids, fpga = shipped.measured("fpga")
    from orchestrator.latency.predictors import make_predictor

    model = make_predictor("additive").fit(encode_ids(space, ids), fpga)
    X = encode_ids(space, shipped.archs)
    pool = list(shipped.archs[:100])
    shared = SweepShared(space.spec(), "fpga", model, oracle, pool, model.predict(encode_ids(space, pool)),
                         list(shipped.archs), X, [], list(shipped.archs), list(shipped.archs),
                         SweepSettings(algorithm="exhaustive", rule="point"))
    rep = run_target(shared, TargetInput("cpu", "measured", k_ids, y), sources)
    assert rep.decision.decision == "adapt"
    assert rep.metrics["target_transfer_constrained"] == 1.0 and rep.metrics["target_transfer_unconstrained_min_ms"] < 0
    assert rep.predicted.min() > 0


@pytest.fixture
def _calibrated_without_fbnet_and_ofa(monkeypatch):
    from orchestrator.sweep import decision as dec

    dec._calibration_tables.cache_clear()
    dec._calibration_envelope.cache_clear()
    keep = tuple(t for t in dec.CALIBRATION_TABLES if t not in ("fbnet_5000.csv", "ofa_mbv3_5000.csv"))
    monkeypatch.setattr(dec, "CALIBRATION_TABLES", keep)
    yield dec
    dec._calibration_tables.cache_clear()
    dec._calibration_envelope.cache_clear()


def test_a_pair_the_calibration_never_saw_is_reused_wrongly_at_most_at_the_nominal(_calibrated_without_fbnet_and_ofa):
    # issue 17 turn 5: held out by table, the bound's exceedance is above 0.10 on some far pairs (SRCC < 0.8: its
    # bound is then far below 0.9) but the decision it drives holds: OFA's 2080ti_32/2080ti_64 (SRCC 0.762, the
    # held-out pair reused most often) clears 0.9 in at most 10 % of 8-samples (measured 0.048 at k = 8)
    dec = _calibrated_without_fbnet_and_ofa
    from importlib import resources

    import pandas as pd

    with resources.as_file(resources.files("orchestrator") / "data" / "ofa_mbv3_5000.csv") as path:
        df = pd.read_csv(path, usecols=["lat_ms_2080ti_32", "lat_ms_2080ti_64"]).dropna()
    M = df.to_numpy(float)
    rho = float(spearmanr(M[:, 0], M[:, 1])[0])
    assert rho < 0.8
    draws = 400
    for k in (8, 10):
        s = dec._sample_srcc(M, k, draws, np.random.default_rng([5, k]))[:, 0, 1]
        bound = np.array([min(copula_srcc_lower_bound(r, k, 0.9), empirical_srcc_lower_bound(r, k, 0.9)) for r in s])
        assert np.mean(bound >= 0.9) <= 0.1 + 2.5 * math.sqrt(0.09 / draws)


# -- issue 17, turn 6: the bound holds its confidence on every held-out real pair -----------------------------------

def _held_out_pair(table: str, a: str, b: str) -> tuple[np.ndarray, float]:
    from importlib import resources

    import pandas as pd

    with resources.as_file(resources.files("orchestrator") / "data" / table) as path:
        M = pd.read_csv(path, usecols=[f"lat_ms_{a}", f"lat_ms_{b}"]).dropna().to_numpy(float)
    return M, float(spearmanr(M[:, 0], M[:, 1])[0])


def _exceedance(dec, M: np.ndarray, rho: float, k: int, draws: int, bound) -> float:
    s = dec._sample_srcc(M, k, draws, np.random.default_rng([6, k]))[:, 0, 1]
    u, inv = np.unique(s[np.isfinite(s)], return_inverse=True)
    return float(np.mean(np.array([bound(r) for r in u])[inv] > rho))


def test_the_bound_holds_its_confidence_on_the_worst_held_out_real_pair(_calibrated_without_fbnet_and_ofa):
    # Calibrated on NB201 + HW-NAS-Bench, FBNet's essential_ph_1 (whole milliseconds) / samsung_s7, SRCC 0.65, the
    # worst held-out pair at k = 10 (bench/bound_coverage.py --holdout fbnet ofa): the Gaussian-copula bound with the
    # calibrated one exceeded its SRCC in 13.4 % of 3,000 random 10-samples; with the t1 copula too, 9.6 %
    dec = _calibrated_without_fbnet_and_ofa
    k, draws = 10, 3000
    limit = 0.1 + 3 * math.sqrt(0.09 / draws)  # nominal + 3 standard errors: 0.116
    for table, a, b in (("fbnet_5000.csv", "essential_ph_1", "samsung_s7"), ("ofa_mbv3_5000.csv", "2080ti_32",
                                                                             "2080ti_64")):
        M, rho = _held_out_pair(table, a, b)
        assert 0.6 < rho < 0.8
        shipped = _exceedance(dec, M, rho, k, draws, lambda r: min(copula_srcc_lower_bound(r, k, 0.9),
                                                                   empirical_srcc_lower_bound(r, k, 0.9)))
        assert shipped <= limit, (a, b, shipped)
    gaussian = _exceedance(dec, *_held_out_pair("fbnet_5000.csv", "essential_ph_1", "samsung_s7"), k, draws,
                           lambda r: min(exact_srcc_lower_bound(r, k, 0.9), empirical_srcc_lower_bound(r, k, 0.9)))
    assert gaussian > limit  # the turn-5 bound: what this test guards against


def test_the_t1_copula_matches_its_spearman_and_its_bound_holds_under_it():
    from orchestrator.sweep import decision as dec

    rng = np.random.default_rng(61)
    for rho_s in (0.3, 0.65, 0.9):
        j = int(np.argmin(np.abs(dec.RHO_GRID - rho_s)))
        r = dec._t_pearson_grid()[j]
        z, e = rng.standard_normal((2, 200_000))
        w = np.sqrt(rng.chisquare(1, 200_000))
        assert spearmanr(z / w, (r * z + np.sqrt(1 - r * r) * e) / w)[0] == pytest.approx(rho_s, abs=0.006)
        draws, k = 600, 10
        z, e = rng.standard_normal((2, draws, k))
        w = np.sqrt(rng.chisquare(1, (draws, k)))
        x, y = z / w, (r * z + np.sqrt(1 - r * r) * e) / w
        over = sum(exact_srcc_lower_bound(srcc(x[i], y[i]), k, 0.9, "t1") > rho_s for i in range(draws))
        assert over / draws <= 0.1 + 2.5 * math.sqrt(0.09 / draws), (rho_s, over / draws)
        # the combined bound is the smaller one: never above either copula's
        for q in (0.5, 0.9, 1.0):
            assert copula_srcc_lower_bound(q, k, 0.9) == min(exact_srcc_lower_bound(q, k, 0.9),
                                                             exact_srcc_lower_bound(q, k, 0.9, "t1"))
    with pytest.raises(ValueError, match="unknown copula"):
        exact_srcc_lower_bound(0.5, 10, 0.9, "clayton")
