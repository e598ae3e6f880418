"""`hwnas accuracy estimate`: the accuracy estimate of every architecture listed in a CSV, from any of the
pipeline's accuracy sources (the same classes: orchestrator/search/accuracy.py, built as the pipeline builds
them). Writes ``arch`` and one estimate column, in the input's order."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.cli_args import at_least, check_output_file, positive_int, space_option
from orchestrator.errors import ConfigError

DEFAULT = "default"


def data_config(path: str, fmt: str | None = None) -> Any:
    """A DataConfig for ``path``: ``digits`` (the embedded default), a ``.npz`` file, a CIFAR python-pickle
    directory, or an image folder (class sub-folders); ``fmt`` overrides the guess."""
    from orchestrator.supernet.data import DataConfig

    if path == "digits":
        return DataConfig(name="digits")
    p = Path(path).expanduser()
    if fmt is None:
        if not p.exists():
            raise ConfigError(f"--data {path}: no such file or folder; pass a .npz file, a CIFAR python-pickle "
                              f"directory, an image folder, or 'digits'")
        if p.is_file():
            fmt = "npz"
        elif (p / "data_batch_1").is_file() or (p / "cifar-10-batches-py").is_dir():
            fmt = "cifar10"
        elif (p / "cifar-100-python").is_dir() or ((p / "train").is_file() and (p / "test").is_file()):
            fmt = "cifar100"
        else:
            fmt = "imagefolder"
    return DataConfig(name=fmt, root=str(p))


def _table(args: argparse.Namespace, space: Any, defaults: Any) -> tuple[Any, str, Any]:
    from orchestrator.search.accuracy import TableAccuracy
    from orchestrator.search.accuracy_table import read_accuracy

    values = read_accuracy("shipped", space, defaults.table_column).values  # refused for a space with none
    return TableAccuracy(space, values, seed=args.seed), "accuracy", None


def _zero_cost(args: argparse.Namespace, space: Any, defaults: Any) -> tuple[Any, str, Any]:
    from orchestrator.search.accuracy import ZeroCostAccuracy
    from orchestrator.search.zero_cost import make_scorer

    if args.data is None:
        raise ConfigError("--source zero_cost needs --data: the images of the proxies' batch (a .npz file, "
                          "a CIFAR directory, an image folder, or 'digits')")
    scorer = make_scorer(space, args.proxy, data_config(args.data, args.data_format), args.batch_size,
                         args.reference, args.seed)
    return ZeroCostAccuracy(space, scorer), f"zero_cost_{args.proxy}", None


def _need_run(args: argparse.Namespace, source: str) -> None:
    if args.run is None:
        raise ConfigError(f"--source {source} needs --run: a supernet run directory of 'hwnas supernet train'")


def _supernet(args: argparse.Namespace, space: Any, defaults: Any) -> tuple[Any, str, Any]:
    _need_run(args, "supernet")
    sup = supernet_source(args)
    return sup, "accuracy", sup


def _predictor(args: argparse.Namespace, space: Any, defaults: Any) -> tuple[Any, str, Any]:
    from orchestrator.search.accuracy import PredictorAccuracy, ZeroCostFeatures
    from orchestrator.search.zero_cost import make_scorer

    _need_run(args, "predictor")
    sup = supernet_source(args)
    features: Any = "encoding"
    if args.features != "encoding":
        if args.data is None:
            raise ConfigError("--features zero_cost/both needs --data: the images of the proxies' batch")
        features = ZeroCostFeatures(space, make_scorer(space, "ensemble", data_config(args.data, args.data_format),
                                                       args.batch_size, args.reference, args.seed), args.features)
    pred = PredictorAccuracy(space, sup, args.samples, np.random.default_rng([args.seed, 3]), defaults.predictor,
                             features)
    print(f"predictor fit on {args.samples} evaluated subnets: held-out SRCC {pred.quality['heldout_srcc']:.3f}",
          file=sys.stderr)
    return pred, "accuracy", sup


@dataclass(frozen=True)
class Estimator:
    """How this command builds a registered accuracy source (``pipeline.accuracy.SOURCES``) from its arguments:
    ``build(args, space, defaults) -> (source, estimate column, what to release after)``."""

    build: Callable[[argparse.Namespace, Any, Any], tuple[Any, str, Any]]
    takes_proxy: bool = False  # --proxy chooses what it computes


# one entry per registered accuracy source (tests/test_cli_accuracy.py checks the two agree)
ESTIMATORS: dict[str, Estimator] = {"table": Estimator(_table), "zero_cost": Estimator(_zero_cost, takes_proxy=True),
                                    "supernet": Estimator(_supernet), "predictor": Estimator(_predictor)}


def source_choices() -> list[str]:
    """``default`` (what the pipeline uses when the config names none) and every registered accuracy source."""
    from orchestrator.pipeline.accuracy import SOURCES

    return [DEFAULT, *SOURCES.names()]


def zero_cost_proxy_choices() -> list[str]:
    """The ``--proxy`` names: those the config's ``accuracy.zero_cost.proxy`` accepts (read from its schema, so
    parsing imports no torch); a test checks they are exactly the registered proxies and ensembles."""
    from typing import get_args

    from orchestrator.config import ZeroCostSection

    return list(get_args(ZeroCostSection.model_fields["proxy"].annotation))


def default_choice(args: argparse.Namespace) -> Any:
    """What ``--source default`` resolves to: the pipeline's own resolution (``default_source.choose_source``)
    of a config for ``--space`` whose images are ``--data`` (digits when absent) and whose supernet
    checkpoint is ``--run``: a SourceChoice (source, reason)."""
    from orchestrator.config import AccuracySection, SupernetSection, ZeroCostSection
    from orchestrator.pipeline.default_source import choose_source

    given: dict[str, Any] = {}
    if args.data is not None:
        given["zero_cost"] = ZeroCostSection(proxy=args.proxy, data=data_config(args.data, args.data_format))
    if args.run is not None:
        given["supernet"] = SupernetSection(checkpoint=args.run)
    return choose_source(args.space, AccuracySection(**given))


def resolve(args: argparse.Namespace) -> tuple[str, Estimator]:
    """The source ``--source`` names (``default``: the pipeline's default for the space and data,
    ``default_choice``) and its estimator; refuses a --proxy the source does not take."""
    source = args.source
    for flag, value, valid in (("--source", source, source_choices()), ("--proxy", args.proxy,
                                                                        zero_cost_proxy_choices())):
        if value not in valid:
            raise ConfigError(f"{flag} {value!r}: not one of {', '.join(valid)}")
    if source == DEFAULT:
        from orchestrator.pipeline.accuracy import SOURCES
        from orchestrator.pipeline.default_source import REAL_IMAGES, rules

        choice = default_choice(args)
        source = choice.source
        if SOURCES.get(source).trains_supernet and args.run is None:  # its network: a supernet run's
            alt = (f", or --data with real images ({', '.join(sorted(REAL_IMAGES))}) for the zero-cost default"
                   if rules(args.space) else "")
            raise ConfigError(f"--source default is {choice.describe()}; it needs --run: a supernet run "
                              f"directory of 'hwnas supernet train'{alt}")
    if source not in ESTIMATORS:
        raise ConfigError(f"--source {source}: 'hwnas accuracy estimate' cannot build it yet; use one of "
                          f"{', '.join(ESTIMATORS)}")
    est = ESTIMATORS[source]
    if not est.takes_proxy and args.proxy != "ensemble":
        raise ConfigError(f"--proxy is for --source {', '.join(n for n, e in ESTIMATORS.items() if e.takes_proxy)}")
    return source, est


def build_source(args: argparse.Namespace, space: Any) -> tuple[Any, str, Any]:
    """(the source, the estimate column's name, what to release after)."""
    from orchestrator.config import AccuracySection

    _, est = resolve(args)
    return est.build(args, space, AccuracySection())


def supernet_source(args: argparse.Namespace) -> Any:
    import ray

    from orchestrator.cli_supernet import _ray_init
    from orchestrator.search.accuracy import SupernetAccuracy
    from orchestrator.supernet.evaluate import EvalConfig
    from orchestrator.supernet.pool import EvaluatorPool
    from orchestrator.supernet.runs import load_trained
    from orchestrator.supernet.spec import one_shot_space

    if args.data is not None:
        raise ConfigError("--source supernet/predictor evaluate on the supernet run's own data (its run.json); "
                          "drop --data (or use it with --features zero_cost/both for the proxies' batch)")
    spec, state, data = load_trained(args.run)
    if spec.name != args.space:
        raise ConfigError(f"--run {args.run} holds a {spec.name!r} supernet but --space is {args.space!r}")
    _ray_init(None, args.cpus)
    weights, data_ref = ray.put(dict(state)), ray.put(data)
    cfg = EvalConfig(max_val=args.max_val)
    return SupernetAccuracy(one_shot_space(spec), lambda: EvaluatorPool(spec, weights, data_ref, cfg,
                                                                        n_actors=args.actors))


def cmd_estimate(args: argparse.Namespace) -> int:
    from orchestrator.latency.table import read_archs
    from search_spaces.base import SpaceSpec

    name, _ = resolve(args)  # an unknown source or a --proxy it does not take: refused before any work
    if args.source == DEFAULT:
        print(f"--source default: {default_choice(args).describe()}", file=sys.stderr)
    space = SpaceSpec(name=args.space, options=dict(args.space_option or [])).build()
    ids = read_archs(args.archs, space)
    if not ids:
        raise ConfigError(f"{args.archs} lists no architectures")
    out = writable_out(args.out, args.archs)  # before any work: a bad --out would otherwise lose all of it
    source, column, release = build_source(args, space)
    t0 = time.perf_counter()
    values: dict[str, float] = {}
    todo = list(dict.fromkeys(ids))
    from tqdm import tqdm

    with tqdm(total=len(todo), desc=column, unit="arch", file=sys.stderr, disable=None) as bar:
        for i in range(0, len(todo), args.chunk):
            values.update(source.evaluate(todo[i:i + args.chunk]))
            bar.update(min(args.chunk, len(todo) - i))
    if release is not None:
        release.release()
    import io

    from orchestrator.pipeline.context import atomic_write

    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["arch", column])
    w.writerows([a, f"{values[a]:.6g}"] for a in ids)
    try:
        atomic_write(out, text.getvalue())  # a full disk, a folder removed meanwhile: no half file left
    except OSError as e:
        raise ConfigError(f"--out {out}: writing the {len(ids)} estimates failed ({e.strerror or e}); nothing "
                          f"was written; free space or choose another --out and run again") from None
    dt = time.perf_counter() - t0
    print(f"{len(todo)} architectures, {column} from {name} in {dt:.1f}s ({dt / len(todo):.2f} s each); "
          f"wrote {out}")
    return 0


