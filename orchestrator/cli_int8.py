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


def int8_fronts(run_dir: str | Path, options: Any = None, devices: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate every member of the run's fronts (the proxy's and each target's; ``devices`` to choose) in int8
    and fp32 on the same validation images; rewrite those fronts with ``accuracy_int8`` and ``int8_drop``
    (percentage points) and write ``<run>/int8.json``. ``options``: an ``Int8AccuracySection`` (default: the
    run's ``sweep.int8_accuracy``). Returns {"fronts": {name: {members, int8_drop_mean, int8_drop_max}},
    "architectures": {arch: Int8Accuracy as a dict}, "fp32_mismatches": n}.

    Raises ConfigError for a directory that is not a finished run, an accuracy source without a network
    (a table, a zero-cost proxy), a missing supernet, or unknown ``devices``."""
    import numpy as np

    from orchestrator.config import PipelineConfig
    from orchestrator.confirm import front_names
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.pipeline.default_source import resolve_config
    from orchestrator.report import safe_name, write_front
    from orchestrator.supernet.int8 import Int8Evaluator

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
    spec, weights, data = _supernet(run, cfg)
    results = Int8Evaluator(spec, weights, data, cfg.accuracy.supernet.eval, options).evaluate_all(archs)
    out: dict[str, Any] = {"fronts": {}, "architectures": {a: r.as_dict() for a, r in results.items()},
                           "fp32_mismatches": 0}
    for name, rows in fronts.items():
        for r in rows:
            res = results[r["arch"]]
            r["accuracy_int8"], r["int8_drop"] = res.accuracy_int8, res.drop
            if r.get("accuracy_from") == "evaluated" and abs(r["accuracy"] - res.accuracy_fp32) > 1e-6:
                out["fp32_mismatches"] += 1
                log.warning("int8: %s's fp32 accuracy here is %.4f %%, the front says %.4f %% (another supernet?)",
                            r["arch"], res.accuracy_fp32, r["accuracy"])
        write_front(rows, run / "fronts" / safe_name(name))
        drops = np.array([r["int8_drop"] for r in rows])
        out["fronts"][name] = {"members": len(rows), "int8_drop_mean": float(drops.mean()) if len(rows) else None,
                               "int8_drop_max": float(drops.max()) if len(rows) else None}
    (run / INT8_FILE).write_text(json.dumps({"options": options.model_dump(), **out}, indent=2))
    return out


def cmd_int8(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from orchestrator.config import Int8AccuracySection

    try:
        opts = Int8AccuracySection(enabled=True, calibration_images=args.calibration_images,
                                   calibrate_method=args.calibrate_method, per_channel=not args.per_tensor,
                                   threads=args.threads)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    out = int8_fronts(args.run, opts, args.devices)
    print(f"{'front':<24}{'members':>8}{'drop mean':>11}{'drop max':>10}   (int8 drop: fp32 - int8, points)")
    for name, f in out["fronts"].items():
        if f["members"]:
            print(f"{name:<24}{f['members']:>8}{f['int8_drop_mean']:>11.2f}{f['int8_drop_max']:>10.2f}")
    if out["fp32_mismatches"]:
        print(f"warning: {out['fp32_mismatches']} members' fp32 accuracy differs from the front's (see the log)")
    print(f"wrote the fronts' accuracy_int8 / int8_drop columns and {Path(args.run) / INT8_FILE}")
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
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.set_defaults(func=cmd_int8)
