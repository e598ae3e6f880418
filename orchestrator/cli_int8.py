"""``hwnas int8 RUN_DIR``: the int8 accuracy of a finished run's front members beside their fp32 accuracy
(``orchestrator.supernet.int8``), on the run's own supernet and evaluation data; the fronts' CSV/JSON files get
the columns ``accuracy_int8`` and ``int8_drop``, and ``int8.json`` holds every evaluated architecture."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

log = logging.getLogger(__name__)
INT8_FILE = "int8.json"


def _supernet(run: Path, cfg: Any) -> tuple[Any, Any, Any]:
    """(spec, state_dict, dataset) of the run's supernet: its ``accuracy.supernet.checkpoint``, else the one the
    run trained in ``<run>/supernet``."""
    from orchestrator.supernet.checkpoint import load_checkpoint
    from orchestrator.supernet.data import load_dataset
    from orchestrator.supernet.runs import load_trained
    from orchestrator.supernet.spec import one_shot_space, with_classes
    from orchestrator.supernet.train import CHECKPOINT_NAME

    sc = cfg.accuracy.supernet
    if sc.checkpoint:
        return load_trained(sc.checkpoint)
    ck = run / "supernet" / CHECKPOINT_NAME
    if not ck.is_file():
        raise ConfigError(f"{run}: no trained supernet ({ck} is missing): int8 accuracy needs the run's network "
                          f"weights; run it to the end first (hwnas run CONFIG --resume)")
    data = load_dataset(sc.data)
    spec = one_shot_space(with_classes(cfg.space.with_options(**sc.options), data.num_classes)).spec()
    return spec, load_checkpoint(ck, expect={"space": spec.model_dump()})["model"], data


def int8_fronts(run_dir: str | Path, options: Any = None, devices: Sequence[str] | None = None,
                tracking: bool = True) -> dict[str, Any]:
    """Evaluate every member of the run's fronts (the proxy's and each target's; ``devices`` to choose) in int8
    and fp32 on the same validation images, on Ray actors (``int8_pool.evaluate_parallel``; the run's
    ``ray`` settings); rewrite those fronts with ``accuracy_int8``, ``int8_drop`` (percentage points) and
    ``int8_error`` (why a member's evaluation failed; the others go on) and write ``<run>/int8.json``.
    ``options``: an ``Int8AccuracySection`` (default: the run's ``sweep.int8_accuracy``). Where the run was
    tracked (``tracking.enabled``) and ``tracking`` is True, the figures go into the run's own MLflow runs
    (:func:`record_int8`). Returns {"fronts": {name: {members, failed, int8_drop_mean, int8_drop_max}},
    "architectures": {arch: Int8Accuracy as a dict}, "fp32_mismatches": n, "failed": {arch: reason},
    "failed_by_step": {step: n}}.

    Raises ConfigError, before any evaluation, for a directory that is not a finished run, an accuracy source
    without a network (a table, a zero-cost proxy), a missing supernet, unknown ``devices``, a front member
    the run's space cannot parse, or a tracked run whose MLflow store or runs are gone."""
    from orchestrator.config import PipelineConfig
    from orchestrator.confirm import front_names
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.pipeline.default_source import resolve_config
    from orchestrator.ray_connect import cluster_address, connect
    from orchestrator.report import safe_name, write_front
    from orchestrator.supernet.int8 import failure_counts
    from orchestrator.supernet.int8_pool import evaluate_parallel

    run = Path(run_dir).resolve()
    if not (run / "summary.json").is_file() or not (run / "pipeline.json").is_file():
        raise ConfigError(f"{run} is not a finished run (no summary.json / pipeline.json): hwnas run CONFIG first")
    cfg = PipelineConfig.model_validate(json.loads((run / "pipeline.json").read_text())["config"])
    src = resolve_config(cfg)[1].source  # a run's stored config has its source resolved; an older hand-made one may not
    if not SOURCES.get(src).trains_supernet:
        raise ConfigError(f"{run}: accuracy.source {src!r} gives accuracies without a network "
                          f"({SOURCES.get(src).help}); int8 accuracy quantizes and evaluates a network with weights: "
                          f"only runs with accuracy.source supernet or predictor have one")
    options = options if options is not None else cfg.sweep.int8_accuracy
    names = front_names(run, devices, "int8")
    fronts = {n: json.loads(f.read_text()) for n in names if (f := run / "fronts" / f"{safe_name(n)}.json").is_file()}
    archs = list(dict.fromkeys(r["arch"] for rows in fronts.values() for r in rows))
    if not archs:
        raise ConfigError(f"int8: the run's fronts in {run / 'fronts'} hold no architecture")
    space = cfg.space.build()
    for a in archs:  # a front edited by hand, or another space's: refused before any work
        try:
            space.parse(a)
        except Exception as e:  # noqa: BLE001 - a space's parser raises its own types
            raise ConfigError(f"int8: front member {a!r} is not an architecture of the run's space "
                              f"{cfg.space.name!r} ({e}); restore the run's front files") from None
    tracker = None
    if tracking and cfg.tracking.enabled:
        from orchestrator.tracking import recorded_sweep

        tracker = recorded_sweep(run, cfg.tracking.uri, cfg.tracking.experiment)
    spec, weights, data = _supernet(run, cfg)
    connect(cluster_address(cfg.ray.address), cfg.ray.num_cpus, log_to_driver=False)
    results = evaluate_parallel(spec, weights, data, cfg.accuracy.supernet.eval, options, archs)
    out: dict[str, Any] = {"fronts": {}, "architectures": {a: r.as_dict() for a, r in results.items()},
                           "fp32_mismatches": 0, "failed": {a: r.error for a, r in results.items() if not r.ok},
                           "failed_by_step": failure_counts(list(results.values()))}
    for name, rows in fronts.items():
        for r in rows:
            res = results[r["arch"]]
            r["accuracy_int8"], r["int8_drop"], r["int8_error"] = res.accuracy_int8, res.drop, res.error
            if (r.get("accuracy_from") == "evaluated" and res.accuracy_fp32 is not None
                    and abs(r["accuracy"] - res.accuracy_fp32) > 1e-6):
                out["fp32_mismatches"] += 1
                log.warning("int8: %s's fp32 accuracy here is %.4f %%, the front says %.4f %% (another supernet?)",
                            r["arch"], res.accuracy_fp32, r["accuracy"])
        write_front(rows, run / "fronts" / safe_name(name))
        drops = [r["int8_drop"] for r in rows if r["int8_drop"] is not None]
        out["fronts"][name] = {"members": len(rows), "failed": sum(r["int8_error"] is not None for r in rows),
                               "int8_drop_mean": sum(drops) / len(drops) if drops else None,
                               "int8_drop_max": max(drops) if drops else None}
    (run / INT8_FILE).write_text(json.dumps({"options": options.model_dump(), **out}, indent=2))
    if out["failed"]:
        log.warning("int8: %d of %d architectures failed: %s", len(out["failed"]), len(results),
                    "; ".join(f"{a}: {e}" for a, e in out["failed"].items()))
    if tracker is not None:
        record_int8(tracker, run, out)
    return out


def record_int8(tracker: Any, run: Path, out: dict[str, Any]) -> None:
    """Into the run's MLflow runs, as the sweep records them: each target's device run gets ``int8_drop_mean``,
    ``int8_drop_max``, ``int8_members`` (members evaluated), ``int8_failed`` and its rewritten front files
    (artifacts of the same names: replaced); the parent gets the proxy's figures (``proxy_int8_*``) and
    ``int8.json``. A metric already holding the value is not logged again, so a second call adds nothing."""
    from orchestrator.report import safe_name

    for name, f in out["fronts"].items():
        figures = {"int8_drop_mean": f["int8_drop_mean"], "int8_drop_max": f["int8_drop_max"],
                   "int8_members": float(f["members"] - f["failed"]), "int8_failed": float(f["failed"])}
        if name == "proxy":
            run_id = tracker.parent_id
            figures = {f"proxy_{k}": v for k, v in figures.items()}
        else:
            run_id = tracker.children.get(name)
            if run_id is None:
                log.warning("int8: %s has no finished MLflow run of this run dir; its figures are in the files "
                            "only", name)
                continue
            stem = run / "fronts" / safe_name(name)
            for p in (stem.parent / f"{stem.name}.csv", stem.parent / f"{stem.name}.json"):
                tracker.artifact(run_id, p)
        have = tracker.client.get_run(run_id).data.metrics
        tracker.metrics(run_id, {k: v for k, v in figures.items() if v is not None and have.get(k) != v})
    tracker.artifact(tracker.parent_id, run / INT8_FILE)
    log.info("int8: recorded in MLflow (%s)", tracker.uri)


def cmd_int8(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from orchestrator.config import Int8AccuracySection

    try:
        opts = Int8AccuracySection(enabled=True, calibration_images=args.calibration_images,
                                   calibrate_method=args.calibrate_method, per_channel=not args.per_tensor,
                                   reduce_range={"on": True, "off": False}.get(args.reduce_range, "auto"),
                                   threads=args.threads, actors=args.actors)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    out = int8_fronts(args.run, opts, args.devices, tracking=not args.no_tracking)
    print(f"{'front':<24}{'members':>8}{'failed':>8}{'drop mean':>11}{'drop max':>10}   (int8 drop: fp32 - int8, "
          f"points)")
    for name, f in out["fronts"].items():
        if f["members"]:
            drops = (f"{f['int8_drop_mean']:>11.2f}{f['int8_drop_max']:>10.2f}" if f["int8_drop_mean"] is not None
                     else f"{'-':>11}{'-':>10}")
            print(f"{name:<24}{f['members']:>8}{f['failed']:>8}{drops}")
    if out["fp32_mismatches"]:
        print(f"warning: {out['fp32_mismatches']} members' fp32 accuracy differs from the front's (see the log)")
    if out["failed"]:
        print(f"warning: {len(out['failed'])} architectures failed in int8 (column int8_error):")
        for a, e in out["failed"].items():
            print(f"  {a}: {e}")
    print(f"wrote the fronts' accuracy_int8 / int8_drop / int8_error columns and {Path(args.run) / INT8_FILE}")
    return 0


def add_int8_command(sub: argparse._SubParsersAction) -> None:
    """Add ``int8`` to hwnas's commands."""
    p = sub.add_parser("int8", help="int8 accuracy of a finished run's front members beside fp32 (ONNX Runtime "
                                    "static int8 on the run's supernet)")
    p.add_argument("run", help="a run directory (<output_dir>/<name>) of a run with accuracy.source supernet or "
                               "predictor")
    p.add_argument("--devices", nargs="+", help="only these fronts (proxy, target names); default: all")
    p.add_argument("--calibration-images", type=int, default=64,
                   help="real training images that calibrate the activation ranges")
    p.add_argument("--calibrate-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--per-tensor", action="store_true", help="int8 weights per tensor (default: per channel)")
    p.add_argument("--reduce-range", default="auto", choices=["auto", "on", "off"],
                   help="7-bit int8 weights; auto: where this host's CPU saturates 8-bit ones (x86-64 without VNNI)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime and PyTorch threads per actor")
    p.add_argument("--actors", type=int, default=2, help="Ray actors evaluating members at once")
    p.add_argument("--no-tracking", action="store_true",
                   help="do not record in the run's MLflow runs (the run dir's files only)")
    p.set_defaults(func=cmd_int8)
