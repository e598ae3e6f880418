"""Settings models refuse a boolean where a number is expected (pydantic reads ``true`` as 1, YAML reads
``yes``/``on`` as ``true``), and still take booleans where the field is one."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import yaml

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.latency.devices.catalog import DeviceCatalog
from orchestrator.schema import admits_bool, expected
from search_spaces.nb201 import NB201Space


def test_a_yaml_boolean_given_for_a_count_is_refused_with_its_path():
    data = yaml.safe_load("name: x\nsweep: {k: yes, retest: on}\nsearch: {n_trials: true}\n")
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml")
    msg = str(e.value)
    for path, value in [("sweep.k", "true"), ("sweep.retest", "true"), ("search.n_trials", "true")]:
        assert f"  {path}: got the boolean {value} where an integer is expected" in msg, msg
    assert "3 problem(s)" in msg


def test_boolean_fields_still_take_booleans():
    cfg = parse_config(yaml.safe_load("name: x\nsweep: {int8_accuracy: {enabled: yes, per_channel: off, "
                                      "reduce_range: false}}\n"
                                      "accuracy: {supernet: {train: {distill: false, augment: no}}}\n"))
    int8 = cfg.sweep.int8_accuracy
    assert int8.enabled is True and int8.per_channel is False and int8.reduce_range is False
    assert cfg.accuracy.supernet.train.distill is False and cfg.accuracy.supernet.train.augment is False


def test_a_device_option_given_a_boolean_is_refused():
    catalog = DeviceCatalog(NB201Space(channels=4, cells_per_stage=1))
    assert catalog.problems("torch-cpu", {"threads": 2}) == []
    problems = catalog.problems("torch-cpu", {"threads": True, "protocol": {"repeats": True}})
    assert any("'threads': Value error, got the boolean true where an integer is expected" in p
               for p in problems), problems
    assert any("'protocol.repeats'" in p and "boolean" in p for p in problems), problems


@pytest.mark.parametrize(("annotation", "admits"), [
    (bool, True), (Any, True), (int, False), (float | None, False), (int | bool, True),
    (Literal["auto"] | bool, True), (Literal["auto", "off"], False), (dict[str, Any], False),
])
def test_admits_bool(annotation, admits):
    assert admits_bool(annotation) is admits


def test_expected_names_the_type():
    assert expected(int) == "an integer" and expected(float | None) == "a number" and expected(str) == "a string"
