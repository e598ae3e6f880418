"""Confirm the chosen fronts: train their architectures from scratch as Ray Tune trials.

Every accuracy in a sweep is a one-shot supernet's (or a table's, or a predictor's); a user's last step is to
train what was chosen. ``confirm(run_dir)`` takes the union of the fronts a run chose (the proxy's and every
target's, deduplicated; ``top`` most accurate per front, ``devices`` to restrict), and trains each one's
deployed network (the run's space, with the dataset's class count) from scratch on the run's dataset, one Ray
Tune trial per architecture:

- resources per trial (CPUs, a GPU share), ``max_concurrent`` trials at once, across the cluster;
- ASHA early stopping (``grace_period`` epochs before a trial can be stopped, then halving): poor
  architectures stop early, the promising ones get the full ``epochs``;
- a Tune checkpoint every epoch (model, optimiser, epoch; loaded with ``weights_only=True``): a killed trial
  or driver continues with ``Tuner.restore`` (``confirm`` restores by itself when the experiment exists);
- a trial whose loss turns NaN, or that runs out of memory, fails with its error; the others go on.

Results: ``<run>/confirm/confirm.json`` (per architecture: confirmed accuracy, epochs, status, error) and
``confirm.png`` (one-shot vs confirmed accuracy, Kendall tau); in MLflow, in the sweep's own runs
(``tracking.recorded_sweep``: never a new store or a second parent run), the parent gets the tau and the files,
each device's nested run the confirmed accuracy of its front. A tracked run whose store or runs are gone is
refused before any training (the error names ``--no-tracking``); the files are written before MLflow, so a
store lost during training loses nothing (a second ``hwnas confirm`` restores the finished trials and records).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config import ConfirmConfig, PipelineConfig
from orchestrator.errors import ConfigError

log = logging.getLogger(__name__)

CONFIRM_DIR = "confirm"
RESULTS_FILE = "confirm.json"


def _train(config: dict[str, Any]) -> None:
    """The Tune trainable: one architecture trained from scratch, a report and a checkpoint per epoch."""
    import torch
    from ray import tune

    from orchestrator.supernet.data import DataConfig, load_dataset, train_batches
    from orchestrator.supernet.evaluate import accuracy
    from search_spaces.base import SpaceSpec

    torch.set_num_threads(max(1, int(config["threads"])))
    for name in ("ray.train", "ray.tune"):  # "checkpoint created" per epoch per trial: not for the console
        logging.getLogger(name).setLevel(logging.WARNING)
    data = load_dataset(DataConfig(**config["data"]))
    space = SpaceSpec(**config["space"]).with_options(num_classes=data.num_classes).build()
    torch.manual_seed(config["seed"])
    device = torch.device("cuda" if config["gpus"] > 0 and torch.cuda.is_available() else "cpu")
    net = space.build(space.parse(config["arch"])).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config["epochs"])
    start = 0
    ck = tune.get_checkpoint()
    if ck is not None:
        with ck.as_directory() as d:
            state = torch.load(Path(d) / "trial.pt", weights_only=True, map_location=device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["epoch"])
    for epoch in range(start, config["epochs"]):
        net.train()
        losses = []
        for x, y in train_batches(data, config["batch_size"], config["seed"], epoch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x.to(device)), y.to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{config['arch']}: loss is {loss.item()} at epoch {epoch + 1}; lower "
                                         f"confirm.lr")
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        acc = 100.0 * accuracy(net.eval(), data.x_val, data.y_val, 256, device)
        with tempfile.TemporaryDirectory() as d:
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "epoch": epoch + 1}, Path(d) / "trial.pt")
            tune.report({"accuracy": acc, "loss": float(np.mean(losses)) if losses else float("nan"),
                         "epoch": epoch + 1}, checkpoint=tune.Checkpoint.from_directory(d))


def front_names(run_dir: Path, devices: Sequence[str] | None, command: str) -> list[str]:
    """The run's front names (proxy, then its targets), narrowed to ``devices`` where given; ConfigError (naming
    ``command``) for a device without a front in the run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    names = ["proxy", *(r["target"] for r in summary["targets"])]
    if devices:
        unknown = sorted(set(devices) - set(names))
        if unknown:
            raise ConfigError(f"{command}: no front for {unknown} in {run_dir}; fronts: {', '.join(names)}")
        names = [n for n in names if n in set(devices)]
    return names


