"""`hwnas run | validate | report`: the whole pipeline from a YAML config."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.config import PipelineConfig


def cmd_validate(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.pipeline.plan import make_plan

    bad = 0
    for path in args.configs:
        try:
            cfg = load_config(path)
            plan = make_plan(cfg, source=path)
        except ConfigError as e:
            from orchestrator.names import redact

            print(f"INVALID {redact(str(e))}")
            bad += 1
            continue
        print(f"ok      {path}: {cfg.name}: {cfg.space.name} on the {plan.domain.kind} domain, accuracy from "
              f"{plan.cfg.accuracy.source}, {cfg.search.algorithm} x {cfg.search.n_trials} trials, proxy {plan.proxy}, "
              f"{len(plan.targets)} targets, k={cfg.sweep.k}"
              + (f", extra objectives {', '.join(cfg.search.objectives)}" if cfg.search.objectives else "")
              + (f", limits {cfg.search.constraints}" if cfg.search.constraints else "")
              + (f", memory {cfg.sweep.memory_mb}" if cfg.sweep.memory_mb else ""))
        if plan.accuracy_choice is not None and plan.accuracy_choice.by_default:
            print(f"        accuracy source {plan.accuracy_choice.describe()}")
        for w in plan.warnings:
            print(f"warning {w}")
    return 2 if bad else 0


def _resume_cmd(args: argparse.Namespace) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["hwnas", "run", args.config, *(
        ["--output-dir", args.output_dir] if args.output_dir else []), "--resume"])


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.pipeline import run_pipeline
    from orchestrator.pipeline.context import RunWriteError
    from orchestrator.pipeline.plan import make_plan
    from orchestrator.report import format_summary

    cfg = load_config(args.config)
    if args.output_dir:
        cfg = cfg.model_copy(update={"output_dir": args.output_dir})
    plan = make_plan(cfg, source=args.config)  # every problem, named by the file; run_pipeline takes this plan
    logging.getLogger("orchestrator").setLevel(min(logging.getLogger().level, logging.INFO))
    t0 = time.perf_counter()
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():  # a log line prints above the progress bar instead of breaking it
            summary = run_pipeline(plan, resume=args.resume, progress=not args.no_progress)
    except RunWriteError as e:  # disk full, read-only: the fix, then the exact command that resumes
        raise RunWriteError(f"{e}: `{_resume_cmd(args)}`") from None
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (RunStopped): what is done is kept, the rest resumes
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        cmd = _resume_cmd(args)
        print(f"\nhwnas: the run stopped on {signal.Signals(signum).name}; what it finished is kept in "
              f"{cfg.run_dir()}: continue it with `{cmd}`", file=sys.stderr)
        return 128 + int(signum)
    print(format_summary(summary))
    print_closing(cfg, summary, time.perf_counter() - t0)
    failed = summary.get("failed_targets") or {}
    if failed and not summary.get("targets"):  # a script or CI must see that the sweep produced nothing
        print(f"hwnas: error: every target failed ({len(failed)}: {', '.join(failed)}; the reasons are above and "
              f"in summary.json); the search's front is kept in {cfg.run_dir()}", file=sys.stderr)
        return 1
    return 0


def print_closing(cfg: PipelineConfig, summary: dict[str, Any], seconds: float) -> None:
    """The lines after a run's table (``hwnas run`` and ``experiments/run.py``): the wall time and its
    phases, the run dir, the MLflow link to the sweep's device runs, the report command."""
    run_dir = cfg.run_dir()
    phases = {k[:-2]: v for k, v in summary.get("timings", {}).items() if k.endswith("_s") and v >= 0.5}
    print(f"\ndone in {seconds:.0f}s (" + ", ".join(f"{k} {v:.0f}s" for k, v in phases.items())
          + f"); run dir {run_dir}")
    tracking = cfg.tracking
    if tracking.enabled:
        from orchestrator.names import redact
        from orchestrator.tracking import resolve_uri

        view = summary.get("mlflow_view") or ""
        print(f"MLflow: mlflow ui --backend-store-uri {redact(resolve_uri(tracking.uri))}  then open "
              f"http://127.0.0.1:5000/{view}" + ("  (this sweep's device runs and their figures)" if view else
                                                 f"  (experiment '{tracking.experiment}')"))
    print(f"Pareto tables: hwnas report {run_dir}")


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report import report

    print(report(args.run, fronts=not args.no_fronts))
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from orchestrator.config import PipelineConfig
    from orchestrator.confirm import confirm

    run = Path(args.run)
    if not (run / "pipeline.json").is_file():
        raise ConfigError(f"{run} is not a run directory (no pipeline.json); give the run dir of `hwnas run`")
    cfg = PipelineConfig.model_validate(json.loads((run / "pipeline.json").read_text())["config"]).confirm
    over = {k: v for k, v in {"top": args.top, "devices": args.devices, "epochs": args.epochs,
                              "max_concurrent": args.concurrent, "gpus_per_trial": args.gpus_per_trial,
                              "cpus_per_trial": args.cpus_per_trial}.items() if v is not None}
    out = confirm(run, cfg.model_validate({**cfg.model_dump(), **over}), progress=not args.no_progress,
                  tracking=not args.no_tracking)
    print(f"{'arch':<90} {'one-shot':>9} {'scratch':>8} {'epochs':>6}  status")
    for r in sorted(out["architectures"], key=lambda r: -(r["confirmed"] or -1)):
        print(f"{r['arch']:<90} {r['one_shot'] or float('nan'):9.2f} {r['confirmed'] or float('nan'):8.2f} "
              f"{r['epochs']:>6}  {r['status']}{': ' + r['error'] if r['error'] else ''}")
    print(f"\n{out['n']} architectures in {out['seconds']:.0f}s; Kendall tau one-shot vs from scratch "
          f"{out['kendall_tau']:.3f} ({out['kendall_tau_fully_trained']:.3f} over the fully trained); "
          f"{out['n_errors']} failed; files in {run / 'confirm'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from orchestrator.compare import compare

    out, table = compare(args.runs, args.device, args.out, track=not args.no_mlflow)
    print(table)
    print(f"\nfronts overlaid per device: {out / 'compare.png'} (figures: compare.csv, compare.json)")
    return 0


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the whole pipeline from a YAML config (see experiments/)")
    r.add_argument("config")
    r.add_argument("--resume", action="store_true", help="continue a run that was interrupted (same config)")
    r.add_argument("--output-dir", help="override the config's output_dir")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)
    v = sub.add_parser("validate", help="check configs: every problem with its path, nothing is run")
    v.add_argument("configs", nargs="+")
    v.set_defaults(func=cmd_validate)
    c = sub.add_parser("confirm", help="train a run's chosen fronts from scratch as Ray Tune trials (ASHA, "
                                       "checkpoints; continues a killed confirm)")
    c.add_argument("run", help="the run dir of `hwnas run`")
    c.add_argument("--top", type=int, help="per front, the N most accurate members (default: the config's)")
    c.add_argument("--devices", nargs="+", help="only these devices' fronts ('proxy' for the proxy's)")
    c.add_argument("--epochs", type=int, help="full training budget per architecture")
    c.add_argument("--concurrent", type=int, help="trials at once")
    c.add_argument("--cpus-per-trial", type=float)
    c.add_argument("--gpus-per-trial", type=float)
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--no-tracking", action="store_true",
                   help="do not record in the run's MLflow runs (the run dir's files only)")
    c.set_defaults(func=cmd_confirm)
    p = sub.add_parser("report", help="print the Pareto tables of a run dir")
    p.add_argument("run")
    p.add_argument("--no-fronts", action="store_true", help="only the per-target summary")
    p.set_defaults(func=cmd_report)
    m = sub.add_parser("compare", help="overlay the fronts of several runs (seeds, configs) per device: PNG, "
                                       "CSV, a table, and an MLflow run")
    m.add_argument("runs", nargs="+", help="run dirs of `hwnas run` (at least two)")
    m.add_argument("--device", nargs="+", help="only these devices (default: every target all runs share)")
    m.add_argument("--out", help="output dir (default: compare-<runs> next to the first run)")
    m.add_argument("--no-mlflow", action="store_true", help="do not record the comparison in MLflow")
    m.set_defaults(func=cmd_compare)


__all__ = ["add_run_commands"]
