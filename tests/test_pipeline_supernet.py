"""The pipeline with a real supernet: MobileNetV3 end to end (supernet -> accuracy predictor, simulated
proxy, a measured target on this CPU, the deployed network exported), and NB201 with a supernet loaded
from a run directory (front members chosen on a predicted accuracy evaluated for real)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.config import parse_config
from orchestrator.pipeline import run_pipeline

pytestmark = [pytest.mark.ray, pytest.mark.slow]
FAST = {"warmup": 1, "repeats": 3, "min_repeat_ms": 1}
TINY_MBV3 = {"width_mult": 0.25, "resolution": 32, "num_classes": 10, "feature_dim": 64}


def test_mobilenet_end_to_end_with_a_measured_target(tmp_path, ray_cluster):
    cfg = parse_config({
        "name": "mb", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "space": {"name": "mobilenetv3", "options": TINY_MBV3},
        "accuracy": {"source": "predictor", "predictor": "additive", "predictor_samples": 12, "supernet": {
            "data": {"name": "digits", "max_train": 128}, "train": {"epochs": 1, "batch_size": 32, "n_random": 1},
            "eval": {"calib_batches": 1, "max_val": 60}, "actors": 1}},
        "latency": {"table": "shipped", "proxy": "sim:0", "proxy_samples": 30, "protocol": FAST},
        "search": {"algorithm": "nsga2", "n_trials": 16, "population": 8, "domain": "space"},
        "sweep": {"targets": [{"name": "torch-cpu", "options": {"threads": 1}}, "sim:1"], "k": 5, "retest": 3,
                  "measure_front": 2, "export_front": 1, "target_search": {"n_trials": 40, "population": 8},
                  "memory_mb": {"sim:1": 0.07}},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "mb"},
    })
    summary = run_pipeline(cfg, progress=False)
    cpu, sim = summary["targets"]
    assert cpu["target"] == "torch-cpu" and cpu["kind"] == "measured" and cpu["retest_n"] == 3
    assert np.isfinite(cpu["front_mape_pct"]) and "hv_ratio" not in cpu  # no truth for a measured device
    assert sim["kind"] == "simulated" and 0 < sim["hv_ratio"] <= sim["pool_hv_ratio"] + 1e-9
    run_dir = cfg.run_dir()
    front = json.loads((run_dir / "fronts" / "torch-cpu.json").read_text())
    assert {r["accuracy_from"] for r in front} <= {"evaluated", "predicted"}
    assert sum(r["measured_ms"] is not None for r in front) == min(2, len(front))
    meta = json.loads((run_dir / "exports" / "torch-cpu" / "front0.json").read_text())
    space = cfg.space.build()
    net = space.build(space.parse(meta["arch_id"]))
    assert meta["n_params"] == sum(p.numel() for p in net.parameters())  # the deployed network
    assert meta["network"].startswith("deployed") and meta["weights"] == "supernet (inherited)"
    assert meta["space_spec"] == space.spec().model_dump()
    assert (run_dir / "exports" / "torch-cpu" / "front0.onnx").stat().st_size > 0
    heat = json.loads((run_dir / "srcc_matrix.json").read_text())  # the measured device is in the heatmap
    i = next(n for n, d in enumerate(heat["devices"]) if d.startswith("torch-cpu (measured, "))
    j = heat["devices"].index("sim:0 (predicted)")
    assert heat["shared"][i][j] >= 5 and -1 <= heat["srcc"][i][j] <= 1
    # sim:1 has 0.07 MiB for activations: nothing on its front needs more (the space has 0.047-0.094 MiB ones)
    sim_front = json.loads((run_dir / "fronts" / "sim_1.json").read_text())
    assert sim_front and all(r["peak_mem_mb"] <= 0.07 for r in sim_front)
    # the exported network is an MLflow model with a signature, loadable by URI, and it is that network
    import mlflow
    import onnxruntime as ort

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run = mlflow.search_runs(experiment_names=["mb"], filter_string="tags.`hwnas.device` = 'torch-cpu'",
                             output_format="list")[0]
    uri = run.data.tags["model_uri.front0"]
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 3, 32, 32)  # any batch
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = np.asarray(model.predict(x) if not isinstance(model.predict(x), dict) else
                     next(iter(model.predict(x).values())))
    sess = ort.InferenceSession(str(run_dir / "exports" / "torch-cpu" / "front0.onnx"))
    (want,) = sess.run(None, {"input": x})
    assert np.allclose(got, want, atol=1e-5)


def test_a_supernet_loaded_from_its_run_dir(tmp_path, ray_cluster, capsys):
    from orchestrator.supernet.data import DataConfig, load_dataset
    from orchestrator.supernet.runs import create_run
    from orchestrator.supernet.spec import one_shot_space, with_classes
    from orchestrator.supernet.train import SupernetTrainer, TrainConfig
    from search_spaces.base import SpaceSpec

    spec = SpaceSpec(name="nb201", options={"channels": 4, "cells_per_stage": 1})
    data_cfg, train_cfg = DataConfig(max_train=128), TrainConfig(epochs=1, batch_size=32, n_random=1)
    run = create_run(tmp_path / "sn", spec, data_cfg, train_cfg)
    data = load_dataset(data_cfg)
    SupernetTrainer(one_shot_space(with_classes(spec, data.num_classes)), data, train_cfg, run.directory).fit()
    cfg = parse_config({
        "name": "ck", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "space": {"name": "nb201", "options": {"channels": 8, "cells_per_stage": 2}},  # deployed: bigger
        "accuracy": {"source": "supernet", "supernet": {"checkpoint": str(run.directory), "actors": 1,
                                                        "eval": {"calib_batches": 1, "max_val": 60}}},
        "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
        "search": {"algorithm": "nsga2", "n_trials": 12, "population": 6, "domain": "table"},
        "sweep": {"targets": ["pixel3"], "k": 5, "target_search": {"max_new_evaluations": 3}, "export_front": 0,
                  "int8_accuracy": {"enabled": True, "calibration_images": 32}},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "ck"},
    })
    summary = run_pipeline(cfg, progress=False)
    (row,) = summary["targets"]
    assert 1 <= summary["timings"]["sweep_evaluations"] <= 3 and row["new_evaluations"] <= 3
    front = json.loads((cfg.run_dir() / "fronts" / "pixel3.json").read_text())
    assert {r["accuracy_from"] for r in front} == {"evaluated"}  # every member's accuracy is a real evaluation
    logged = [json.loads(x)["arch"] for x in (cfg.run_dir() / "evaluations.jsonl").read_text().splitlines()]
    assert {r["arch"] for r in front} <= set(logged) and len(logged) == len(set(logged))
    assert 0 < row["hv_ratio"] <= 1 and row["n_reference"] == len(set(logged))  # known: the evaluated cells
    log = (cfg.run_dir() / "run.log").read_text()
    assert "front members chosen on a predicted accuracy" in log
    # issue 22 item 4: each front member's int8 accuracy beside its fp32 one, on the same validation images
    # (evaluated on Ray actors; none failed: int8_error blank)
    for r in front:
        assert 0 <= r["accuracy_int8"] <= 100 and r["int8_drop"] == pytest.approx(r["accuracy"] - r["accuracy_int8"])
        assert r["int8_error"] is None
    assert row["int8_members"] == len(front) and row["int8_drop_max"] == max(r["int8_drop"] for r in front)
    assert row["int8_failed"] == 0 and "int8_failures" not in summary
    header = (cfg.run_dir() / "fronts" / "pixel3.csv").read_text().splitlines()[0].split(",")
    assert {"accuracy_int8", "int8_drop", "int8_error"} <= set(header)
    # the same from the command on the finished run: the same values, fp32 as the front's, into MLflow
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import main

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("ck").experiment_id
    n_runs = len(client.search_runs([exp]))
    cmd = ["int8", str(cfg.run_dir()), "--devices", "proxy", "pixel3", "--calibration-images", "32"]
    assert main(cmd) == 0
    done = json.loads((cfg.run_dir() / "int8.json").read_text())
    assert done["fp32_mismatches"] == 0 and done["fronts"]["pixel3"]["members"] == len(front)
    assert done["failed"] == {} and done["failed_by_step"] == {} and done["fronts"]["pixel3"]["failed"] == 0
    again = json.loads((cfg.run_dir() / "fronts" / "pixel3.json").read_text())
    assert [r["accuracy_int8"] for r in again] == [r["accuracy_int8"] for r in front]
    runs = client.search_runs([exp])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (child,) = [r for r in runs if r.data.tags.get("hwnas.device") == "pixel3"]
    proxy = done["fronts"]["proxy"]
    assert proxy["members"] >= 1
    assert parent.data.metrics["proxy_int8_drop_mean"] == pytest.approx(proxy["int8_drop_mean"])
    assert parent.data.metrics["proxy_int8_members"] == proxy["members"]
    assert parent.data.metrics["proxy_int8_failed"] == 0
    assert child.data.metrics["int8_drop_max"] == pytest.approx(done["fronts"]["pixel3"]["int8_drop_max"])
    assert "int8.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    from pathlib import Path

    logged = json.loads(Path(client.download_artifacts(child.info.run_id, "pixel3.json",
                                                       str(tmp_path / "dl"))).read_text())
    assert [r["accuracy_int8"] for r in logged] == [r["accuracy_int8"] for r in again]
    # a second call: no new run, no repeated metric value
    assert main(cmd) == 0
    assert len(client.search_runs([exp])) == n_runs
    assert len(client.get_metric_history(parent.info.run_id, "proxy_int8_drop_mean")) == 1
    assert len(client.get_metric_history(child.info.run_id, "int8_drop_max")) == 1
    # the store gone: a clear error before any work, and no new store made
    (tmp_path / "mlflow.db").rename(tmp_path / "moved.db")
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert f"the MLflow store {tmp_path / 'mlflow.db'} that run {cfg.run_dir()} recorded to is gone" in err
    assert "--no-tracking" in err and not (tmp_path / "mlflow.db").exists()