def front_archs(run_dir: Path, top: int = 0, devices: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """arch id -> {one-shot accuracy, the devices whose front holds it} over the run's fronts."""
    from orchestrator.report import safe_name

    names = front_names(run_dir, devices, "confirm")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        f = run_dir / "fronts" / f"{safe_name(name)}.json"
        if not f.is_file():
            continue
        rows = sorted(json.loads(f.read_text()), key=lambda r: -r["accuracy"])
        for r in rows[:top or None]:
            e = out.setdefault(r["arch"], {"one_shot": r["accuracy"], "devices": []})
            e["devices"].append(name)
    return out


def _cause(err: BaseException) -> str:
    """The error a trial raised, without Ray's wrapping (a RayTaskError holds it as ``cause``)."""
    from orchestrator.ray_connect import ray_cause

    err = ray_cause(err)
    return f"{type(err).__name__}: {err}"[:500]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic) if len(a) >= 3 else float("nan")


def confirm(run_dir: str | Path, cfg: ConfirmConfig | None = None, progress: bool = False,
            name: str = CONFIRM_DIR, tracking: bool = True) -> dict[str, Any]:
    """Train the run's chosen architectures from scratch with Ray Tune (see the module doc); returns the results
    also written to ``<run>/<name>/confirm.json``. Where the run was tracked (``tracking.enabled``) and
    ``tracking`` is True, the results go into the run's own MLflow runs (:func:`record_confirm`).

    Raises ConfigError, before any training, for a directory that is not a finished run, fronts without an
    architecture, unknown ``devices``, or a tracked run whose MLflow store, experiment or runs are gone."""
    import os

    # Tune warns when a trial checkpoints every few seconds (our epochs are short on small data): expected here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler


    run = Path(run_dir).resolve()
    if not (run / "summary.json").is_file():
        raise ConfigError(f"{run} has no summary.json: confirm needs a finished run (hwnas run CONFIG)")
    pcfg = PipelineConfig.model_validate(json.loads((run / "pipeline.json").read_text())["config"])
    cfg = cfg or pcfg.confirm
    archs = front_archs(run, cfg.top, cfg.devices)
    if len(archs) < 1:
        raise ConfigError(f"confirm: the run's fronts in {run / 'fronts'} hold no architecture")
    tracked = tracking and pcfg.tracking.enabled
    if tracked:  # the store and the sweep's runs are there, checked before any work (recorded_sweep writes nothing)
        from orchestrator.tracking import recorded_sweep

        recorded_sweep(run, pcfg.tracking.uri, pcfg.tracking.experiment)
    from orchestrator.ray_connect import cluster_address, connect

    connect(cluster_address(pcfg.ray.address), pcfg.ray.num_cpus, log_to_driver=False)
    storage = run / name
    storage.mkdir(exist_ok=True)
    trainable = tune.with_resources(_train, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    path = storage / "tune"
    t0 = time.perf_counter()
    if tune.Tuner.can_restore(str(path)):
        log.info("confirm: restoring the Tune experiment in %s", path)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=False, restart_errored=False)
    else:
        base = {"space": pcfg.space.model_dump(), "data": pcfg.accuracy.supernet.data.model_dump(),
                "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                "threads": max(1, int(cfg.cpus_per_trial)), "gpus": cfg.gpus_per_trial}
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cfg.epochs,
                                  grace_period=min(cfg.grace_period, cfg.epochs),
                                  reduction_factor=cfg.reduction_factor)
        tuner = tune.Tuner(
            trainable, param_space={**base, "arch": tune.grid_search(sorted(archs))},
            # reuse_actors: a trial starts in the process of one that ended (Ray's default is a new process
            # per trial: 5-6 s of imports and start-up before each architecture's first epoch here)
            tune_config=tune.TuneConfig(metric="accuracy", mode="max", scheduler=scheduler,
                                        max_concurrent_trials=cfg.max_concurrent or None, reuse_actors=True),
            run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=1 if progress else 0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=0)))
    grid = tuner.fit()
    seconds = time.perf_counter() - t0
    rows = []
    for res in grid:
        arch = res.config["arch"]
        m = res.metrics or {}
        rows.append({"arch": arch, "one_shot": archs.get(arch, {}).get("one_shot"),
                     "devices": archs.get(arch, {}).get("devices", []),
                     "confirmed": m.get("accuracy"), "epochs": m.get("epoch", 0),
                     "status": "error" if res.error else ("stopped early" if m.get("epoch", 0) < cfg.epochs
                                                          else "trained"),
                     "error": None if res.error is None else _cause(res.error)})
    ok = [r for r in rows if r["confirmed"] is not None and r["one_shot"] is not None]
    full = [r for r in ok if r["status"] == "trained"]
    out = {"n": len(rows), "seconds": seconds, "epochs": cfg.epochs,
           "kendall_tau": kendall_tau([r["one_shot"] for r in ok], [r["confirmed"] for r in ok]),
           "kendall_tau_fully_trained": kendall_tau([r["one_shot"] for r in full], [r["confirmed"] for r in full]),
           "n_errors": sum(r["status"] == "error" for r in rows), "architectures": rows}
    (storage / RESULTS_FILE).write_text(json.dumps(out, indent=2, default=float))
    _plot(storage / "confirm.png", ok, out["kendall_tau"])
    if tracked:
        record_confirm(run, pcfg, out, storage)
    log.info("confirm: %d architectures in %.0fs, Kendall tau one-shot vs from scratch %.3f", len(rows), seconds,
             out["kendall_tau"])
    return out


