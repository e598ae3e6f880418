"""Lookup-table devices (latency.lut): exact sums, the shipped Pixel 3 table against the measured 5,000, the
MILP's exact front of a lookup table, the FBNet table's columns as tabulated devices."""

from __future__ import annotations

import csv
import itertools
import pickle

import numpy as np
import pytest

from orchestrator.errors import DeviceError, TableError
from orchestrator.latency.devices import DeviceCatalog, make_device
from orchestrator.latency.devices.lut import LutDevice, read_lut
from orchestrator.latency.fbnet_data import shipped_fbnet_table, shipped_lut_path
from orchestrator.search.milp import milp_front, space_model
from orchestrator.search.pareto import pareto_mask
from search_spaces import get_space
from search_spaces.fbnet import BLOCKS


@pytest.fixture(scope="module")
def fb():
    return get_space("fbnet")


def lut_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_lut_device_is_the_sum_of_its_rows(fb, rng):
    rows = lut_rows(shipped_lut_path())
    base = float(rows[0]["lat_ms_pixel3"])
    delta = {(int(r["layer"]), r["op"]): float(r["lat_ms_pixel3"]) for r in rows[1:]}
    dev = DeviceCatalog(fb, lut=str(shipped_lut_path())).make("lut:pixel3")
    assert dev.kind == "lookup" and dev.deterministic and dev.domain() is None
    archs = [fb.sample(rng) for _ in range(200)]
    ids = [fb.arch_id(a) for a in archs]
    want = [base + sum(delta[(i, op)] for i, op in enumerate(a["ops"])) for a in archs]
    np.testing.assert_allclose(dev.latency_ms(ids), want, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(dev.truth(ids), dev.latency_ms(ids))
    # the exact additive model is the table itself
    X = np.stack([fb.encode(a) for a in archs])
    np.testing.assert_allclose(dev.additive().predict(X), want, rtol=0, atol=1e-9)
    # rebuilt from its spec in another process
    again = make_device(pickle.loads(pickle.dumps(dev.spec())), fb)
    np.testing.assert_array_equal(again.latency_ms(ids), dev.latency_ms(ids))


def test_shipped_lut_equals_the_measured_pixel3_column(fb):
    """HW-NAS-Bench's table reproduces the 5,000 whole-network Pixel 3 figures (printed to 6 digits)."""
    table = shipped_fbnet_table(fb)
    assert table is not None and len(table.archs) == 5000 and len(table.devices) == 19
    ids, y = table.measured("pixel3")
    dev = LutDevice("pixel3", fb, str(shipped_lut_path()))
    got = dev.latency_ms(ids)
    assert np.max(np.abs(got - y) / y) < 1e-5


def test_fbnet_table_columns_are_tabulated_devices(fb):
    cat = DeviceCatalog(fb)
    assert "pixel3" in cat.names() and "titanxp_64" in cat.names()
    dev = cat.make("gold_6240")
    assert dev.kind == "tabulated" and len(dev.domain()) == 5000
    # another configuration of the space is another network: the shipped latencies do not apply
    assert DeviceCatalog(get_space("fbnet", width_mult=0.5)).table is None


def test_lut_device_errors_name_the_fix(fb, tmp_path):
    cat = DeviceCatalog(fb)
    assert "latency.lut" in " ".join(cat.problems("lut:pixel3"))
    with pytest.raises(DeviceError, match="no device 'edgegpu'"):
        DeviceCatalog(fb, lut=str(shipped_lut_path())).make("lut:edgegpu")
    with pytest.raises(DeviceError, match="layer-wise space"):
        DeviceCatalog(get_space("nb201"), lut=str(shipped_lut_path())).make("lut:pixel3")
    rows = lut_rows(shipped_lut_path())
    bad = tmp_path / "bad.csv"

    def write(rs):
        with bad.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["layer", "op", "lat_ms_pixel3"])
            w.writeheader()
            w.writerows(rs)

    write(rows[:-1])
    with pytest.raises(TableError, match=r"1 \(layer, block\) rows missing, e.g. 21:skip"):
        read_lut(bad, fb)
    write(rows[:5] + [{**rows[5], "op": "k7_e6"}] + rows[6:])
    with pytest.raises(TableError, match="line 7, column 'op': layer 0 has no block 'k7_e6'"):
        read_lut(bad, fb)
    write(rows[1:])
    with pytest.raises(TableError, match="no base row"):
        read_lut(bad, fb)


def small_lut(fb, tmp_path, layers, rng):
    """A lookup table whose deltas are non-zero only in ``layers`` (random), zero elsewhere."""
    path = tmp_path / "small_lut.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "op", "lat_ms_toy"])
        w.writerow(["base", "", "5.0"])
        for i in range(22):
            for op in BLOCKS:
                w.writerow([i, op, f"{rng.uniform(-1, 3):.6f}" if i in layers else "0"])
    return path


