"""`hwnas run | validate | report`: the whole pipeline from a YAML config."""

from __future__ import annotations

import argparse
import logging
import time

from orchestrator.errors import ConfigError


def cmd_validate(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.pipeline.plan import make_plan

    bad = 0
    for path in args.configs:
        try:
            cfg = load_config(path)
            plan = make_plan(cfg)
        except ConfigError as e:
            print(f"INVALID {e}")
            bad += 1
            continue
        print(f"ok      {path}: {cfg.name}: {cfg.space.name} on the {plan.domain} domain, accuracy from "
              f"{cfg.accuracy.source}, {cfg.search.algorithm} x {cfg.search.n_trials} trials, proxy {plan.proxy}, "
              f"{len(plan.targets)} targets, k={cfg.sweep.k}")
        for w in plan.warnings:
            print(f"warning {w}")
    return 2 if bad else 0


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.pipeline import run_pipeline
    from orchestrator.report import format_summary

    cfg = load_config(args.config)
    if args.output_dir:
        cfg = cfg.model_copy(update={"output_dir": args.output_dir})
    logging.getLogger("orchestrator").setLevel(min(logging.getLogger().level, logging.INFO))
    t0 = time.perf_counter()
    summary = run_pipeline(cfg, resume=args.resume, progress=not args.no_progress)
    print(format_summary(summary))
    run_dir = cfg.run_dir()
    print(f"\ndone in {time.perf_counter() - t0:.0f}s; run dir {run_dir}")
    if cfg.tracking.enabled:
        from orchestrator.tracking import resolve_uri

        print(f"MLflow: mlflow ui --backend-store-uri {resolve_uri(cfg.tracking.uri)}  (then open "
              f"http://127.0.0.1:5000, experiment '{cfg.tracking.experiment}')")
    print(f"Pareto tables: hwnas report {run_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report import report

    print(report(args.run, fronts=not args.no_fronts))
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
    p = sub.add_parser("report", help="print the Pareto tables of a run dir")
    p.add_argument("run")
    p.add_argument("--no-fronts", action="store_true", help="only the per-target summary")
    p.set_defaults(func=cmd_report)


__all__ = ["add_run_commands"]