def _plot(path: Path, rows: list[dict[str, Any]], tau: float) -> None:
    from orchestrator.report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2), dpi=100)
    for status, marker in (("trained", "o"), ("stopped early", "x")):
        sel = [r for r in rows if r["status"] == status]
        if sel:
            ax.scatter([r["one_shot"] for r in sel], [r["confirmed"] for r in sel], marker=marker, label=status)
    ax.set_xlabel("one-shot accuracy (%)")
    ax.set_ylabel("trained from scratch (%)")
    ax.set_title(f"confirmed fronts: Kendall tau {tau:.2f}" if not math.isnan(tau) else "confirmed fronts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    fig.savefig(path)
    plt.close(fig)


def record_confirm(run: Path, pcfg: PipelineConfig, out: dict[str, Any], storage: Path) -> None:
    """Into the sweep's own MLflow runs (``recorded_sweep``: no run created, no status changed): the parent gets
    the tau and the files, each device's finished run its front's best confirmed accuracy. A metric already
    holding the value is not logged again and the files replace their namesakes, so recording the same results
    twice adds nothing. Raises ConfigError where the store or the sweep's runs are gone (the results stay in
    ``storage``: restore the store and run confirm again, or pass --no-tracking)."""
    from orchestrator.tracking import recorded_sweep

    try:
        tracker = recorded_sweep(run, pcfg.tracking.uri, pcfg.tracking.experiment)
    except ConfigError as e:
        raise ConfigError(f"{e}. The results are in {storage / RESULTS_FILE}: `hwnas confirm {run}` again records "
                          f"them (its finished trials are restored, not retrained)") from None
    best: dict[str, float] = {}
    for r in out["architectures"]:
        for d in r["devices"]:
            if r["confirmed"] is not None:
                best[d] = max(best.get(d, -1.0), r["confirmed"])
    figures = {tracker.parent_id: {"confirm_kendall_tau": out["kendall_tau"], "confirm_n": out["n"],
                                   "confirm_seconds": out["seconds"], "confirm_errors": out["n_errors"]}}
    for device, acc in best.items():
        if device in tracker.children:
            figures[tracker.children[device]] = {"confirmed_accuracy_best": acc}
    for run_id, values in figures.items():
        have = tracker.client.get_run(run_id).data.metrics
        tracker.metrics(run_id, {k: v for k, v in values.items() if v is not None and have.get(k) != v})
    for f in (storage / RESULTS_FILE, storage / "confirm.png"):
        tracker.artifact(tracker.parent_id, f, "confirm")
    log.info("confirm: recorded in MLflow (%s)", tracker.uri)
