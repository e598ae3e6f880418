"""Pipeline configs: every problem reported at once, with its path; the shipped experiments validate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.config import load_config, parse_config
from orchestrator.errors import ConfigError
from orchestrator.pipeline.plan import make_plan

EXPERIMENTS = sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_shipped_experiments_validate(path):
    cfg = load_config(path)
    try:
        plan = make_plan(cfg, source=str(path))
    except ConfigError as e:  # an example of the optional runtimes, where they are not installed, or of data this
        from orchestrator.latency.devices.extras import EXTRA  # machine lacks (~/data, ../shared/data): only that

        problems = str(e).splitlines()[1:]
        if problems and all(EXTRA in p for p in problems):
            pytest.skip(f"{path.name} needs the optional extra ({EXTRA})")
        if problems and all(re.search(r"data\.root: .* does not exist; data '\w+' reads a", p) for p in problems):
            pytest.skip(f"{path.name} needs data this machine does not have: {problems}")
        raise
    assert plan.given is cfg  # plan.cfg: the same, with accuracy.source resolved (default_source.py)


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
            "latency": {"proxy": "toaster", "predictor": "gbdt"}, "search": {"batch_size": 50, "population": 10},
            "accuracy": {"source": "predictor", "predictor": "addtive"}}
    with pytest.raises(ConfigError) as e:
        make_plan(parse_config(data))
    msg = str(e.value)
    for frag in ["sweep.transfer: unknown method 'magic'",
                 "latency.predictor: unknown predictor 'gbdt'; registered: ['additive', 'mlp']",
                 "accuracy.predictor: unknown predictor 'addtive'; registered: ['additive', 'mlp']",
                 "sweep.targets.0: unknown device 'pixel9'",
                 "sweep.targets.1: 'sim:x' is not a simulated device name", "'fpga' is listed twice",
                 "sweep.targets.4 option 'runtime': unknown option (valid options: threads", "inner",
                 "latency.proxy: unknown device 'toaster'",
                 "search.algorithm: 'nsga2' needs complete generations (search.batch_size <= population)",
                 "batch_size 50 > population 10"]:
        assert frag in msg, (frag, msg)


def test_unknown_space_reported_with_the_rest():
    with pytest.raises(ConfigError) as e:
        make_plan(parse_config({"name": "x", "space": {"name": "nb202"}, "sweep": {"transfer": "magic"}}))
    assert "space: unknown search space 'nb202'. Did you mean 'nb201'?" in str(e.value)
    assert "sweep.transfer: unknown method 'magic'" in str(e.value)
    with pytest.raises(ConfigError, match=r"space: space 'nb201': unknown option\(s\) \['width'\]; valid options: "
                                          r"channels, cells_per_stage, num_classes, resolution"):
        make_plan(parse_config({"name": "x", "space": {"name": "nb201", "options": {"width": 2}}}))


def test_table_accuracy_without_a_table():
    """Another space has no shipped table: the table source needs a table to read (accuracy.table)."""
    with pytest.raises(ConfigError, match="no latency table to read accuracy from: set accuracy.table"):
        make_plan(parse_config({"name": "x", "space": {"name": "mobilenetv3"}, "accuracy": {"source": "table"},
                                "latency": {"proxy": "sim:0"}}))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory; give a config file in it"):  # was "no such config file"
        load_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top)


def test_a_key_given_twice_and_a_file_that_is_not_utf8_are_refused(tmp_path):
    """YAML keeps the last of two equal keys silently (``k: 10`` then ``k: 3`` validated with k = 3): refused with
    both lines; a binary or Latin-1 file gets one line instead of a UnicodeDecodeError traceback (break test)."""
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nsweep:\n  k: 10\n  targets: [sim:0]\n  k: 3\n")
    with pytest.raises(ConfigError, match=r"dup.yaml, line 5: key 'k' given twice in one mapping \(first on line 3\)"):
        load_config(dup)
    top = tmp_path / "top.yaml"
    top.write_text("name: a\nname: b\n")
    with pytest.raises(ConfigError, match="line 2: key 'name' given twice"):
        load_config(top)
    same_key_elsewhere = tmp_path / "ok.yaml"  # one key in two different mappings is fine
    same_key_elsewhere.write_text("name: a\nsearch: {seed: 1}\nsweep: {seed: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(same_key_elsewhere)
    assert "given twice" not in str(info.value) and "search.seed: Extra inputs" in str(info.value)
    binary = tmp_path / "latin.yaml"
    binary.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="latin.yaml is not UTF-8 text"):
        load_config(binary)


def test_run_dir_is_absolute(tmp_path):
    cfg = parse_config({"name": "r1", "output_dir": "out"})
    assert cfg.run_dir(tmp_path) == (tmp_path / "out" / "r1").resolve()


def test_tabulated_targets_need_the_table_domain():
    with pytest.raises(ConfigError, match=r"search.domain: targets \['pixel3'\] are known only on the table's 1999 "
                                          r"architectures \(the space has 15,625\); set search.domain: table"):
        make_plan(parse_config({"name": "x", "search": {"domain": "space"},
                                "sweep": {"targets": ["pixel3", "sim:1"]}, "latency": {"table": "nb201-hwnasbench"},
                                "accuracy": {"table": "nb201-full"}}))
    make_plan(parse_config({"name": "x", "search": {"domain": "space"}, "sweep": {"targets": ["sim:1"]}}))
    # the whole-space table covers the space: its devices are targets of a whole-space search
    make_plan(parse_config({"name": "x", "search": {"domain": "space"}, "sweep": {"targets": ["pixel3", "sim:1"]}}))
    assert make_plan(parse_config({"name": "x"})).domain.kind == "table"  # the defaults: tabulated targets
    assert make_plan(parse_config({"name": "x", "sweep": {"targets": ["sim:1"]}})).domain.kind == "space"


@pytest.mark.parametrize("over, match", [
    ({"accuracy": {"source": "predictor", "predictor_samples": 20000}},
     r"accuracy.predictor_samples: 20,000 distinct subnets asked of space 'nb201', which has 15,625"),
    ({"sweep": {"targets": ["edgetpu"], "k": 1800}, "latency": {"table": "nb201-hwnasbench"},
      "accuracy": {"table": "nb201-full"}},
     r"sweep.k: 1,800 measurements of target 'edgetpu', which can be measured on 1,740 architectures"),
    ({"search": {"n_trials": 1_000_000_000_000}}, r"search.n_trials: 1,000,000,000,000 trials would take over"),
    ({"sweep": {"measure_front": 20000}},
     r"sweep.measure_front: 20,000 front members, but the search domain has 15,625"),
    ({"search": {"n_trials": 30, "population": 40}}, r"search.algorithm: 'nsga2' needs a complete first "
                                                      r"generation.*population 40 > n_trials 30"),
    ({"sweep": {"target_search": {"algorithm": "nsga2", "n_trials": 2, "population": 50}}},
     r"sweep.target_search.algorithm: 'nsga2' needs a complete first generation.*population 50 > n_trials 2"),
    ({"sweep": {"simulated": 10**7}}, r"sweep.simulated: 10,000,000 devices; at most 100,000"),
    ({"latency": {"proxy": "sim:0", "proxy_samples": 16000}, "search": {"domain": "space"},
      "sweep": {"targets": ["sim:1"]}}, r"latency.proxy_samples: 16,000 distinct architectures asked"),
])
def test_counts_the_domain_cannot_give_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):  # refused by counting (an attempt would outlast the timeout)
        make_plan(parse_config({"name": "x", **over}))


@pytest.mark.parametrize("sources, rows, flagged", [("proxy", 5, ["pixel3"]), ("tabulated", 7, ["fpga", "pixel3"]),
                                                    ("proxy", 12, [])])
def test_a_source_device_measured_too_little_is_refused_at_validate(tmp_path, sources, rows, flagged):
    """A user's table of 5-7 architectures passed validate, then the run failed after the search ("source device
    'pixel3' has 5 measured architectures ... at least 12", the transfer's SourceSet). Counted in validate now,
    for the devices the transfer takes as sources."""
    from orchestrator.latency.table import shipped_table

    t = shipped_table(name="nb201-hwnasbench")
    cols = [t.devices.index(d) for d in ("pixel3", "fpga", "edgegpu")]
    path = tmp_path / "lat.csv"
    path.write_text("arch,lat_ms_pixel3,lat_ms_fpga,lat_ms_edgegpu\n" + "".join(
        f"{a},{','.join(str(t.values[i, c]) for c in cols)}\n" for i, a in enumerate(t.archs[:rows])))
    cfg = parse_config({"name": "x", "latency": {"table": str(path), "proxy": "pixel3"},
                        "accuracy": {"table": "nb201-hwnasbench", "table_column": "test_acc_cifar10_12ep"},
                        "search": {"domain": "table", "n_trials": 4, "population": 4},
                        "sweep": {"targets": ["edgegpu"], "sources": sources, "k": 3}})
    if not flagged:
        make_plan(cfg)
        return
    with pytest.raises(ConfigError) as e:
        make_plan(cfg)
    found = re.findall(r"device '(\w+)' has (\d+) measured architectures; as a transfer source", str(e.value))
    assert found == [(d, str(rows)) for d in flagged], str(e.value)


@pytest.mark.parametrize("algorithm", ["random", "tpe", "exhaustive"])
def test_a_population_larger_than_n_trials_binds_only_nsga2(algorithm):
    """Algorithms without generations take n_trials below the (default) population (a break test found them
    refused with NSGA-II's message)."""
    plan = make_plan(parse_config({"name": "x", "search": {"algorithm": algorithm, "n_trials": 2},
                                   "latency": {"table": "nb201-hwnasbench"}}))
    assert plan.cfg.search.population > plan.cfg.search.n_trials


def test_many_trials_on_a_small_domain_is_a_warning(capsys, tmp_path):
    from orchestrator.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("name: w\nsearch: {n_trials: 60000}\nlatency: {table: nb201-hwnasbench}\n")
    assert main(["validate", str(path)]) == 0
    assert "warning search.n_trials: 60,000 trials on a domain of 1,999 architectures" in capsys.readouterr().out


def test_the_proxy_named_as_a_target_is_a_warning(capsys, tmp_path):
    """Break test: the proxy in sweep.targets was dropped without a word ('tabulated' leaves it out by design)."""
    from orchestrator.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("name: w\nlatency: {table: nb201-hwnasbench, proxy: pixel3}\n"
                    "sweep: {targets: [edgegpu, pixel3]}\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning sweep.targets.1: 'pixel3' is the proxy (latency.proxy); it is not swept" in out
    assert [t.name for t in make_plan(load_config(path)).targets] == ["edgegpu"]
    path.write_text("name: w\nlatency: {table: nb201-hwnasbench, proxy: pixel3}\nsweep: {targets: [tabulated]}\n")
    assert main(["validate", str(path)]) == 0
    assert "is the proxy" not in capsys.readouterr().out


def test_a_dataset_that_is_not_there_is_refused_at_validate(tmp_path):
    """Break test: validate passed a missing npz / image folder / no root, and the run failed minutes later in a
    Ray actor. Every dataset section of the config is checked (existence; contents when read)."""
    npz = tmp_path / "d.npz"
    npz.write_bytes(b"")
    data = {"name": "x", "accuracy": {"source": "supernet",
                                      "supernet": {"data": {"name": "npz", "root": str(tmp_path / "nope.npz")}},
                                      "zero_cost": {"data": {"name": "imagefolder"}}},
            "search": {"dnas": {"data": {"name": "imagefolder", "root": str(npz)}}}}
    with pytest.raises(ConfigError) as e:
        make_plan(parse_config(data))
    msg = str(e.value)
    assert f"accuracy.supernet.data.root: {tmp_path / 'nope.npz'} does not exist; data 'npz' reads a file" in msg
    assert "accuracy.zero_cost.data.root: data 'imagefolder' reads a folder; set root to it" in msg
    assert f"search.dnas.data.root: {npz} is not a folder; data 'imagefolder' reads a folder" in msg
    data["accuracy"]["supernet"]["data"]["root"] = str(npz)
    data["accuracy"]["zero_cost"]["data"]["root"] = data["search"]["dnas"]["data"]["root"] = str(tmp_path)
    make_plan(parse_config(data))


def test_a_table_column_named_like_a_registered_device_is_a_warning(tmp_path, capsys):
    """Break test (turn 16): columns ``torch-cpu`` and ``sim:3`` of a user's table silently took over those
    names (the table's column wins, by design: `hwnas latency measure` names its column after the device); now
    validate says so, and the catalog lists each name once."""
    from orchestrator.cli import main
    from orchestrator.latency.devices import DeviceCatalog
    from orchestrator.latency.table import read_table, shipped_table
    from search_spaces import get_space

    t = shipped_table(name="nb201-hwnasbench")
    cols = [t.devices.index(d) for d in ("pixel3", "fpga", "edgegpu")]
    path = tmp_path / "lat.csv"
    path.write_text("arch,lat_ms_torch-cpu,lat_ms_sim:3,lat_ms_edgegpu\n" + "".join(
        f"{a},{','.join(str(t.values[i, c]) for c in cols)}\n" for i, a in enumerate(t.archs[:40])))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: w\nlatency: {{table: {path}, proxy: edgegpu}}\nsearch: {{domain: table}}\n"
                   "accuracy: {source: table, table: nb201-hwnasbench, table_column: test_acc_cifar10_12ep}\n"
                   "sweep: {targets: [torch-cpu, 'sim:3'], sources: proxy}\n")
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "sweep.targets.0: 'torch-cpu' is a column of the latency table, read from it; without the column it " \
           "would be the measured device 'torch-cpu'" in out
    assert "sweep.targets.1: 'sim:3' is a column of the latency table" in out and "the simulated device" in out
    names = DeviceCatalog(get_space("nb201"), read_table(path, get_space("nb201"))).names()
    assert names.count("torch-cpu") == 1


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


def test_parse_config_is_the_schema_alone(monkeypatch):
    """Loading a config builds no plan (issue 19): parse_config never reaches make_plan or the plan's builder,
    so a config whose device does not exist parses, and make_plan is what refuses it."""
    import orchestrator.pipeline.plan as plan_mod

    def no(*_a, **_k):
        raise AssertionError("parse_config built a plan")

    monkeypatch.setattr(plan_mod, "make_plan", no)
    monkeypatch.setattr(plan_mod, "_build", no)
    cfg = parse_config({"name": "x", "sweep": {"targets": ["pixel9"]}, "latency": {"proxy": "toaster"}})
    assert cfg.sweep.targets == ["pixel9"] and cfg.latency.proxy == "toaster"
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="sweep.targets.0: unknown device 'pixel9'") as e:
        make_plan(cfg, source="c.yaml")
    assert str(e.value).startswith("c.yaml: 2 problem(s):")


