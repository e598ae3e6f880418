"""The whole pipeline on the shipped tables (no training): files, MLflow records, honest figures, resume,
report, a user's own latency table, the per-device baseline, MILP, refinement."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.pipeline import run_pipeline
from orchestrator.pipeline.plan import make_plan
from orchestrator.report import report

pytestmark = pytest.mark.ray


def _cfg(tmp_path, **over):
    data = {
        "name": "t", "seed": 0, "output_dir": str(tmp_path / "runs"),
        # pinned to the 1,999-cell HW-NAS-Bench table (its 12-epoch accuracies), which these tests were written on
        "accuracy": {"source": "table", "table": "nb201-hwnasbench", "table_column": "test_acc_cifar10_12ep"},
        "latency": {"table": "nb201-hwnasbench", "proxy": "auto"},
        "search": {"algorithm": "nsga2", "n_trials": 60, "population": 20, "domain": "table"},
        "sweep": {"targets": ["tabulated"], "simulated": 2, "k": 10, "per_device_search": True},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test"},
    }
    for k, v in over.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) else v
    return parse_config(data)


# The transfer learns from the proxy alone: one source set to meta-learn, not one per target (each took seconds
# per bucket of k: most of a small run's time). For the runs that test something else; the module's run
# (`finished`) keeps the default, every tabulated device but the target.
PROXY_SOURCES = {"sources": "proxy"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_cluster):
    tmp_path = tmp_path_factory.mktemp("pipe")
    cfg = _cfg(tmp_path)
    summary = run_pipeline(cfg, progress=False)
    return tmp_path, cfg, summary


def test_files_and_summary(finished):
    tmp_path, cfg, summary = finished
    run_dir = cfg.run_dir()
    assert summary["proxy"] == "fpga"
    names = [r["target"] for r in summary["targets"]]
    assert names == ["edgegpu", "edgetpu", "eyeriss", "pixel3", "raspi4", "sim:0", "sim:1"]
    assert summary["n_reuse"] + summary["n_adapt"] == 7
    assert summary["target_measurements"] == 7 * 10
    for r in summary["targets"]:
        assert (r["decision"] == "reuse") == (r["srcc_lb"] >= 0.9), r  # the bound decides
        assert r["n_reference"] == (1740 if r["target"] == "edgetpu" else 1999)  # the whole table, not the pool
        assert 0 < r["hv_ratio"] <= r["pool_hv_ratio"] + 1e-9 <= 1.0 + 1e-9  # coverage bounds the choice
        assert r["per_device_evaluated"] >= 1 and r["per_device_s"] > 0 and 0 < r["per_device_hv_ratio"] <= 1
    assert summary["mean_hv_ratio"] > summary["mean_hv_ratio_reuse"] + 0.1  # honest: reuse loses the fast end
    assert summary["unserved_budgets"] <= summary["unserved_budgets_reuse"]
    for f in ["summary.json", "candidates.csv", "optuna.journal", "evaluations.jsonl", "srcc_heatmap.png",
              "hv_history.png", "run.log", "fronts/proxy.csv", "fronts/edgegpu.csv", "fronts/edgegpu.json",
              "fronts/edgegpu.png", "fronts/sim_0.png", "targets/sim_1.json"]:
        assert (run_dir / f).is_file(), f
    front = json.loads((run_dir / "fronts" / "edgegpu.json").read_text())
    assert front and {"arch", "accuracy", "accuracy_from", "predicted_ms", "true_ms", "proxy_ms"} <= set(front[0])
    assert {r["accuracy_from"] for r in front} == {"table"}
    lat = [row["predicted_ms"] for row in front]
    acc = [row["accuracy"] for row in front]
    assert lat == sorted(lat) and acc == sorted(acc)  # a front: faster is less accurate


def test_honest_figures_recomputed_from_the_files(finished, shipped):
    """hv_ratio in the summary is the chosen front's, at true latency, against the whole table's front."""
    from orchestrator.latency.table import shipped_accuracy
    from orchestrator.search.quality import front_quality, reference_front

    _, cfg, summary = finished
    acc = shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")
    row = next(r for r in summary["targets"] if r["target"] == "pixel3")
    front = json.loads((cfg.run_dir() / "fronts" / "pixel3.json").read_text())
    ref = reference_front([acc[a] for a in shipped.archs], shipped.lookup("pixel3", shipped.archs))
    q = front_quality(ref, [r["accuracy"] for r in front], shipped.lookup("pixel3", [r["arch"] for r in front]))
    assert q["hv_ratio"] == pytest.approx(row["hv_ratio"]) and q["igd"] == pytest.approx(row["igd"])


def test_mlflow_parent_and_nested_runs(finished):
    from mlflow.tracking import MlflowClient

    tmp_path, cfg, summary = finished
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.get_experiment_by_name("test")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    p = parents[0]
    assert p.data.tags["proxy"] == "fpga" and "version.optuna" in p.data.tags
    assert len(p.data.tags["mlflow.source.git.commit"]) == 40  # the checkout the run came from
    assert p.data.params["config.search.n_trials"] == "60"
    assert p.data.metrics["mean_hv_ratio"] == pytest.approx(summary["mean_hv_ratio"])
    arts = {a.path for a in c.list_artifacts(p.info.run_id)}
    assert {"srcc_heatmap.png", "summary.json", "proxy_search"} <= arts
    kids = {r.data.tags["hwnas.device"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id}
    assert set(kids) == {r["target"] for r in summary["targets"]}
    k = kids["edgegpu"]
    row = next(r for r in summary["targets"] if r["target"] == "edgegpu")
    assert (k.info.end_time - k.info.start_time) / 1000 >= row["seconds"] - 0.01  # its real duration
    assert {"srcc_k", "srcc_lb", "hv_ratio", "pool_hv_ratio", "hv_ratio_reuse", "igd", "acc_loss_q50",
            "unserved_budgets", "per_device_hv_ratio", "per_device_evaluated", "per_device_s"} <= set(k.data.metrics)
    assert k.data.tags["decision"] in {"reuse", "adapt"} and kids["sim:1"].data.tags["simulated"] == "True"
    assert kids["edgegpu"].data.tags["simulated"] == "False"
    assert k.data.params["decision_rule"] == "bound"
    assert {"edgegpu.csv", "edgegpu.json", "edgegpu.png"} <= {a.path for a in c.list_artifacts(k.info.run_id)}
    # the link hwnas run prints opens the sweep's saved runs view: its filter selects exactly the device runs
    link = summary["mlflow_view"]
    assert link.startswith(f"#/experiments/{exp.experiment_id}/runs?viewStateShareKey=hwnas-")
    key = link.split("viewStateShareKey=")[1].split("&")[0]
    state = json.loads(json.loads(exp.tags[f"mlflow.sharedViewState.{key}"])["state"])
    shown = c.search_runs([exp.experiment_id], filter_string=state["searchFilter"])
    assert sorted(r.info.run_id for r in shown) == sorted(r.info.run_id for r in kids.values())


def test_int8_of_a_run_without_a_network_is_refused(finished, capsys):
    """A run whose accuracies come from a table has no network to quantize: a clear error (exit 2), no work."""
    from orchestrator.cli import main

    _, cfg, _ = finished
    assert main(["int8", str(cfg.run_dir())]) == 2
    err = capsys.readouterr().err
    assert "accuracy.source 'table' gives accuracies without a network" in err and "supernet or predictor" in err
    assert not (cfg.run_dir() / "int8.json").exists()


def test_report_prints_the_tables_with_the_baseline(finished):
    _, cfg, summary = finished
    text = report(cfg.run_dir())
    row = next(r for r in summary["targets"] if r["target"] == "sim:1")
    line = next(x for x in text.splitlines() if x.startswith("sim:1"))
    assert f"{row['hv_ratio']:.3f}" in line and f"{row['per_device_hv_ratio']:.3f}" in line
    assert f"{int(row['per_device_evaluated'])}" in line.split()
    assert "proxy fpga: " in text and "pixel3: " in text


def test_rerun_needs_resume_and_same_config(finished):
    tmp_path, cfg, summary = finished
    with pytest.raises(ConfigError, match="--resume"):
        run_pipeline(cfg, progress=False)
    other = _cfg(tmp_path, search={"n_trials": 80})
    with pytest.raises(ConfigError, match=r"another config \(search.n_trials: 60 -> 80\)"):
        run_pipeline(other, resume=True, progress=False)


def test_resume_accepts_a_run_begun_before_a_setting_was_added(tmp_path):
    """A run dir written by an older hwnas (its stored config lacks a setting added since, at its default)
    resumes; a setting that differs, or one this version does not know, is still refused."""
    import json

    from orchestrator.pipeline.context import STATE_FILE, check_run_dir, public_config

    cfg = _cfg(tmp_path)
    d = tmp_path / "runs" / "t"
    d.mkdir(parents=True)
    stored = public_config(cfg)
    assert "int8_accuracy" in stored["sweep"]
    del stored["sweep"]["int8_accuracy"]  # as written before that setting existed
    (d / STATE_FILE).write_text(json.dumps({"config": stored}))
    assert check_run_dir(cfg, True, d) == d
    stored["search"]["n_trials"] = 61
    (d / STATE_FILE).write_text(json.dumps({"config": stored}))
    with pytest.raises(ConfigError, match=r"another config \(search.n_trials: 61 -> 60\)"):
        check_run_dir(cfg, True, d)
    stored["search"]["n_trials"] = cfg.search.n_trials
    stored["search"]["a_removed_setting"] = 1
    (d / STATE_FILE).write_text(json.dumps({"config": stored}))
    with pytest.raises(ConfigError, match=r"another config \(search.a_removed_setting: 1 -> \(unset\);"):
        check_run_dir(cfg, True, d)


def test_a_resume_names_each_changed_setting_and_may_run_elsewhere(tmp_path):
    """The refusal named the sections ('search'), not the settings (break test); where the run executes (the
    ray section: a local Ray's CPUs, a cluster's address) may change between a crash and --resume."""
    from orchestrator.pipeline.context import MAX_CHANGES_SHOWN, STATE_FILE, check_run_dir, public_config

    cfg = _cfg(tmp_path)
    d = tmp_path / "runs" / "t"
    d.mkdir(parents=True)
    stored = public_config(cfg)
    stored["ray"] = {"address": None, "num_cpus": 64}
    (d / STATE_FILE).write_text(json.dumps({"config": stored}))
    assert check_run_dir(cfg, True, d) == d
    stored["sweep"]["k"], stored["sweep"]["targets"] = 12, ["pixel3", "x" * 80]
    stored["tracking"]["experiment"] = "other"
    (d / STATE_FILE).write_text(json.dumps({"config": stored}))
    with pytest.raises(ConfigError) as e:
        check_run_dir(cfg, True, d)
    assert ('another config (sweep.k: 12 -> 10; sweep.targets: ["pixel3", "' + "x" * 45 + '... -> ["tabulated"]; '
            'tracking.experiment: "other" -> "test")') in str(e.value)
    stored["sweep"].update({f"x{i}": i for i in range(MAX_CHANGES_SHOWN)})
    (d / STATE_FILE).write_text(json.dumps({"config": stored}))
    with pytest.raises(ConfigError, match=r"; and 3 more\)"):
        check_run_dir(cfg, True, d)


def test_resume_of_a_finished_run_redoes_only_a_target_whose_front_was_lost(finished):
    """Nothing but the one target whose front file was deleted (report and compare name that file and say a
    resume writes it again; before, the resume took the target as done and the front stayed lost)."""
    tmp_path, cfg, summary = finished
    run_dir = cfg.run_dir()
    before = (run_dir / "evaluations.jsonl").read_text()
    stamp = (run_dir / "targets" / "edgegpu.json").stat().st_mtime_ns
    lost = run_dir / "fronts" / "pixel3.json"
    front = lost.read_text()
    lost.unlink()
    again = run_pipeline(cfg, resume=True, progress=False)
    assert (run_dir / "evaluations.jsonl").read_text() == before
    assert (run_dir / "targets" / "edgegpu.json").stat().st_mtime_ns == stamp
    assert json.loads(lost.read_text()) == json.loads(front)
    assert [r["target"] for r in again["targets"]] == [r["target"] for r in summary["targets"]]
    assert again["mean_hv_ratio"] == pytest.approx(summary["mean_hv_ratio"])
    assert "resume: 6 targets already done" in (run_dir / "run.log").read_text()


def test_compare_overlays_two_runs_and_records_it(finished, monkeypatch, capsys):
    """hwnas compare: a second seed beside the first, from another working directory (the MLflow URI comes
    from the run dir)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import main

    tmp_path, cfg, summary = finished
    other = _cfg(tmp_path, name="t_seed1", seed=1, sweep={"targets": ["pixel3", "edgegpu"], "simulated": 0,
                                                            "per_device_search": False, **PROXY_SOURCES})
    s2 = run_pipeline(other, progress=False)
    monkeypatch.chdir(tmp_path.parent)  # elsewhere: a default tracking URI would point at another store
    assert main(["compare", str(cfg.run_dir()), str(other.run_dir()), "--out", str(tmp_path / "cmp")]) == 0
    text = capsys.readouterr().out
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert [(r["device"], r["run"]) for r in rows] == [("edgegpu", "t"), ("edgegpu", "t_seed1"), ("pixel3", "t"),
                                                       ("pixel3", "t_seed1")]  # the devices both runs have
    mine = next(r for r in rows if r["run"] == "t_seed1" and r["device"] == "pixel3")
    want = next(t for t in s2["targets"] if t["target"] == "pixel3")
    assert mine["hv_ratio"] == pytest.approx(want["hv_ratio"]) and mine["decision"] == want["decision"]
    assert f"{want['hv_ratio']:.3f}" in next(x for x in text.splitlines() if x.startswith("pixel3") and "t_seed1" in x)
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 20_000
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = c.search_runs([c.get_experiment_by_name("test").experiment_id], "tags.`hwnas.kind` = 'compare'")
    assert {"compare.png", "compare.csv", "compare.json"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    assert run.data.metrics["hv_ratio.t_seed1"] == pytest.approx(np.mean([t["hv_ratio"] for t in s2["targets"]]))
    capsys.readouterr()
    assert main(["compare", str(cfg.run_dir()), str(other.run_dir()), "--device", "sim:0", "--no-mlflow"]) == 2
    assert "'sim:0' is not a target of t_seed1" in capsys.readouterr().err
    assert main(["compare", str(cfg.run_dir()), str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_hooks_run_after_the_fan_out_drains(tmp_path, ray_cluster, monkeypatch):
    """A target's hooks (measure the front, refine, baseline, export, int8 accuracy, record) run in order, target
    by target, only after every target task has finished: no front is timed while other target tasks load the host.
    Each target is judged once, on the driver."""
    from orchestrator.pipeline import extras, targets

    events: list[tuple[str, str]] = []
    real_fan_out, real_hooks, real_judge = targets.run_targets, extras.target_hooks, targets.judge

    def fan_out(shared, inputs, *a, **kw):
        out = real_fan_out(shared, inputs, *a, **kw)
        events.append(("fan_out_drained", ",".join(t.name for t in inputs)))
        return out

    def judge(shared, target, rep):
        events.append(("judge", target.name))
        real_judge(shared, target, rep)

    def hooks(ctx, accuracy, record):
        def logged(name, hook):
            def run(f):
                events.append((name, f.target.name))
                hook(f)
            return run
        return [(name, logged(name, hook)) for name, hook in real_hooks(ctx, accuracy, record)]

    monkeypatch.setattr(targets, "run_targets", fan_out)
    monkeypatch.setattr(targets, "judge", judge)
    monkeypatch.setattr(extras, "target_hooks", hooks)
    cfg = _cfg(tmp_path, search={"n_trials": 30, "population": 10},
               sweep={"targets": ["pixel3", "eyeriss"], "simulated": 1, "sources": "proxy", "refine_trials": 4},
               tracking={"enabled": False})
    summary = run_pipeline(cfg, progress=False)
    names = ["pixel3", "eyeriss", "sim:0"]
    assert [r["target"] for r in summary["targets"]] == names
    steps = ["measure_front", "refine", "baseline", "export", "int8_accuracy", "record"]
    assert events == [("fan_out_drained", ",".join(names)), *(("judge", n) for n in names),
                      *((s, n) for n in names for s in steps)]
    # the hooks' work (the proxy's own baseline may find every cell in the log already: evaluated 0 is fine)
    assert all("per_device_hv_ratio" in r and "per_device_evaluated" in r and "hv_ratio" in r
               for r in summary["targets"])


def test_a_users_table_column_is_a_target(tmp_path, shipped, ray_cluster):
    """latency.table: a CSV with a device the project has never seen (here: raspi4's column under a new
    name, with a gap); it is named in sweep.targets and judged against its own whole table."""
    from orchestrator.latency.table import LatencyTable, write_table

    vals = shipped.select(["fpga", "pixel3", "raspi4"]).values.copy()
    vals[:40, 2] = np.nan
    path = tmp_path / "mine.csv"
    write_table(path, LatencyTable(shipped.archs, ["lat_ms_fpga", "lat_ms_pixel3", "lat_ms_eagle_gtx"], vals))
    cfg = _cfg(tmp_path, name="mine", latency={"table": str(path), "proxy": "fpga"},
               sweep={"targets": ["eagle_gtx"], "simulated": 0, "k": 8, "per_device_search": False,
                      **PROXY_SOURCES},
               tracking={"enabled": False})
    summary = run_pipeline(cfg, progress=False)
    (row,) = summary["targets"]
    assert row["target"] == "eagle_gtx" and row["kind"] == "tabulated" and row["n_reference"] == 1999 - 40
    assert 0 < row["hv_ratio"] <= 1 and row["n_measurements"] == 8
    k_ids = json.loads((cfg.run_dir() / "fronts" / "eagle_gtx.json").read_text())
    assert all(r["true_ms"] is not None for r in k_ids)
    every = _cfg(tmp_path, name="all", latency={"table": str(path), "proxy": "fpga"},
                 sweep={"targets": ["tabulated"], "simulated": 0}, tracking={"enabled": False})

    assert [t.name for t in make_plan(every).targets] == ["pixel3", "eagle_gtx"]
    with pytest.raises(ConfigError, match=r"sweep.targets.0: unknown device 'eagle_gtz'. Did you mean 'eagle_gtx'"):
        make_plan(_cfg(tmp_path, name="typo", latency={"table": str(path), "proxy": "fpga"},
                       sweep={"targets": ["eagle_gtz"], "simulated": 0}))


def test_milp_search_in_the_pipeline(tmp_path, ray_cluster):
    """search.algorithm milp: the exact front of additive models, evaluated like any candidates."""
    cfg = _cfg(tmp_path, name="m", search={"algorithm": "milp", "n_trials": 40},
               sweep={"targets": ["edgegpu", "pixel3"], "simulated": 0, "k": 10, "per_device_search": False,
                      **PROXY_SOURCES})
    summary = run_pipeline(cfg, progress=False)
    assert 3 <= summary["n_candidates"] <= 40
    assert summary["timings"]["search_milp_solves"] >= summary["n_candidates"]
    assert [r["target"] for r in summary["targets"]] == ["edgegpu", "pixel3"]
    assert all(0 < r["hv_ratio"] <= 1 + 1e-9 for r in summary["targets"])


@pytest.mark.slow
def test_dnas_on_nb201_in_the_pipeline(tmp_path, ray_cluster):
    """search.algorithm dnas on nb201 (a tiny supernet on digits): the lambda sweep over the 6 edges with the
    per-edge table fitted to the proxy's predictor, its derived architectures (snapped to the table domain)
    evaluated by the run's accuracy source like any candidate, then swept to the targets."""
    dnas = {"lambdas": [0.0, 0.5, 5.0], "warmup_epochs": 0, "epochs": 1, "max_steps": 2, "batch_size": 16,
            "arch_lr": 0.3, "samples": 2, "data": {"name": "digits", "resolution": 8, "max_train": 128},
            "supernet_options": {"channels": 4, "cells_per_stage": 1, "resolution": 8}}
    cfg = _cfg(tmp_path, name="d", search={"algorithm": "dnas", "dnas": dnas},
               sweep={"targets": ["edgegpu"], "simulated": 0, "k": 10, "per_device_search": False,
                      **PROXY_SOURCES})
    summary = run_pipeline(cfg, progress=False)
    t = summary["timings"]
    assert t["search_dnas_lambdas"] == 3 and t["search_dnas_images"] == 3 * 2 * (16 + 16)
    assert 3 <= summary["n_candidates"] == t["search_dnas_archs"] == t["search_evaluated"] <= 3 * 3
    from orchestrator.latency.table import shipped_accuracy

    truth = shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")
    with (cfg.run_dir() / "candidates.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["n_candidates"]
    for r in rows:  # every derived architecture is a cell of the domain, evaluated by the table source
        assert float(r["accuracy"]) == pytest.approx(truth[r["arch_id"]])
    front = json.loads((cfg.run_dir() / "fronts" / "proxy.json").read_text())  # the search's front
    by_id = {r["arch_id"]: r for r in rows}
    assert front and {r["arch"] for r in front} <= set(by_id)
    assert all(r["accuracy"] == pytest.approx(truth[r["arch"]]) for r in front)
    assert {r["accuracy_from"] for r in front} == {"table"}
    assert [r["target"] for r in summary["targets"]] == ["edgegpu"]
    assert 0 < summary["targets"][0]["hv_ratio"] <= 1 + 1e-9


def test_extra_objective_and_cost_limit_through_the_sweep(tmp_path, shipped, ray_cluster):
    """search.objectives / search.constraints: the proxy search has three objectives and the limit as a
    constraint; every chosen front is non-dominated in all three and within the limit, and is judged against
    the true front of the architectures within it."""
    import csv

    from orchestrator.search.pareto import pareto_mask_nd
    from search_spaces.base import SpaceSpec
    from search_spaces.costs import CostModel

    costs = CostModel(SpaceSpec(name="nb201"))
    limit = float(np.quantile(costs.values(list(shipped.archs), "params_m"), 0.6))
    cfg = _cfg(tmp_path, name="cost", search={"objectives": ["params_m"], "constraints": {"params_m": limit}},
               sweep={"targets": ["pixel3", "edgegpu"], "simulated": 0, "k": 10, "per_device_search": False,
                      **PROXY_SOURCES},
               tracking={"enabled": False})
    summary = run_pipeline(cfg, progress=False)
    with open(cfg.run_dir() / "candidates.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all((r["feasible"] == "True") == (float(r["params_m"]) <= limit) for r in rows)
    assert any(r["feasible"] == "False" for r in rows)  # the search met the limit, and it was told
    assert (cfg.run_dir() / "fronts" / "proxy_projections.png").stat().st_size > 10_000
    within = int((costs.values(list(shipped.archs), "params_m") <= limit).sum())
    for row in summary["targets"]:
        assert row["n_reference"] == within  # judged against the truth within the limit
        assert 0 < row["hv_ratio"] <= row["pool_hv_ratio"] + 1e-9
        front = json.loads((cfg.run_dir() / "fronts" / f"{row['target']}.json").read_text())
        p = np.array([r["params_m"] for r in front])
        assert (p <= limit + 1e-12).all()
        pts = np.c_[-np.array([r["accuracy"] for r in front]), [r["predicted_ms"] for r in front], p]
        assert pareto_mask_nd(pts).all()
    text = report(cfg.run_dir())  # hwnas report shows the costs beside the latencies
    lines = text.splitlines()
    head = lines[next(i for i, x in enumerate(lines) if x.startswith("pixel3: ")) + 1]
    assert head.split()[-4:] == ["params_m", "macs_m", "peak_mem_mb", "arch"]
    first = json.loads((cfg.run_dir() / "fronts" / "pixel3.json").read_text())[0]
    line = next(x for x in text.splitlines() if x.rstrip().endswith(first["arch"]))
    assert line.split()[-4] == f"{first['params_m']:.4g}"


def test_milp_config_needs_additive_models():
    with pytest.raises(ConfigError) as e:
        make_plan(parse_config({"name": "x", "search": {"algorithm": "milp"}, "latency": {"predictor": "mlp"},
                                "accuracy": {"source": "supernet"}}))
    assert "latency.predictor: additive" in str(e.value) and "accuracy.predictor: additive" in str(e.value)


@pytest.mark.slow
def test_refinement_and_budget_on_adapted_targets(tmp_path, ray_cluster):
    """The point rule at threshold 1.0 adapts every target; the refinement search runs on the adapted
    predictor with the latency budget, and its front is judged against the same reference."""
    cfg = _cfg(tmp_path, name="r", search={"latency_budget_ms": 5.0},
               sweep={"targets": ["edgegpu", "pixel3"], "simulated": 0, "k": 10, "srcc_threshold": 1.0,
                      "decision": "point", "refine_trials": 20, "per_device_search": True, **PROXY_SOURCES})
    summary = run_pipeline(cfg, progress=False)
    for r in summary["targets"][:1]:
        # the per-device baseline ran and was judged against the same reference (how many budgets it serves is
        # a quality figure that moves with the seed: 0 of 3 unserved at seed 0 before issue 24's reproducible
        # sampler; with it 3 / 0 / 1 at seeds 0 / 1 / 2; docs/benchmarks.md, turn 3 merge)
        assert r["decision"] == "adapt" and r["per_device_evaluated"] >= 1
        assert 0 <= r["per_device_hv_ratio"] <= 1 and r["per_device_unserved_budgets"] in (0.0, 1.0, 2.0, 3.0)
        # the front's members enqueued first, then the refinement's own trials
        assert r["refine_completed"] == 20 + r["front_size"] and r["refined_front_size"] >= 1
        assert 0 < r["refined_hv_ratio"] <= 1
        rows = json.loads((cfg.run_dir() / "fronts" / f"{r['target'].replace(':', '_')}_refined.json").read_text())
        assert rows and all(row["predicted_ms"] <= 5.0 for row in rows)  # the budget holds in the refinement
        front = json.loads((cfg.run_dir() / "fronts" / f"{r['target'].replace(':', '_')}.json").read_text())
        assert all(row["predicted_ms"] <= 5.0 for row in front)
    pixel3 = summary["targets"][1]  # every pixel3 cell takes more than 5 ms: the budget is infeasible there
    assert pixel3["front_size"] == 0 and pixel3["budget_infeasible"] == 1.0


def test_csv_table_targets_need_the_table_domain(tmp_path, shipped):
    """A CSV table that covers part of the space: its devices as targets with a whole-space search is refused
    before any work."""
    from orchestrator.latency.table import LatencyTable, write_table

    sub = shipped.select(["fpga", "pixel3"])
    path = tmp_path / "t.csv"
    write_table(path, LatencyTable(sub.archs[:300], ["lat_ms_fpga", "lat_ms_pixel3"], sub.values[:300]))
    with pytest.raises(ConfigError, match=r"targets \['pixel3'\] are known only on the table's 300 architectures "
                                          r"\(the space has 15,625\); set search.domain: table"):
        make_plan(_cfg(tmp_path, name="csv", latency={"table": str(path), "proxy": "fpga"},
                       search={"domain": "space"}, sweep={"targets": ["pixel3"], "simulated": 0}))



@pytest.mark.slow
def test_measured_targets_one_actor_each_closed_and_a_failing_device_costs_no_other(tmp_path, ray_cluster,
                                                                                     monkeypatch):
    """Issues 19 and 22: a measured target's actor starts once for all its measurements (k rounds, retest,
    front) and its close() ends it; a command device whose command fails ends that target alone, recorded in
    summary.json with its reason."""
    from orchestrator.latency.devices.measured import MeasuredDevice

    closed = []
    original = MeasuredDevice.close

    def close(self):  # the real close, with the actor it ends noted
        if self.actor is not None:
            closed.append((self.name, self.actor))
        original(self)

    monkeypatch.setattr(MeasuredDevice, "close", close)
    starts = dict(MeasuredDevice.actor_starts)
    fast = {"warmup": 1, "repeats": 3, "min_repeat_ms": 1.0}
    cfg = _cfg(tmp_path, name="measured", latency={"protocol": fast},
               sweep={"targets": ["pixel3", {"name": "command:broken", "options": {"command": "false {model}",
                                                                                   "local": True}},
                                  {"name": "torch-cpu", "options": {"threads": 1}}],
                      "simulated": 0, "k": 10, "retest": 3, "measure_front": 2, "per_device_search": False,
                      **PROXY_SOURCES})
    summary = run_pipeline(cfg, progress=False)
    assert [r["target"] for r in summary["targets"]] == ["pixel3", "torch-cpu"]
    assert list(summary["failed_targets"]) == ["command:broken"]
    assert "exited with status 1" in summary["failed_targets"]["command:broken"]
    cpu = summary["targets"][1]
    assert cpu["retest_n"] == 3 and np.isfinite(cpu["front_mape_pct"])  # k, retest and front all measured
    assert MeasuredDevice.actor_starts["torch-cpu"] == starts.get("torch-cpu", 0) + 1
    assert [n for n, _ in closed] == ["torch-cpu"]
    with pytest.raises(ray_cluster.exceptions.RayActorError):
        ray_cluster.get(closed[0][1].stats.remote())


def test_a_failure_in_a_ray_actor_is_recorded_as_its_cause():
    """A measured device's DeviceError reaches the driver wrapped by Ray (a RayTaskError that is also a
    DeviceError, its str the whole remote traceback): failed_targets keeps the device's own message."""
    from types import SimpleNamespace

    from ray.exceptions import RayTaskError

    from orchestrator.errors import DeviceError
    from orchestrator.pipeline.targets import target_failed

    closed = []
    err = RayTaskError("LatencyService.measure", "Traceback (most recent call last):\n  ...",
                       DeviceError("device openvino-cpu: measuring |x| failed")).as_instanceof_cause()
    assert isinstance(err, DeviceError) and "pid=" in str(err)  # Ray's header and traceback, not the message
    ctx = SimpleNamespace(failed_targets={})
    target_failed(ctx, SimpleNamespace(name="openvino-cpu", device=SimpleNamespace(close=lambda: closed.append(1))),
                  err, stage="measure_front")
    assert ctx.failed_targets == {"openvino-cpu": "measure_front: device openvino-cpu: measuring |x| failed"}
    assert closed == [1]


@pytest.mark.slow
def test_a_device_failing_on_its_front_ends_that_target_alone(tmp_path, ray_cluster):
    """A DeviceError while a target's front is measured (the ``measure_front`` hook, after the fan-out) ends that
    target alone, as in rounds 1 and 2: summary.json names it in ``failed_targets`` with the hook and the cause,
    the other target is recorded, the failed one has no front file. The device is a real command that times its
    first ``k`` models and then exits with status 3 (so only the front measurement fails)."""
    script = tmp_path / "phone.sh"
    count = tmp_path / "count"
    script.write_text(f'test -s "$1" || exit 2\nn=$(( $(cat {count} 2>/dev/null || echo 0) + 1 ))\n'
                      f'echo $n > {count}\nif [ $n -le 10 ]; then echo "median_ms=$n.5"; else exit 3; fi\n')
    cfg = _cfg(tmp_path, name="frontfails",
               sweep={"targets": ["pixel3", {"name": "command:frontfails",
                                             "options": {"command": f"sh {script} {{model}}", "local": True}}],
                      "simulated": 0, "k": 10, "retest": 0, "measure_front": 2, "per_device_search": False,
                      **PROXY_SOURCES},
               tracking={"enabled": False})
    summary = run_pipeline(cfg, progress=False)
    assert [r["target"] for r in summary["targets"]] == ["pixel3"]
    assert list(summary["failed_targets"]) == ["command:frontfails"]
    reason = summary["failed_targets"]["command:frontfails"]
    assert reason.startswith("measure_front: ") and "exited with status 3" in reason, reason
    assert int(count.read_text()) == 11  # the k rounds' 10 models timed, then the front's first one failed
    run_dir = cfg.run_dir()
    assert (run_dir / "fronts" / "pixel3.csv").is_file()
    assert not (run_dir / "fronts" / "command_frontfails.csv").exists()
    assert json.loads((run_dir / "summary.json").read_text())["failed_targets"] == summary["failed_targets"]


def test_a_target_short_of_its_k_says_so(tmp_path, ray_cluster, caplog):
    """Break test: k = 12 on a user's table of 12 architectures measured 9 without a word (the second round
    proposes only from the pool and the target's predicted front). Now a warning and ``k_unmet`` in its row."""
    from orchestrator.latency.table import shipped_table

    t = shipped_table(name="nb201-hwnasbench")
    cols = [t.devices.index(d) for d in ("pixel3", "edgegpu")]
    path = tmp_path / "lat.csv"
    path.write_text("arch,lat_ms_pixel3,lat_ms_edgegpu\n" + "".join(
        f"{a},{','.join(str(t.values[i, c]) for c in cols)}\n" for i, a in enumerate(t.archs[:12])))
    cfg = _cfg(tmp_path, latency={"table": str(path), "proxy": "pixel3"},
               search={"n_trials": 8, "population": 4},
               sweep={"targets": ["edgegpu"], "simulated": 0, "k": 12, "measure_front": 0, "retest": 0,
                      "per_device_search": False, **PROXY_SOURCES},
               tracking={"enabled": False})
    with caplog.at_level("WARNING", logger="orchestrator.pipeline.targets"):
        summary = run_pipeline(cfg, progress=False)
    row = summary["targets"][0]
    assert 0 < row["n_measurements"] < 12 and row["k_unmet"] == 12 - row["n_measurements"]
    assert f"edgegpu: {row['n_measurements']} measurements of k = 12 (the candidate pool" in caplog.text
