"""`hwnas supernet ...`: train a supernet on Ray, evaluate subnets with a pool of actors, export a subnet.

A run directory holds ``run.json`` (space, data and training settings) and the
checkpoint ``last.pt``; ``evaluate`` and ``export`` rebuild everything from it.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.cli_args import at_least, output_file, positive_int
from orchestrator.errors import ConfigError


def _options(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {p!r}: expected KEY=VALUE, e.g. --option width_mult=0.5")
        out[key] = yaml.safe_load(value)
    return out


def _ray_init(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address`` (else ``RAY_ADDRESS``) or start a local Ray, as ``hwnas run`` does."""
    from orchestrator.ray_connect import cluster_address, connect

    connect(cluster_address(address), num_cpus)


def cmd_train(args: argparse.Namespace) -> int:
    from orchestrator.supernet.actor import train_data_parallel, train_supernet
    from orchestrator.supernet.data import DataConfig
    from orchestrator.supernet.runs import create_run
    from orchestrator.supernet.spec import one_shot_space
    from orchestrator.supernet.train import TrainConfig
    from search_spaces.base import SpaceSpec

    space_spec = SpaceSpec(name=args.space, options=_options(args.option))
    one_shot_space(space_spec)  # unknown space or option: an error before Ray starts
    data_cfg = DataConfig(name=args.data, root=str(Path(args.data_root).resolve()) if args.data_root else None,
                          max_train=args.max_train,
                          resolution=space_spec.options.get("resolution", 32), resize=args.resize,
                          workers=args.data_workers)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                            n_random=args.n_random, seed=args.seed, device="cuda" if args.gpus else "cpu")
    out = Path(args.out)
    _check_data(data_cfg)  # before the run dir is claimed and Ray starts: one line, and --out stays free
    create_run(out, space_spec, data_cfg, train_cfg)
    _ray_init(args.address, args.cpus)
    t0 = time.perf_counter()
    if args.workers > 1:
        summary = train_data_parallel(space_spec, data_cfg, train_cfg, out, args.workers, use_gpu=args.gpus > 0,
                                      storage_path=out / "ray_train")
    else:
        summary, _ = train_supernet(space_spec, data_cfg, train_cfg, out, num_cpus=args.threads,
                                    num_gpus=min(args.gpus, 1), threads=args.threads)
    last = summary["history"][-1]
    print(f"trained {summary['epoch']} epochs in {time.perf_counter() - t0:.1f}s: last epoch loss "
          f"{last['loss']:.4f}, {last['images_per_s']:.0f} images/s; checkpoint {out / 'last.pt'}")
    return 0


