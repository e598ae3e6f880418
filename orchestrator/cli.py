"""The `hwnas` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from orchestrator.cli_args import at_least, fraction, output_file, positive_int, srcc_text
from orchestrator.errors import HwnasError

log = logging.getLogger("hwnas")


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="arch", file=sys.stderr, disable=None, dynamic_ncols=True)


def _space(name: str):
    from search_spaces.base import get_space

    return get_space(name)


def _table(path: str, space):
    """A shipped latency table of ``space`` (as ``SHIPPED_LATENCY`` declares it: the plan's own lookup) or a CSV."""
    from orchestrator.errors import ConfigError
    from orchestrator.latency.shipped_tables import is_shipped_latency, shipped_latency_table
    from orchestrator.latency.table import read_table

    if not is_shipped_latency(path):
        return read_table(path, space)
    table = shipped_latency_table(space, path)
    if table is None:
        raise ConfigError(f"space {space.name} (as configured) has no shipped latency table; give a CSV path")
    return table


# -- commands -------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from orchestrator.latency.devices.catalog import DeviceCatalog
    from orchestrator.latency.devices.registry import DEVICES, PREFIXES
    from orchestrator.latency.devices.tabulated import TABLE_DEVICE
    from orchestrator.latency.predictors import PREDICTORS
    from orchestrator.latency.table import HWNASBENCH_DEVICES, SHIPPED_DEVICES
    from orchestrator.latency.transfer import TRANSFERS
    from orchestrator.search.algorithms import ALGORITHMS
    from orchestrator.supernet.data import DATASETS
    from search_spaces.base import SPACES

    DeviceCatalog(_space("nb201"))  # loads the device types
    for title, reg in (("search spaces", SPACES), ("devices", DEVICES), ("predictors", PREDICTORS),
                       ("transfer methods", TRANSFERS), ("search algorithms", ALGORITHMS), ("datasets", DATASETS)):
        print(f"{title}:")
        for n in reg.names():
            print(f"  {n:14s} {reg.describe(n)}")
        if reg is DEVICES:
            for p in PREFIXES.names():
                print(f"  {PREFIXES.get(p).pattern:14s} {PREFIXES.get(p).help}")
            print(f"  {'<column>':14s} {TABLE_DEVICE.help}; shipped: {', '.join(SHIPPED_DEVICES)}; "
                  f"nb201-hwnasbench: {', '.join(HWNASBENCH_DEVICES)}")
    from search_spaces.costs import COSTS

    print("costs (search.objectives, search.constraints; sweep.memory_mb limits peak_mem_mb):")
    for n, text in COSTS.items():
        print(f"  {n:14s} {text}")
    return 0


def cmd_srcc(args: argparse.Namespace) -> int:
    from orchestrator.latency.monotonicity import plot_heatmap, srcc_matrix

    space = _space(args.space)
    table = _table(args.table, space)
    m = srcc_matrix(table)
    print(f"SRCC between devices ({len(table.archs)} architectures in {table.source}):")
    print(m.format())
    for a, b, why in m.unknown_pairs():
        print(f"SRCC unknown for {a} and {b}: {why}")
    if len(m.devices) >= 2:
        if m.unknown_pairs():
            print("proxy candidates: only devices whose SRCC to every other device is known")
        for crit in ("min", "mean"):
            dev, val = m.proxy(crit)
            print(f"proxy by {crit} SRCC to the others: {dev} ({val:.3f})")
    if args.plot:
        print(f"heatmap: {plot_heatmap(m, args.plot)}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from orchestrator.latency.devices import DeviceCatalog, reliability_check
    from orchestrator.latency.measurement import MeasurementProtocol
    from orchestrator.latency.table import LatencyTable, read_archs, write_table

    if args.retest and not 3 <= args.retest <= args.n:
        raise HwnasError(f"--retest {args.retest}: the test-retest SRCC needs 3 to --n ({args.n}) architectures "
                         f"measured twice (0: none)")
    if args.threads > (os.cpu_count() or 1):
        log.warning("--threads %d is more than this machine's %d cores: the timings will measure contention",
                    args.threads, os.cpu_count() or 1)
    space = _space(args.space)
    rng = np.random.default_rng(args.seed)
    if args.archs:
        pool = read_archs(args.archs, space) if args.archs != "shipped" else _table("shipped", space).archs
        if args.exclude:
            skip = set(read_archs(args.exclude, space))
            pool = [a for a in pool if a not in skip]
        if args.n > len(pool):
            raise HwnasError(f"--n {args.n} is more than the {len(pool)} architectures in {args.archs}")
        ids = [pool[i] for i in rng.choice(len(pool), size=args.n, replace=False)]
    else:
        from search_spaces.base import distinct_sample

        ids = distinct_sample(space, args.n, rng, read_archs(args.exclude, space) if args.exclude else ())
    catalog = DeviceCatalog(space)
    defaults = {"threads": args.threads, "batch_size": args.batch_size,
                "protocol": MeasurementProtocol(warmup=args.warmup, repeats=args.repeats), "inner": args.runtime,
                "address": args.address}
    device = catalog.make(args.device, defaults=defaults)
    name = args.column or device.name
    cv = None
    refused: dict[str, str] = {}
    if device.deterministic:  # a table or a simulator: nothing to time
        values = device.latency_ms(ids)
    else:
        from orchestrator.errors import ArchitectureRefused
        from orchestrator.latency.devices.measured import measure_skipping_refused

        with _progress(len(ids), f"measuring on {device.name}") as bar:
            def on_refused(r: ArchitectureRefused) -> None:  # this architecture only: its artefact failed a check
                refused[r.arch_id] = str(r)
                bar.update(1)
                log.warning("%s refused %s, skipped: %s", device.name, r.arch_id, r)

            ids, samples = measure_skipping_refused(lambda rest: device.samples(rest, bar.update), ids, on_refused,
                                                    lambda p: p, lambda p: p.median_ms, device.name)
        if not ids:
            raise HwnasError(f"{device.name} refused every one of the {len(refused)} architectures (last: "
                             f"{next(reversed(refused.values()))}); nothing written to {args.out}")
        values = np.array([s.median_ms for s in samples])
        cv = np.array([s.cv for s in samples])
    write_table(args.out, LatencyTable(ids, [name], values[:, None], str(args.out)))
    print(f"wrote {len(ids)} latencies of {name} to {args.out}")
    if refused:
        print(f"{len(refused)} architectures refused by {device.name} (its artefact failed a check), not in "
              f"{args.out}: {', '.join(refused)}")
    if cv is not None:
        print(f"median ms {np.nanmedian(values):.3f}, median CV {100 * np.median(cv):.2f}%")
    if args.retest and device.deterministic:
        print(f"--retest: {device.name} is deterministic (a table or a simulator): nothing to retest")
    if args.retest and not device.deterministic:
        k = min(args.retest, len(ids))
        rep = reliability_check(device, ids[:k], rng, first_ms=values[:k])
        verdict = "ok" if rep.reliable else "UNRELIABLE (< 0.9): rankings are mostly noise"
        print(f"test-retest SRCC over {rep.n} architectures: {rep.srcc:.3f} ({verdict})")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from orchestrator.latency.table import read_archs, read_table
    from orchestrator.latency.transfer_job import transfer_many

    space = _space(args.space)
    sources = _table(args.sources, space)
    targets = read_table(args.targets, space)
    archs = read_archs(args.predict, space)
    t0 = time.perf_counter()
    with _progress(len(targets.devices), "adapting targets") as bar:
        results = transfer_many(space, sources, targets, archs, method=args.method, seed=args.seed,
                                progress=bar.update)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import csv

    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", *(r.target for r in results)])
        for i, a in enumerate(archs):
            w.writerow([a, *(f"{r.predictions[i]:.6g}" for r in results)])
    for r in results[:20]:
        print(f"{r.target}: k={r.k} method={r.method}")
    if len(results) > 20:
        print(f"... and {len(results) - 20} more targets")
    print(f"wrote {len(archs)} x {len(results)} predictions to {out} in {time.perf_counter() - t0:.2f}s")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from orchestrator.latency.metrics import regression_report
    from orchestrator.latency.predictors import make_predictor, save_predictor
    from search_spaces.base import encode_ids

    space = _space(args.space)
    table = _table(args.table, space)
    archs, y = table.measured(args.device)
    X = encode_ids(space, archs)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    n_test = int(round(args.test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    pred = make_predictor(args.predictor).fit(X[train], y[train])
    if n_test < 3:
        print(f"{args.predictor} on {args.device}: {n_test} held-out architectures (--test-fraction "
              f"{args.test_fraction} of {len(y)}); the held-out figures need at least 3")
    else:
        rep = regression_report(y[test], pred.predict(X[test]))
        print(f"{args.predictor} on {args.device}, {len(train)} train / {n_test} held-out architectures: "
              f"RMSE {rep['rmse_ms']:.3f} ms, MAPE {rep['mape_pct']:.2f}%, within +-10% {rep['within10_pct']:.1f}%, "
              f"SRCC {srcc_text(rep['srcc'])}")
    if args.out:
        pred = make_predictor(args.predictor).fit(X, y)
        print(f"saved (fitted on all {len(y)}): {save_predictor(pred, args.out, device=args.device, space=space.name)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from orchestrator.latency.metrics import regression_report

    space = _space(args.space)
    pred = _table(args.pred, space)
    truth = _table(args.truth, space)
    shown = 0
    for dev in pred.devices:
        if dev not in truth.devices:
            continue
        archs, y = truth.measured(dev)
        p = pred.lookup(dev, archs)
        ok = ~np.isnan(p)
        if ok.sum() < 3:
            print(f"{dev}: fewer than 3 architectures in both files; nothing to compare")
            continue
        rep = regression_report(y[ok], p[ok])
        print(f"{dev}: {int(ok.sum())} architectures, SRCC {srcc_text(rep['srcc'])}, MAPE {rep['mape_pct']:.1f}%, "
              f"within +-10% {rep['within10_pct']:.0f}%, RMSE {rep['rmse_ms']:.3f} ms")
        shown += 1
    if not shown:
        raise HwnasError(f"no device column is in both {args.pred} ({pred.devices}) and {args.truth} ({truth.devices})")
    return 0


def cmd_export_shipped(args: argparse.Namespace) -> int:
    from orchestrator.latency.table import shipped_table, write_table

    t = shipped_table(name=args.table)
    devices = args.devices or t.devices
    write_table(args.out, t.select(devices))
    print(f"wrote {len(t.archs)} architectures x {len(devices)} devices to {args.out}")
    return 0


# -- parser ---------------------------------------------------------------------------


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends an option's default to its help where it has a real one (not None, not an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every (sub-)command's help shows the defaults; sub-parsers are of this class too."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def add_argument(self, *args: object, **kwargs: object) -> argparse.Action:  # type: ignore[override]
        if kwargs.get("help") is None and kwargs.get("default") not in (None, False):
            kwargs["help"] = "(default: %(default)s)"  # argparse shows no line at all for an option without help
        return super().add_argument(*args, **kwargs)  # type: ignore[arg-type]


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hwnas")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hwnas", description="Hardware-aware NAS: one proxy device, many targets.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered search spaces, devices, predictors, transfer methods").set_defaults(
        func=cmd_list)

    lat = sub.add_parser("latency", help="latency: measure, fit, SRCC, transfer").add_subparsers(
        dest="latency_command", required=True)

    s = lat.add_parser("srcc", help="SRCC matrix between the devices of a latency table, proxy choice")
    s.add_argument("--table", required=True, help="latency CSV (arch + one column per device), or 'shipped'")
    s.add_argument("--space", default="nb201")
    s.add_argument("--plot", type=output_file(".png", ".pdf", ".svg"), help="write a heatmap here (.png, .pdf, .svg)")
    s.set_defaults(func=cmd_srcc)

    m = lat.add_parser("measure", help="measure architectures on a device; writes a latency CSV")
    m.add_argument("--device", required=True, help="device name (hwnas list), or remote:<name> for a Ray node")
    m.add_argument("--space", default="nb201")
    m.add_argument("--n", type=positive_int, required=True, help="number of architectures")
    m.add_argument("--out", type=output_file(), required=True)
    m.add_argument("--archs", help="draw the architectures from this CSV's 'arch' column (or 'shipped')")
    m.add_argument("--exclude", help="skip the architectures of this CSV's 'arch' column (e.g. held-out checks)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=positive_int, default=1)
    m.add_argument("--batch-size", type=positive_int, default=1)
    m.add_argument("--warmup", type=at_least(0), default=5)
    m.add_argument("--repeats", type=at_least(3), default=15)
    m.add_argument("--column", help="column name in the output (default: the device's name)")
    m.add_argument("--retest", type=at_least(0), default=0, metavar="K",
                   help="also measure K of them (3 .. --n) twice and report the test-retest SRCC")
    m.add_argument("--runtime", default="torch-cpu", help="runtime on a remote device's node")
    m.add_argument("--address", default="auto", help="Ray address for remote devices")
    m.set_defaults(func=cmd_measure)

    f = lat.add_parser("fit", help="fit a predictor on a table column; report held-out quality; save")
    f.add_argument("--table", required=True, help="latency CSV or 'shipped'")
    f.add_argument("--device", required=True, help="column of the table")
    f.add_argument("--space", default="nb201")
    f.add_argument("--predictor", default="additive")
    f.add_argument("--test-fraction", type=fraction(), default=0.2, help="share held out, in [0, 1) (0: none)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=output_file(), help="save the predictor (.npz), fitted on all rows")
    f.set_defaults(func=cmd_fit)

    t = lat.add_parser("transfer", help="adapt source devices to targets with a few samples each; predict")
    t.add_argument("--space", required=True)
    t.add_argument("--sources", required=True, help="CSV: arch + one column per source device (or 'shipped')")
    t.add_argument("--targets", required=True, help="CSV: arch + one column per target, blank where not measured")
    t.add_argument("--predict", required=True, help="CSV with column arch: the architectures to predict")
    t.add_argument("--out", type=output_file(), required=True, help="CSV: arch + one predicted-latency column per "
                                                                  "target")
    t.add_argument("--method", default="multi",
                   help="multi (default: best on public data), auto, adaproxy or reuse")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_transfer)

    c = lat.add_parser("compare", help="compare predicted latencies with measured ones (same column names)")
    c.add_argument("--pred", required=True, help="predictions CSV (e.g. transfer --out)")
    c.add_argument("--truth", required=True, help="measured latency CSV")
    c.add_argument("--space", default="nb201")
    c.set_defaults(func=cmd_compare)

    e = lat.add_parser("export-shipped", help="write the shipped NB201 latency table as a latency CSV")
    e.add_argument("--out", type=output_file(), required=True)
    e.add_argument("--devices", nargs="+", help="only these devices")
    e.add_argument("--table", default="shipped", help="shipped (= nb201-full, the whole space) or nb201-hwnasbench")
    e.set_defaults(func=cmd_export_shipped)

    from orchestrator.cli_lut import add_lut_command

    add_lut_command(lat)

    from orchestrator.cli_accuracy import add_accuracy_commands
    from orchestrator.cli_int8 import add_int8_command
    from orchestrator.cli_run import add_run_commands
    from orchestrator.cli_supernet import add_supernet_commands

    add_supernet_commands(sub)
    add_run_commands(sub)
    add_accuracy_commands(sub)
    add_int8_command(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose < 1:  # MLflow sets its own loggers' level when it is imported (later): tell it up front
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING if args.verbose < 2 else optuna.logging.INFO)
    for noisy in ("mlflow", "alembic"):  # their INFO lines (creating tables ...) are not ours to show
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose < 1 else logging.INFO)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a reader that left shows here, not in the interpreter's exit
        return rc
    except HwnasError as e:
        from orchestrator.names import redact

        print(f"hwnas: error: {redact(str(e))}", file=sys.stderr)  # no URL's password in a message
        return 2
    except ValidationError as e:  # a setting built from flags out of its model's range: one line per problem
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or e.title}: {err['msg']}" for err in e.errors())
        print(f"hwnas: error: {e.title}: {problems}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside `hwnas run` (which says how to resume): one line, no trace
        print("\nhwnas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hwnas report RUN | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would raise again
        return 0


if __name__ == "__main__":
    sys.exit(main())