def test_run_pipeline_makes_its_plan_once(monkeypatch, tmp_path):
    """run_pipeline validates a config with one make_plan (the plan's builder runs once) and hands that plan on;
    given a plan already made (hwnas run, experiments/run.py), it builds none."""
    import orchestrator.pipeline.plan as plan_mod
    import orchestrator.pipeline.run as run_mod

    builds, seen = [], []
    real = plan_mod._build

    def counted(cfg):
        builds.append(cfg.name)
        return real(cfg)

    monkeypatch.setattr(plan_mod, "_build", counted)
    monkeypatch.setattr(run_mod, "_locked", lambda plan, *a: seen.append(plan) or {"stopped": "before the work"})
    cfg = parse_config({"name": "once", "output_dir": str(tmp_path), "sweep": {"targets": ["sim:0"]},
                        "latency": {"proxy": "sim:1"}})
    assert run_mod.run_pipeline(cfg, progress=False) == {"stopped": "before the work"}
    assert builds == ["once"] and seen[0].given is cfg and [t.name for t in seen[0].targets] == ["sim:0"]
    plan = seen[0]
    assert run_mod.run_pipeline(plan, progress=False) == {"stopped": "before the work"}
    assert builds == ["once"] and seen[1] is plan  # the plan given is the plan run