def _check_data(cfg: Any) -> None:
    """Load the dataset once in this process (an image folder: its file list and statistics, lazily), so a
    problem with it is one line before any work, not a failed Ray actor (break test, turn 16); the data's
    settings named by their flags."""
    from orchestrator.errors import DataError
    from orchestrator.supernet.data import load_dataset

    try:
        load_dataset(cfg)
    except DataError as e:
        raise DataError(f"{e} (on this command line: data.root is --data-root, data.resize --resize, "
                        f"data.max_train --max-train)") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from orchestrator.supernet.evaluate import EvalConfig
    from orchestrator.supernet.pool import EvaluatorPool
    from orchestrator.supernet.runs import load_trained
    from orchestrator.supernet.spec import one_shot_space

    spec, state, data = load_trained(args.run)
    space = one_shot_space(spec)
    rng = np.random.default_rng(args.seed)
    from search_spaces.base import distinct_sample

    ends = [space.largest(), space.smallest()]
    archs = ends + [space.parse(a) for a in distinct_sample(space, args.n - 2, rng, [space.arch_id(a) for a in ends])]
    _ray_init(args.address, args.cpus)
    pool = EvaluatorPool(spec, state, data, EvalConfig(calib_batches=args.calib_batches), n_actors=args.actors)
    t0 = time.perf_counter()
    rows = []
    for r in pool.evaluate(archs, progress=True):
        rows.append(r.as_dict())
    dt = time.perf_counter() - t0
    rows.sort(key=lambda r: r["index"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["arch", "accuracy", "n_val", "seconds", "worker"])
        w.writeheader()
        for r in rows:
            w.writerow({"arch": r["arch_id"], "accuracy": f"{r['accuracy']:.4f}", "n_val": r["n_val"],
                        "seconds": f"{r['seconds']:.3f}", "worker": r["worker"]})
    acc = np.array([r["accuracy"] for r in rows])
    sampled = f"{acc[2:].mean():.3f}" if len(acc) > 2 else "-"
    print(f"evaluated {len(rows)} subnets with {args.actors} actors in {dt:.1f}s ({60 * len(rows) / dt:.0f}/min): "
          f"accuracy largest {acc[0]:.3f}, smallest {acc[1]:.3f}, sampled mean {sampled} "
          f"(min {acc.min():.3f}, max {acc.max():.3f}); wrote {out}")
    pool.shutdown()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.supernet.export import export_subnet, verify_export
    from orchestrator.supernet.runs import load_trained
    from orchestrator.supernet.spec import one_shot_space

    spec, state, _ = load_trained(args.run)
    space = one_shot_space(spec)
    sup = space.build_supernet()
    sup.load_state_dict(state)
    sup.eval()
    arch = space.largest() if args.arch == "largest" else space.smallest() if args.arch == "smallest" \
        else space.parse(args.arch)
    exp = export_subnet(space, sup, arch, args.out)
    diffs = verify_export(space, sup, exp)
    print(f"exported {space.arch_id(arch)} to {exp.arch_json}, {exp.program}, {exp.onnx} (ONNX via "
          f"{exp.onnx_exporter}); max |diff| vs supernet: pt2 {diffs['pt2_max_abs_diff']:.1e}, "
          f"onnx {diffs['onnx_max_abs_diff']:.1e}")
    return 0


def add_supernet_commands(sub: argparse._SubParsersAction) -> None:
    sn = sub.add_parser("supernet", help="supernet: train on Ray, evaluate subnets, export").add_subparsers(
        dest="supernet_command", required=True)

    def ray_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", help="Ray address of an existing cluster (default: start a local one)")
        p.add_argument("--cpus", type=positive_int, help="CPUs of the local Ray instance (default: all)")

    t = sn.add_parser("train", help="train a one-shot supernet (sandwich rule, in-place distillation)")
    t.add_argument("--space", default="mobilenetv3", help="mobilenetv3 or nb201")
    t.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="space setting, repeatable (e.g. width_mult=0.25, resolution=32, feature_dim=128)")
    t.add_argument("--data", default="digits",
                   help="digits (default, offline), npz, imagefolder, cifar10, cifar100, synthetic")
    t.add_argument("--data-root", help="npz: the .npz file; imagefolder: the folder of class sub-folders; "
                                       "cifar10/100: the directory of the python-pickle files")
    t.add_argument("--resize", action="store_true", help="imagefolder: resize images of mixed sizes")
    t.add_argument("--data-workers", type=int, default=0, help="imagefolder: DataLoader worker processes")
    t.add_argument("--max-train", type=int, help="use only N training images (a seeded random subset)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    t.add_argument("--n-random", type=int, default=2, help="random subnets per sandwich step")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2, help="CPU threads (and Ray CPUs) of the trainer actor")
    t.add_argument("--gpus", type=int, default=0, help="GPUs: 1 for the actor; with --workers, one per worker")
    t.add_argument("--workers", type=int, default=1, help=">1: data-parallel training with Ray Train")
    t.add_argument("--out", required=True, help="run directory (run.json, last.pt); training resumes from it")
    ray_args(t)
    t.set_defaults(func=cmd_train)

    e = sn.add_parser("evaluate", help="evaluate sampled subnets in parallel (BN recalibration + accuracy)")
    e.add_argument("--run", required=True, help="run directory of 'supernet train'")
    e.add_argument("--n", type=at_least(2), default=100, help="subnets: the largest, the smallest and N-2 "
                                                               "distinct ones sampled")
    e.add_argument("--actors", type=int, default=2)
    e.add_argument("--calib-batches", type=positive_int, default=8)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=output_file(), required=True, help="CSV: arch, accuracy, n_val, seconds, worker")
    ray_args(e)
    e.set_defaults(func=cmd_evaluate)

    x = sn.add_parser("export", help="export a subnet: arch JSON, torch.export (.pt2), ONNX; verified")
    x.add_argument("--run", required=True)
    x.add_argument("--arch", default="largest", help="arch id, or 'largest' / 'smallest'")
    x.add_argument("--out", required=True, help="output directory")
    x.set_defaults(func=cmd_export)
