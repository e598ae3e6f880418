"""Pipeline configs: every problem reported at once, with its path; the shipped experiments validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_config, parse_config
from orchestrator.errors import ConfigError

EXPERIMENTS = sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_shipped_experiments_validate(path):
    cfg = load_config(path)
    assert cfg.name


def test_every_schema_error_with_its_path():
    data = {"name": "x", "search": {"n_trials": 0, "algoritm": "nsga2"}, "sweep": {"k": 1},
            "accuracy": {"supernet": {"train": {"epochs": -1}}}, "bogus": 1}
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml")
    msg = str(e.value)
    for path in ["search.n_trials", "search.algoritm", "sweep.k", "accuracy.supernet.train.epochs", "bogus"]:
        assert f"  {path}:" in msg, (path, msg)
    assert "5 problem(s)" in msg


def test_semantic_errors_listed_together():
    data = {"name": "x", "sweep": {"targets": ["pixel9", "sim:x", "fpga", "fpga",
                                               {"name": "remote:box", "options": {"runtime": "onnxrt-cpu"}}],
                                   "transfer": "magic"},
            "latency": {"proxy": "toaster"}, "search": {"batch_size": 50, "population": 10}}
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    msg = str(e.value)
    for frag in ["sweep.transfer: unknown method 'magic'", "sweep.targets.0: unknown device 'pixel9'",
                 "sweep.targets.1: 'sim:x' is not a simulated device name", "'fpga' is listed twice",
                 "sweep.targets.4 option 'runtime': unknown option (valid options: threads", "inner",
                 "latency.proxy: unknown device 'toaster'", "search.batch_size: 50 > population 10"]:
        assert frag in msg, (frag, msg)


def test_unknown_space_reported_with_the_rest():
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "x", "space": {"name": "nb202"}, "sweep": {"transfer": "magic"}})
    assert "space: unknown search space 'nb202'. Did you mean 'nb201'?" in str(e.value)
    assert "sweep.transfer: unknown method 'magic'" in str(e.value)
    with pytest.raises(ConfigError, match=r"space: space 'nb201': unknown option\(s\) \['width'\]; valid options: "
                                          r"channels, cells_per_stage, num_classes, resolution"):
        parse_config({"name": "x", "space": {"name": "nb201", "options": {"width": 2}}})


def test_table_accuracy_without_a_table():
    """Another space has no shipped table: the table source needs a table to read (accuracy.table)."""
    with pytest.raises(ConfigError, match="no latency table to read accuracy from: set accuracy.table"):
        parse_config({"name": "x", "space": {"name": "mobilenetv3"}, "accuracy": {"source": "table"},
                      "latency": {"proxy": "sim:0"}})


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top)


def test_run_dir_is_absolute(tmp_path):
    cfg = parse_config({"name": "r1", "output_dir": "out"})
    assert cfg.run_dir(tmp_path) == (tmp_path / "out" / "r1").resolve()


def test_tabulated_targets_need_the_table_domain():
    from orchestrator.pipeline.plan import make_plan

    with pytest.raises(ConfigError, match=r"search.domain: targets \['pixel3'\] are known only on the table's 1999 "
                                          r"architectures \(the space has 15,625\); set search.domain: table"):
        parse_config({"name": "x", "search": {"domain": "space"}, "sweep": {"targets": ["pixel3", "sim:1"]},
                      "latency": {"table": "nb201-hwnasbench"}, "accuracy": {"table": "nb201-full"}})
    parse_config({"name": "x", "search": {"domain": "space"}, "sweep": {"targets": ["sim:1"]}})
    # the whole-space table covers the space: its devices are targets of a whole-space search
    parse_config({"name": "x", "search": {"domain": "space"}, "sweep": {"targets": ["pixel3", "sim:1"]}})
    assert make_plan(parse_config({"name": "x"})).domain == "table"  # the defaults: tabulated targets
    assert make_plan(parse_config({"name": "x", "sweep": {"targets": ["sim:1"]}})).domain == "space"


@pytest.mark.parametrize("over, match", [
    ({"accuracy": {"source": "predictor", "predictor_samples": 20000}},
     r"accuracy.predictor_samples: 20,000 distinct subnets asked of space 'nb201', which has 15,625"),
    ({"sweep": {"targets": ["edgetpu"], "k": 1800}, "latency": {"table": "nb201-hwnasbench"},
      "accuracy": {"table": "nb201-full"}},
     r"sweep.k: 1,800 measurements of target 'edgetpu', which can be measured on 1,740 architectures"),
    ({"search": {"n_trials": 1_000_000_000_000}}, r"search.n_trials: 1,000,000,000,000 trials would take over"),
    ({"sweep": {"measure_front": 20000}},
     r"sweep.measure_front: 20,000 front members, but the search domain has 15,625"),
    ({"search": {"n_trials": 30, "population": 40}}, r"search.population: 40 > n_trials 30"),
    ({"sweep": {"simulated": 10**7}}, r"sweep.simulated: 10,000,000 devices; at most 100,000"),
    ({"latency": {"proxy": "sim:0", "proxy_samples": 16000}, "search": {"domain": "space"},
      "sweep": {"targets": ["sim:1"]}}, r"latency.proxy_samples: 16,000 distinct architectures asked"),
])
def test_counts_the_domain_cannot_give_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):  # refused by counting (an attempt would outlast the timeout)
        parse_config({"name": "x", **over})


def test_many_trials_on_a_small_domain_is_a_warning(capsys, tmp_path):
    from orchestrator.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("name: w\nsearch: {n_trials: 60000}\nlatency: {table: nb201-hwnasbench}\n")
    assert main(["validate", str(path)]) == 0
    assert "warning search.n_trials: 60,000 trials on a domain of 1,999 architectures" in capsys.readouterr().out


def test_distinct_draws_are_bounded(space):
    import numpy as np

    from orchestrator.errors import SpaceError
    from search_spaces.base import distinct_sample

    assert len(set(distinct_sample(space, space.size, np.random.default_rng(0)))) == space.size  # all, no hang
    with pytest.raises(SpaceError, match="15,626 distinct architectures asked of space 'nb201', which has 15,625"):
        distinct_sample(space, space.size + 1, np.random.default_rng(0))
    none = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    some = distinct_sample(space, 10, np.random.default_rng(1), exclude=[none])
    assert len(set(some)) == 10 and none not in some


def test_a_mistyped_key_gets_a_did_you_mean(tmp_path, capsys):
    """`hwnas validate` names the closest key of the section a mistyped one is in (nested, in a list entry)."""
    import yaml

    from orchestrator.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "serach": {}, "sweep": {
        "k_adaptiv": 0.5, "targets": [{"name": "torch-cpu", "optins": {}}]},
        "accuracy": {"supernet": {"data": {"nmae": "digits"}}}, "tracking": {"zzz": 1}}))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert "serach: Extra inputs are not permitted; did you mean 'search'?" in out
    assert "sweep.k_adaptiv: Extra inputs are not permitted; did you mean 'k_adaptive'?" in out
    assert "sweep.targets.0.optins: Extra inputs are not permitted; did you mean 'options'?" in out
    assert "accuracy.supernet.data.nmae: Extra inputs are not permitted; did you mean 'name'?" in out
    assert "tracking.zzz: Extra inputs are not permitted; this section's keys: enabled, experiment, uri" in out
