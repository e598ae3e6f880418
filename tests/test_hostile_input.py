"""Hostile or huge input (issue 24.6): every count and size bounded at validation, YAML alias expansion
bounded, a CSV cell over the csv module's limit and a table of too many devices refused with the file and line,
and the work on a wide table linear in its devices (one ranking per column, not one per pair)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config import MAX_DEVICES, load_config, parse_config
from orchestrator.errors import ConfigError, TableError
from orchestrator.latency.metrics import srcc
from orchestrator.latency.monotonicity import srcc_matrix
from orchestrator.latency.table import LatencyTable, read_table
from orchestrator.pipeline.plan import make_plan

CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
BASE = {"name": "h", "accuracy": {"source": "table", "table_column": "test_acc_cifar10_12ep"},
        "latency": {"proxy": "fpga", "table": "nb201-hwnasbench"},  # the 1,999-cell table, by name
        "search": {"n_trials": 40, "population": 10, "domain": "table"}, "sweep": {"targets": ["pixel3"], "k": 5}}


def _with(**sections) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for k, v in sections.items():
        out[k] = {**out.get(k, {}), **v}
    return out


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["name: h", "space:", "  name: nb201", "  options:", "    junk:",
             "      a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}]" for i in range(1, 10)]  # 9**10: billions of values once expanded
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases .* expand to over 100,000 values") as e:
        load_config(p)
    assert "not valid YAML" not in str(e.value)  # valid YAML, refused for its size


def test_recursive_alias_and_huge_file_are_refused(tmp_path):
    p = tmp_path / "rec.yaml"
    p.write_text("name: h\nspace: {name: nb201, options: {loop: &l [*l]}}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    big = tmp_path / "big.yaml"
    big.write_text("name: h\n" + "#" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="a config is at most 1,048,576 bytes"):
        load_config(big)


def test_a_few_aliases_still_load(tmp_path):
    q = tmp_path / "alias.yaml"
    q.write_text("name: h\naccuracy: {source: table, table_column: test_acc_cifar10_12ep}\n"
                 "latency: {proxy: fpga, table: nb201-hwnasbench}\n"
                 "search: {n_trials: 40, population: 10, domain: table}\nsweep: {targets: &d [pixel3], k: 5}\n"
                 "confirm: {devices: *d}\n")
    assert load_config(q).confirm.devices == ["pixel3"]


@pytest.mark.parametrize(("sections", "where"), [
    ({"ray": {"num_cpus": 1e308}}, "ray.num_cpus"),
    ({"ray": {"num_cpus": 10**14}}, "ray.num_cpus"),
    ({"sweep": {"refine_trials": 1e308}}, "sweep.refine_trials"),
    ({"sweep": {"simulated": 10**6}}, "sweep.simulated"),
    ({"sweep": {"target_search": {"n_trials": 10**9}}}, "sweep.target_search.n_trials"),
    ({"search": {"population": 10**9}}, "search.population"),
    ({"accuracy": {"supernet": {"actors": 10**9}}}, "accuracy.supernet.actors"),
    ({"accuracy": {"supernet": {"train": {"epochs": 1e300}}}}, "accuracy.supernet.train.epochs"),
    ({"seed": -1}, "seed"),
])
def test_every_count_is_bounded_at_validation(sections, where):
    cfg = _with(**{k: v for k, v in sections.items() if isinstance(v, dict)})
    cfg.update({k: v for k, v in sections.items() if not isinstance(v, dict)})
    with pytest.raises(ConfigError) as e:
        make_plan(parse_config(cfg))  # the schema's bounds, or the plan's (sweep.simulated)
    assert f"  {where}: " in str(e.value)


def test_bounds_leave_real_configs_alone():
    assert make_plan(parse_config(_with(ray={"num_cpus": 64}, sweep={"refine_trials": 200, "simulated": 16}))
                     ).cfg.ray.num_cpus == 64


def test_csv_cell_over_the_field_limit(tmp_path, space):
    p = tmp_path / "t.csv"
    p.write_text(f"arch,lat_ms_a\n{CELL},1\n{CELL[:-1]}{'x' * 140_000},2\n")
    with pytest.raises(TableError, match=r"line \d+: not a readable CSV row .*field larger than field limit"):
        read_table(p, space)


def test_too_many_device_columns(tmp_path, space):
    n = MAX_DEVICES + 1
    p = tmp_path / "wide.csv"
    p.write_text("arch," + ",".join(f"d{i}" for i in range(n)) + "\n" + CELL + ",1" * n + "\n")
    with pytest.raises(TableError, match=f"line 1: {n:,} device columns; a table holds at most {MAX_DEVICES:,}"):
        read_table(p, space)
    ok = tmp_path / "ok.csv"
    ok.write_text("arch," + ",".join(f"d{i}" for i in range(MAX_DEVICES)) + "\n" + CELL + ",1" * MAX_DEVICES + "\n")
    assert len(read_table(ok, space).devices) == MAX_DEVICES


def test_srcc_matrix_of_a_wide_table_equals_the_pairwise_one():
    rng = np.random.default_rng(3)
    V = rng.uniform(1, 10, (40, 12))
    V[:, 3] = 5.0  # constant: ranks nothing
    V[::4, 5] = np.nan  # gaps: that device's pairs over the shared rows
    V[:, 7] = V[:, 0] * 2  # ties of order with device 0
    m = srcc_matrix(LatencyTable([f"a{i}" for i in range(40)], [f"d{j}" for j in range(12)], V))
    for i in range(12):
        for j in range(12):
            want = 1.0 if i == j else srcc(V[:, i], V[:, j])
            assert m.srcc[i, j] == pytest.approx(want, abs=1e-9, nan_ok=True), (i, j)
    assert m.shared[5, 0] == 30 and m.shared[0, 1] == 40