@pytest.mark.parametrize("over, needs", [
    ({"search": {"algorithm": "exhaustive", "domain": "space"}, "space": {"name": "mobilenetv3"},
      "latency": {"proxy": "sim:0"}, "sweep": {"targets": ["sim:1"]}, "accuracy": {"source": "supernet"}},
     r"search.algorithm: 'exhaustive' needs a finite domain; space 'mobilenetv3' has .* use search.domain: table"),
    ({"search": {"algorithm": "milp"}, "latency": {"predictor": "mlp"}},
     r"search.algorithm: 'milp' needs an additive latency model; set latency.predictor: additive"),
    ({"search": {"algorithm": "milp"}, "latency": {"predictor": "additive"}, "accuracy": {"source": "supernet"}},
     r"search.algorithm: 'milp' needs an additive accuracy model; use accuracy.source: predictor with "
     r"accuracy.predictor: additive"),
    ({"search": {"algorithm": "dnas"}, "space": {"name": "mobilenetv3"}, "latency": {"proxy": "sim:0"},
      "sweep": {"targets": ["sim:1"]}, "accuracy": {"source": "supernet"}},
     r"search.algorithm: 'dnas' needs a space with a DNAS view; space 'mobilenetv3' has none \(DNAS searches "
     r"fbnet, nb201\): use nsga2"),
    ({"search": {"algorithm": "dnas", "objectives": ["params_m"]}},
     r"search.algorithm: 'dnas' needs accuracy against latency only"),
    ({"sweep": {"target_search": {"algorithm": "dnas"}}},
     r"sweep.target_search.algorithm: 'dnas' needs a search of its own; 'dnas' trains a supernet; per target use "
     r"'auto'"),
    ({"sweep": {"target_search": {"algorithm": "milp"}, "memory_mb": {"pixel3": 100.0}}},
     r"sweep.target_search.algorithm: 'milp' needs two objectives \(accuracy against latency\) without cost "
     r"limits"),
    ({"search": {"algorithm": "milp"}, "latency": {"predictor": "additive"},
      "sweep": {"refine_trials": 10}},
     r"sweep.refine_trials \(search.algorithm\): 'milp' needs an additive latency model"),
    ({"search": {"batch_size": 50, "population": 10}},
     r"search.algorithm: 'nsga2' needs complete generations \(search.batch_size <= population\)"),
])
def test_an_unmet_requirement_of_the_algorithm_is_refused_at_validate(over, needs):
    """The checks ask each algorithm what it needs (ALGORITHMS[...].requirements): each unmet requirement is
    refused by make_plan, naming the requirement and the fix."""
    data = {"name": "x", "accuracy": {"source": "table"}}
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    with pytest.raises(ConfigError, match=needs):
        make_plan(parse_config(data))


