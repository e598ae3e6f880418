"""Real runtimes on this machine (issue 22): architectures measured on each runtime twice (the second pass in
reverse order), with the median latency per architecture, the test-retest SRCC per runtime, the SRCC matrix
between runtimes, and the seconds per architecture of preparing (export, quantization, compilation, output
check) and of the whole measurement (prepare + warm-up + timing).

    nice python bench/runtimes.py --n 10 --runtimes torch-cpu onnxrt-cpu onnxrt-int8 openvino-cpu
    nice python bench/runtimes.py --n 200 --channels 16 --cells-per-stage 1 --budget 300 --out runs/rt_nb201.csv
    nice python bench/runtimes.py --space mobilenetv3 --width 0.35 --resolution 64 --n 100 --out runs/rt_mbv3.csv
    nice python bench/runtimes.py --space mobilenetv3 --width 0.35 --resolutions 32 48 64 --n 20 \
        --runtimes onnxrt-int8 executorch-xnnpack --option executorch-xnnpack:precision=int8
    python bench/runtimes.py --report runs/rt_nb201.csv          # the tables again, from the CSV

With ``--out`` every measurement is appended to a CSV as it is made (runtime, pass, architecture, median ms,
prepare s, measure s, 1-minute load average), and a rerun with the same ``--out`` skips what it holds, so an
interrupted run counts and can be continued. ``--option RUNTIME:KEY=VALUE`` sets a device option (the value
read as JSON where it parses, e.g. ``executorch-xnnpack:precision=int8``; such a runtime is labelled
``executorch-xnnpack[precision=int8]``). ``--resolutions`` makes MobileNetV3 search the input resolution (each
subnet measured at its own). A runtime device keeps the artefacts it prepared, so the second pass times
the artefact of the first (its prepare seconds are then ~0; torch-compile compiles again from inductor's FX graph
cache). ``--budget`` caps the seconds per runtime (first pass: half of
it; the second pass re-measures, in reverse order, the architectures of the first). Runtimes of the extra
[runtimes] are skipped (with a note) where it is not installed. In process, no Ray.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from orchestrator.errors import DeviceError
from orchestrator.latency.devices import get_device
from orchestrator.latency.measurement import MeasurementProtocol

FIELDS = ["runtime", "pass", "arch", "median_ms", "prepare_s", "measure_s", "load1"]


def parse_options(specs: list[str]) -> dict[str, dict]:
    """``RUNTIME:KEY=VALUE`` strings as {runtime: {key: value}}, values read as JSON where they parse."""
    out: dict[str, dict] = {}
    for spec in specs:
        name, sep, kv = spec.partition(":")
        key, eq, value = kv.partition("=")
        if not (sep and eq and key):
            raise SystemExit(f"--option {spec!r}: write RUNTIME:KEY=VALUE, e.g. executorch-xnnpack:precision=int8")
        try:
            out.setdefault(name, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            out.setdefault(name, {})[key] = value
    return out


# device options that change how much is kept, not what is measured: left out of a runtime's label, so a rerun
# with one of them continues the same rows of a CSV (turn 13's artefact_cache=100 started a second row instead)
NOT_IN_LABEL = frozenset({"artefact_cache"})


def label(name: str, options: dict) -> str:
    shown = {k: v for k, v in options.items() if k not in NOT_IN_LABEL}
    return name if not shown else f"{name}[{','.join(f'{k}={v}' for k, v in shown.items())}]"


def make_space(args: argparse.Namespace):
    if args.space == "nb201":
        from search_spaces.nb201 import NB201Space

        return NB201Space(channels=args.channels, cells_per_stage=args.cells_per_stage)
    from search_spaces.mobilenet import MobileNetV3Space

    if args.resolutions:
        return MobileNetV3Space(width_mult=args.width, resolutions=args.resolutions, num_classes=10)
    return MobileNetV3Space(width_mult=args.width, resolution=args.resolution, num_classes=10)


def read_rows(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    with path.open() as f:
        return [{**r, "pass": int(r["pass"]), **{k: float(r[k]) for k in FIELDS[3:]}} for r in csv.DictReader(f)]


def report(rows: list[dict], ids: list[str] | None = None) -> None:
    """Per runtime: median of medians (first pass), test-retest SRCC on the architectures measured in both
    passes, median prepare and measure seconds (first pass; and the second pass's measure seconds, where the
    runtime reuses its artefact); then the SRCC matrix between runtimes on their common
    architectures (mean of the passes where both exist)."""
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    per: dict[str, dict[int, dict[str, dict]]] = {n: {1: {}, 2: {}} for n in runtimes}
    for r in rows:
        per[r["runtime"]][r["pass"]][r["arch"]] = r
    print("| runtime | archs (pass 1 / both) | median of medians (ms) | test-retest SRCC | prepare s/arch (median) "
          "| measure s/arch (median) | 2nd pass measure s/arch | load1 (min-max) | p90/p10 of medians "
          "| retest |diff| (median %) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    mean: dict[str, dict[str, float]] = {}
    for n in runtimes:
        a, b = per[n][1], per[n][2]
        both = [i for i in a if i in b]
        srcc = spearmanr([a[i]["median_ms"] for i in both], [b[i]["median_ms"] for i in both]).statistic \
            if len(both) > 2 else float("nan")
        loads = [r["load1"] for r in rows if r["runtime"] == n]
        prep = [r["prepare_s"] for r in a.values()]
        ms = np.array([r["median_ms"] for r in a.values()])
        x, y = (np.array([p[i]["median_ms"] for i in both]) for p in (a, b))
        diff = float(np.median(200 * np.abs(x - y) / (x + y))) if both else float("nan")
        print(f"| {n} | {len(a)} / {len(both)} | {np.median([r['median_ms'] for r in a.values()]):.3f} | {srcc:.3f} "
              f"| {np.nanmedian(prep) if not np.all(np.isnan(prep)) else float('nan'):.2f} "
              f"| {np.median([r['measure_s'] for r in a.values()]):.2f} "
              f"| {np.median([r['measure_s'] for r in b.values()]) if b else float('nan'):.2f} "
              f"| {min(loads):.1f}-{max(loads):.1f} "
              f"| {np.percentile(ms, 90) / np.percentile(ms, 10):.2f} | {diff:.1f} |")
        mean[n] = {i: (a[i]["median_ms"] + b[i]["median_ms"]) / 2 if i in b else a[i]["median_ms"] for i in a}
    print("\nSRCC between runtimes (mean of the two passes; common architectures in brackets):")
    print("| | " + " | ".join(runtimes) + " |")
    print("| --- |" + " --- |" * len(runtimes))
    for r in runtimes:
        cells = []
        for c in runtimes:
            common = [i for i in mean[r] if i in mean[c]]
            s = spearmanr([mean[r][i] for i in common], [mean[c][i] for i in common]).statistic \
                if len(common) > 2 else float("nan")
            cells.append(f"{s:.3f} ({len(common)})")
        print(f"| {r} | " + " | ".join(cells) + " |")


def run_pass(dev, space, name: str, p: int, ids: list[str], done: dict, deadline: float, writer) -> None:
    for a in ids:
        if (name, p, a) in done:
            continue
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        try:
            ms = dev.measure(space.parse(a)).median_ms
        except DeviceError as e:
            logging.warning("%s", e)
            continue
        row = {"runtime": name, "pass": p, "arch": a, "median_ms": ms,
               "prepare_s": getattr(dev, "prepare_seconds", {}).get(a, float("nan")),
               "measure_s": time.perf_counter() - t0, "load1": os.getloadavg()[0]}
        done[(name, p, a)] = row
        if writer is not None:
            writer(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", choices=["nb201", "mobilenetv3"], default="nb201")
    ap.add_argument("--n", type=int, default=10, help="architectures (sampled with --seed)")
    ap.add_argument("--channels", type=int, default=16, help="NB201: channels of the first stage")
    ap.add_argument("--cells-per-stage", type=int, default=5, help="NB201: cells per stage (N)")
    ap.add_argument("--width", type=float, default=1.0, help="MobileNetV3: width multiplier")
    ap.add_argument("--resolution", type=int, default=224, help="MobileNetV3: input resolution (multiple of 32)")
    ap.add_argument("--resolutions", type=int, nargs="+", help="MobileNetV3: search these input resolutions")
    ap.add_argument("--option", action="append", default=[], metavar="RUNTIME:KEY=VALUE",
                    help="a device option of one runtime (repeatable)")
    ap.add_argument("--runtimes", nargs="+", default=["torch-cpu", "onnxrt-cpu", "onnxrt-int8", "openvino-cpu",
                                                      "executorch-xnnpack"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=float("inf"), help="seconds per runtime (both passes)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--min-repeat-ms", type=float, default=10.0)
    ap.add_argument("--out", type=Path, help="CSV appended per measurement; a rerun skips what it holds")
    ap.add_argument("--report", type=Path, help="only print the tables of this CSV")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.report:
        report(read_rows(args.report))
        return
    space = make_space(args)
    rng = np.random.default_rng(args.seed)
    ids = list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(args.n)))
    proto = MeasurementProtocol(warmup=args.warmup, repeats=args.repeats, min_repeat_ms=args.min_repeat_ms)
    done = {(r["runtime"], r["pass"], r["arch"]): r for r in read_rows(args.out)}
    writer = None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        new = not args.out.exists()
        fh = args.out.open("a", newline="")
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            w.writeheader()

        def writer(row: dict) -> None:
            w.writerow(row)
            fh.flush()
    print(f"{len(ids)} {space.name} architectures ({space.spec().options}, batch 1, {args.threads} thread), "
          f"protocol {proto.model_dump()}, budget {args.budget} s per runtime", flush=True)
    options = parse_options(args.option)
    unknown = set(options) - set(args.runtimes)
    if unknown:
        raise SystemExit(f"--option names runtimes not in --runtimes: {sorted(unknown)}")
    for runtime in args.runtimes:
        name = label(runtime, options.get(runtime, {}))
        try:
            dev = get_device(runtime, space, threads=args.threads, protocol=proto, **options.get(runtime, {}))
        except DeviceError as e:
            print(f"{name}: skipped: {e}", flush=True)
            continue
        t0 = time.monotonic()
        run_pass(dev, space, name, 1, ids, done, t0 + args.budget / 2, writer)
        first = [a for a in ids if (name, 1, a) in done]
        run_pass(dev, space, name, 2, first[::-1], done, t0 + args.budget, writer)
        print(f"{name}: {len(first)} measured, {time.monotonic() - t0:.0f} s", flush=True)
    report([done[k] for k in done if k[2] in set(ids)])


if __name__ == "__main__":
    main()
