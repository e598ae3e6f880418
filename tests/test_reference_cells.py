"""Reference cells: a fixed first round, the same on every target and every run, counted in k."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.sweep.reference import reference_cells
from search_spaces.costs import CostModel


def test_reference_cells_are_fixed_and_spread_in_multiply_adds(space, shipped):
    ids = list(shipped.archs)
    a = reference_cells(ids, 10, space.spec(), shipped)
    assert len(a) == 10 == len(set(a))
    assert reference_cells(ids[::-1], 10, space.spec(), shipped) == a  # order of the domain does not matter
    known = [x for x, ok in zip(ids, ~np.isnan(shipped.values).any(axis=1), strict=True) if ok]
    assert set(a) <= set(known)  # every source (every column, edgetpu has gaps) knows them
    macs = CostModel(space.spec()).matrix(known, ("macs_m",))[:, 0]
    got = CostModel(space.spec()).matrix(a, ("macs_m",))[:, 0]
    assert list(got) == sorted(got) and got[0] == macs.min() and got[-1] == macs.max()  # both ends
    limited = reference_cells(ids, 10, space.spec(), shipped, limits={"params_m": 0.5})
    assert max(CostModel(space.spec()).matrix(limited, ("params_m",))[:, 0]) <= 0.5
    assert reference_cells(ids, 0, space.spec(), shipped) == []


def test_more_reference_cells_than_k_is_refused():
    with pytest.raises(ConfigError, match="reference_cells 12 > k 10: they are counted in k"):
        parse_config({"name": "x", "sweep": {"k": 10, "reference_cells": 12}})


@pytest.mark.ray
@pytest.mark.slow
def test_reference_first_round_in_the_pipeline(tmp_path, space, shipped, ray_cluster):
    """Every target measures the same reference cells first, within its k, whatever the seed; the run records
    them."""
    from orchestrator.pipeline import run_pipeline

    def run(name: str, seed: int) -> tuple[dict, list[str]]:
        cfg = parse_config({
            "name": name, "seed": seed, "output_dir": str(tmp_path / "runs"),
            "accuracy": {"source": "table", "table": "nb201-full"},
            "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
            "search": {"n_trials": 20, "population": 10, "domain": "table"},
            "sweep": {"targets": ["edgegpu", "edgetpu", "sim:0"], "k": 10, "reference_cells": 6},
            "tracking": {"enabled": False}})
        summary = run_pipeline(cfg, progress=False)
        refs = (cfg.run_dir() / "reference_cells.csv").read_text().split()[1:]
        for row in summary["targets"]:
            assert row["n_measurements"] == 10 and row["reference_cells"] == 6, row
            samples = json.loads((cfg.run_dir() / "targets" / f"{row['target'].replace(':', '_')}.json")
                                 .read_text())["samples"]
            assert set(refs) <= set(samples), row["target"]  # measured on every target, in its k
        return summary, refs

    s0, refs0 = run("r0", 0)
    s1, refs1 = run("r1", 1)
    assert refs0 == refs1 == reference_cells(shipped.archs, 6, space.spec(), shipped)