def test_dnas_on_nb201_validates_with_any_latency_predictor(tmp_path, capsys):
    """nb201 has a DNAS view (its 6 edges) that fits its per-edge latency table over the domain's cells, so
    'dnas' needs no additive predictor there (fbnet's view does: its table is the model's coefficients)."""
    from orchestrator.cli import main
    from orchestrator.search.algorithms import ALGORITHMS, ProblemTraits, unmet
    from orchestrator.search.dnas import VIEWS
    from search_spaces import get_space

    assert {"fbnet", "nb201"} <= set(VIEWS.names())
    for predictor in ("additive", "mlp"):
        make_plan(parse_config({"name": "x", "accuracy": {"source": "table"}, "search": {"algorithm": "dnas"},
                                "latency": {"predictor": predictor}}))
    path = tmp_path / "d.yaml"
    path.write_text("name: d\nsearch: {algorithm: dnas}\naccuracy: {source: table}\n")
    assert main(["validate", str(path)]) == 0
    # break test: it trained its supernet for minutes without a word; now validate says so
    assert "search.algorithm: 'dnas' trains a supernet of its own on search.dnas.data" in capsys.readouterr().out
    path.write_text("name: d\nsearch: {algorithm: dnas}\naccuracy: {source: supernet}\n")
    assert main(["validate", str(path)]) == 0
    assert "trains a supernet of its own" not in capsys.readouterr().out
    fb = ProblemTraits(get_space("fbnet"), True, False, None)
    assert [r.needs for r in unmet("dnas", fb)] == ["an additive latency model"]
    assert ALGORITHMS.get("dnas").requirements(ProblemTraits(get_space("nb201"), True, None, None))[1].needs \
        .startswith("a finite domain")


