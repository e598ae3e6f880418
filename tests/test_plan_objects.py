"""What planning resolves once (issue 19): the search Domain and each Target (its device built once, its cost
limits, one answer to "does it have a truth")."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config import parse_config
from orchestrator.pipeline.plan import make_plan
from orchestrator.pipeline.resolved import Domain, Target
from search_spaces.mobilenet import MobileNetV3Space


def test_a_domain_from_a_table(space, shipped):
    d = Domain.of("table", space, shipped)
    assert d.kind == "table" and d.ids == list(shipped.archs)
    assert d.size == len(shipped.archs) == 1999 and d.finite
    assert d.enumeration() == list(shipped.archs) and d.enumeration(limit=10) == list(shipped.archs)
    assert d.search_domain().ids == list(shipped.archs)


def test_a_domain_of_the_whole_space(space, shipped):
    d = Domain.of("space", space, shipped)  # a table in use does not restrict a space domain
    assert d.kind == "space" and d.ids is None and d.size == space.size == 15_625 and d.finite
    listed = d.enumeration()
    assert len(listed) == len(set(listed)) == 15_625 and set(shipped.archs) < set(listed)
    assert d.enumeration() == listed  # listed once, the same again
    assert d.enumeration(limit=15_624) is None and d.search_domain() is None
    big = Domain.of("space", MobileNetV3Space(), None)
    assert big.size == MobileNetV3Space().size and not big.finite and big.enumeration() is None
    with pytest.raises(ValueError, match="'table' or 'space'"):
        Domain.of("auto", space, shipped)


def test_the_plan_holds_its_domain():
    table = make_plan(parse_config({"name": "x"}))  # the defaults: tabulated targets, the table's cells
    assert table.domain.kind == "table" and table.domain.ids == list(table.table.archs)
    space = make_plan(parse_config({"name": "x", "sweep": {"targets": ["sim:1"]}}))
    assert space.domain.kind == "space" and space.domain.ids is None and space.domain.size == space.space.size


def test_targets_are_resolved_once_with_one_answer_to_a_truth():
    cfg = parse_config({"name": "x", "latency": {"proxy": "silver_4210r"},
                        "search": {"domain": "table", "constraints": {"params_m": 1.5}},
                        "sweep": {"targets": ["pixel3", "torch-cpu", "sim:3"], "memory_mb": {"sim:3": 5.0}}})
    plan = make_plan(cfg)
    assert not hasattr(plan, "device")  # no name is turned back into a device after planning
    t = {x.name: x for x in plan.targets}
    assert list(t) == ["pixel3", "torch-cpu", "sim:3"] and all(isinstance(x, Target) for x in t.values())
    # a tabulated device and a simulator know their latency; a measured runtime does not
    assert t["pixel3"].has_truth and t["sim:3"].has_truth and not t["torch-cpu"].has_truth
    assert [t[n].kind for n in t] == ["tabulated", "measured", "simulated"]
    assert [t[n].simulated for n in t] == [False, False, True]  # the device's own property, not its kind label
    ids = plan.table.archs[:5]
    np.testing.assert_array_equal(t["pixel3"].truth(ids), plan.table.lookup("pixel3", ids))
    assert t["pixel3"].known_truth is not None and t["torch-cpu"].known_truth is None
    with pytest.raises(ValueError, match="no latency known without measuring"):
        t["torch-cpu"].truth(ids)
    # what each can report at all, and the cost limits an architecture must meet on it
    assert t["pixel3"].domain == plan.table.measured("pixel3")[0] and t["sim:3"].domain is None
    assert t["pixel3"].limits == {"params_m": 1.5} and t["sim:3"].limits == {"params_m": 1.5, "peak_mem_mb": 5.0}
    # the options as configured, the measurement protocol filled from the latency section
    assert t["torch-cpu"].spec.options == {} and t["torch-cpu"].device.spec().options["protocol"]["repeats"] == \
        cfg.latency.protocol.repeats
    proxy = plan.proxy_target
    assert proxy.name == plan.proxy == "silver_4210r" and proxy.has_truth and proxy.domain is not None
