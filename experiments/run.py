"""Run the hwnas pipeline on a Ray cluster: the entry script for `ray submit`.

    ray submit cluster.yaml experiments/run.py -- experiments/cifar10_mobilenet_gpu.yaml [--resume]

`ray submit` uploads only this file and runs it on the head node, from the home
directory; the package is there already (cluster.yaml's file_mounts and
setup_commands install it on every node). A config path that does not exist
from the working directory is looked up in the project checkout (~/hwnas).
The config is validated, and the cluster's resources are checked against what
it needs, before any work is scheduled. Also runs locally: `--address local`.

Token authentication: cluster.yaml starts every node with RAY_AUTH_MODE=token
and mounts the token at ~/.ray/auth_token. Ray reads RAY_AUTH_MODE when it is
*imported*, and `ray submit` exports nothing, so this script sets it (where a
token is there and the variable is not set) before anything imports ray.
"""

from __future__ import annotations

from orchestrator.ray_connect import token_auth_env  # imports nothing of ray

token_auth_env()  # before any import of ray, direct or through the package

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def resolve_config(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    import orchestrator

    project = Path(orchestrator.__file__).resolve().parent.parent
    if (project / path).is_file():
        return project / path
    raise SystemExit(f"run.py: no config {path!r} in {Path.cwd()} or in the project checkout {project}")


def configure_logging() -> None:
    """Our INFO lines (hwnas's progress); the libraries' (onnx_ir, mlflow, alembic, ...) only from WARNING, as
    `hwnas run` shows them."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its loggers' level at import
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("orchestrator", "run.py"):
        logging.getLogger(ours).setLevel(logging.INFO)
    logging.getLogger("optuna").setLevel(logging.WARNING)  # it has its own handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="pipeline config (YAML)")
    ap.add_argument("--resume", action="store_true", help="continue the run of this config")
    ap.add_argument("--address", default="auto", help="Ray address (default: the cluster this node is in); "
                                                      "'local' starts a local Ray")
    ap.add_argument("--output-dir", help="override the config's output_dir")
    args = ap.parse_args(argv)
    configure_logging()
    t0 = time.perf_counter()

    from orchestrator.config import load_config
    from orchestrator.errors import HwnasError

    try:
        cfg = load_config(resolve_config(args.config))
    except HwnasError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    if args.output_dir:
        cfg = cfg.model_copy(update={"output_dir": args.output_dir})

    import ray

    from orchestrator.ray_connect import connect

    try:  # a cluster that cannot be reached, or refuses the token: one line naming the fix
        connect(None if args.address == "local" else args.address,
                cfg.ray.num_cpus if args.address == "local" else None)
    except HwnasError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    from orchestrator.pipeline import run_pipeline
    from orchestrator.report import format_summary

    resources = ray.cluster_resources()
    logging.getLogger("run.py").info("cluster: %s", {k: v for k, v in sorted(resources.items())
                                                     if not k.startswith(("node:", "accelerator_type"))})
    try:  # the pipeline checks the cluster's resources against the config before any work
        summary = run_pipeline(cfg, resume=args.resume, progress=sys.stderr.isatty())
    except HwnasError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    from orchestrator.cli_run import print_closing

    print(format_summary(summary))
    print_closing(cfg, summary, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