def test_the_checks_follow_what_an_algorithm_declares(monkeypatch):
    """A requirement is stated once, by the algorithm: a registered algorithm that declares a new need is
    refused at validate with its words, and 'auto' skips it, with no change to the checks."""
    from orchestrator.search import algorithms as alg

    milp = alg.ALGORITHMS.get("milp")
    extra = alg.Requirement("a licence for the solver", False, "set HWNAS_SOLVER_LICENCE")
    monkeypatch.setattr(type(milp), "requirements", lambda self, p: [extra])
    with pytest.raises(ConfigError, match=r"search.algorithm: 'milp' needs a licence for the solver; set "
                                          r"HWNAS_SOLVER_LICENCE"):
        make_plan(parse_config({"name": "x", "accuracy": {"source": "table"}, "search": {"algorithm": "milp"}}))
    traits = alg.ProblemTraits(make_plan(parse_config({"name": "x"})).space, finite=False, additive_latency=True,
                               additive_accuracy=True)
    assert alg.choose(traits) == "nsga2"  # milp's unmet need: the next of AUTO_ORDER
    monkeypatch.undo()
    assert alg.choose(traits) == "milp"
    assert alg.choose(alg.ProblemTraits(traits.space, True, True, True)) == "exhaustive"


@pytest.mark.parametrize("additive", [True, False])
def test_milp_asks_the_predictor_registry_what_a_predictor_declares(monkeypatch, additive):
    """'milp' needs an additive latency model: a predictor registered elsewhere that declares ``additive`` is
    accepted (checks.py names no predictor), one that does not is refused."""
    from orchestrator.latency.predictors import PREDICTORS, AdditivePredictor, MLPPredictor

    class Registered(AdditivePredictor if additive else MLPPredictor):  # type: ignore[misc]
        kind = "registered-test"

    monkeypatch.setitem(PREDICTORS._items, "registered-test", Registered)
    monkeypatch.setitem(PREDICTORS._help, "registered-test", "a test predictor")
    cfg = parse_config({"name": "x", "accuracy": {"source": "table"}, "search": {"algorithm": "milp"},
                        "latency": {"predictor": "registered-test"}})  # a name registered in code, from YAML
    if additive:
        assert make_plan(cfg).cfg.latency.predictor == "registered-test"
    else:
        with pytest.raises(ConfigError, match="'milp' needs an additive latency model"):
            make_plan(cfg)