def writable_out(out: str, archs: str) -> Path:
    """``--out`` as a path checked before any work (``cli_args.check_output_file``), and not the ``--archs``
    input. Raises ConfigError naming the problem."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir() and path.resolve() == Path(archs).expanduser().resolve():
        raise ConfigError(f"--out {out} is the --archs file; write the estimates to another file (the input would "
                          f"be overwritten)")
    return check_output_file(out)


def add_accuracy_commands(sub: argparse._SubParsersAction) -> None:
    acc = sub.add_parser("accuracy", help="accuracy estimates from the pipeline's sources").add_subparsers(
        dest="accuracy_command", required=True)
    e = acc.add_parser("estimate", help="estimate the accuracy of every architecture in a CSV; writes arch + one "
                                        "column")
    e.add_argument("--space", default="nb201", help="search space of the architectures")
    e.add_argument("--space-option", action="append", type=space_option, metavar="KEY=VALUE",
                   help="a setting of the space (repeatable), e.g. num_classes=100 for CIFAR-100 images")
    # --source and --proxy are checked by the command (resolve), not by argparse's choices: listing them at parse
    # time imported the whole pipeline (and torch) into every hwnas command, ~5 s each.
    e.add_argument("--source", default=DEFAULT,
                   help="default (the pipeline's default), table (shipped NB201), supernet (--run), predictor "
                        "(--run; fit on --samples evaluated subnets), zero_cost (--proxy, --data)")
    e.add_argument("--proxy", default="ensemble",
                   help="zero_cost: the proxy (T-score: 50 + 10 standard deviations over reference cells)")
    e.add_argument("--run", help="supernet/predictor: a 'hwnas supernet train' run directory")
    e.add_argument("--data", help="zero_cost (and predictor --features zero_cost/both): a .npz file, a CIFAR "
                                  "python-pickle directory, an image folder, or 'digits'")
    e.add_argument("--data-format", choices=["npz", "imagefolder", "cifar10", "cifar100", "digits"],
                   help="the format of --data when the guess is wrong")
    e.add_argument("--features", default="encoding", choices=["encoding", "zero_cost", "both"],
                   help="predictor: its inputs")
    e.add_argument("--samples", type=positive_int, default=64, help="predictor: subnets evaluated to fit it")
    e.add_argument("--batch-size", type=positive_int, default=64, help="zero_cost: images in the proxies' batch")
    e.add_argument("--reference", type=at_least(4), default=32,
                   help="zero_cost: cells that standardise each score (at least 4, as in a config)")
    e.add_argument("--actors", type=positive_int, default=2, help="supernet: evaluator actors")
    e.add_argument("--max-val", type=int, help="supernet: validation images per subnet (default: all)")
    e.add_argument("--cpus", type=positive_int, help="CPUs of the local Ray instance (default: all)")
    e.add_argument("--chunk", type=positive_int, default=16, help="architectures per progress step")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--archs", required=True, help="CSV with a column 'arch'")
    e.add_argument("--out", required=True, help="CSV written: arch, <estimate>")
    e.set_defaults(func=cmd_estimate)