def test_milp_front_of_a_small_lut_equals_exhaustive(fb, tmp_path):
    """On a table with 4 live layers (6,561 distinct networks) and an additive accuracy on the same layers,
    the MILP's epsilon-constraint walk returns exactly the exhaustive front."""
    rng = np.random.default_rng(5)
    layers = [0, 6, 13, 21]
    dev = LutDevice("toy", fb, str(small_lut(fb, tmp_path, layers, rng)))
    acc_coef = np.zeros(fb.encoding_size)
    for i in layers:
        acc_coef[i * 9:(i + 1) * 9] = rng.normal(0, 1, 9).round(4)
    acc0 = 70.0
    front = milp_front(space_model(fb), acc_coef, acc0, dev.coef, dev.base, max_points=10_000)
    assert front.complete
    # exhaustive over the live layers (the other layers change neither objective)
    acc, lat = [], []
    for combo in itertools.product(range(9), repeat=len(layers)):
        ops = ["k3_e1"] * 22
        for i, b in zip(layers, combo, strict=True):
            ops[i] = BLOCKS[b]
        x = fb.encode({"ops": ops})
        acc.append(acc_coef @ x + acc0)
        lat.append(dev.coef @ x + dev.base)
    acc, lat = np.array(acc), np.array(lat)
    mask = pareto_mask(acc, lat)
    want = sorted({(round(a, 6), round(t, 6)) for a, t in zip(acc[mask], lat[mask], strict=True)})
    got = sorted((round(p.accuracy, 6), round(p.latency_ms, 6)) for p in front.points)
    assert got == want and len(want) > 5
    # each front point's id really has that latency on the device
    np.testing.assert_allclose(dev.latency_ms([p.arch_id for p in front.points]),
                               [p.latency_ms for p in front.points], atol=1e-9)


def test_milp_front_of_the_pixel3_lut_is_not_dominated_by_samples(fb, rng):
    """On the whole 9^22 space: every MILP point's latency is the device's, and none of 3,000 random
    architectures dominates a front point."""
    dev = LutDevice("pixel3", fb, str(shipped_lut_path()))
    acc_coef = rng.normal(0, 1, fb.encoding_size)
    front = milp_front(space_model(fb), acc_coef, 0.0, dev.coef, dev.base, max_points=40)
    ids = [p.arch_id for p in front.points]
    lat = np.array([p.latency_ms for p in front.points])
    acc = np.array([p.accuracy for p in front.points])
    np.testing.assert_allclose(dev.latency_ms(ids), lat, atol=1e-9)
    assert np.all(np.diff(lat) < 0) and np.all(np.diff(acc) < 0)  # most accurate first, each faster
    X = np.stack([fb.encode(fb.sample(rng)) for _ in range(3000)])
    sa, sl = X @ acc_coef, X @ dev.coef + dev.base
    for a, t in zip(acc, lat, strict=True):
        assert not np.any((sa >= a) & (sl <= t) & ((sa > a) | (sl < t)))


def _fb_config(**latency):
    return {"name": "fb", "space": {"name": "fbnet"}, "accuracy": {"source": "predictor", "predictor": "additive"},
            "latency": {"table": "shipped", "lut": "shipped", "proxy": "lut:pixel3", **latency},
            "search": {"algorithm": "milp", "domain": "table"}, "sweep": {"targets": ["gold_6240", "lut:pixel3"]}}


def test_config_with_a_lookup_table_validates():
    from orchestrator.config import parse_config
    from orchestrator.pipeline.plan import make_plan

    plan = make_plan(parse_config(_fb_config()))
    assert plan.proxy == "lut:pixel3" and [t.name for t in plan.targets] == ["gold_6240"]
    assert plan.proxy_target.device.spec().options["path"].endswith("fbnet_lut_pixel3.csv")


@pytest.mark.parametrize("latency, match", [
    ({"lut": "nowhere.csv"}, "latency.lut: .*nowhere.csv: no such lookup table"),
    ({"lut": None}, "latency.proxy: device 'lut:pixel3' needs a lookup table: set latency.lut"),
    ({"proxy": "lut:edgegpu"}, "no device 'edgegpu' in the lookup table"),
])
def test_config_lookup_table_problems_are_named(latency, match):
    from orchestrator.config import parse_config
    from orchestrator.errors import ConfigError
    from orchestrator.pipeline.plan import make_plan

    with pytest.raises(ConfigError, match=match):
        make_plan(parse_config(_fb_config(**latency)))


def test_shipped_lut_is_only_for_the_network_it_measured():
    from orchestrator.config import parse_config
    from orchestrator.errors import ConfigError
    from orchestrator.pipeline.plan import make_plan

    cfg = _fb_config()
    cfg["space"]["options"] = {"width_mult": 0.5}
    with pytest.raises(ConfigError, match="latency.lut: 'shipped' is HW-NAS-Bench's Pixel 3 table"):
        make_plan(parse_config(cfg))


def test_the_fbnet_experiment_validates():
    from pathlib import Path

    from orchestrator.config import load_config
    from orchestrator.pipeline.plan import make_plan

    plan = make_plan(load_config(Path(__file__).parents[1] / "experiments" / "fbnet_lut.yaml"))
    assert plan.space.name == "fbnet" and plan.proxy == "lut:pixel3" and plan.domain.kind == "table"
    assert [t.name for t in plan.targets] == ["gold_6240", "titanxp_1", "samsung_a50", "2080ti_64"]