def test_every_seed_takes_the_whole_range_and_refuses_beyond_it():
    """A seed is 0 .. 2**63 - 1 wherever a config has one (break test: 2**63 - 1 passed the schema and was then
    refused by the bound on counts, 1e15; the supernet's batches overflowed torch's 64-bit seed)."""
    top = 2**63 - 1
    cfg = parse_config({"name": "x", "seed": top, "confirm": {"seed": top},
                        "accuracy": {"supernet": {"data": {"seed": top}, "train": {"seed": top}}}}, "c.yaml")
    assert cfg.seed == top and cfg.accuracy.supernet.data.seed == top
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "x", "seed": top + 1, "accuracy": {"supernet": {"train": {"seed": -1}}}}, "c.yaml")
    assert "  seed:" in str(e.value) and "  accuracy.supernet.train.seed:" in str(e.value)


def test_the_largest_seed_draws_training_batches():
    import torch

    from orchestrator.supernet.data import DataConfig, load_dataset, train_batches

    data = load_dataset(DataConfig(name="synthetic", synthetic_size=16, resolution=8))
    top = [b[1] for b in train_batches(data, 4, seed=2**63 - 1, epoch=3, drop_last=False)]
    assert torch.equal(torch.sort(torch.cat(top)).values, torch.sort(data.y_train).values)
