"""``hwnas latency lut``: build a lookup table for a measured device by timing each block in place, and report
its error against whole-network measurement on sampled architectures (``latency/lut_build.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from orchestrator.cli_args import output_file, space_option, srcc_text
from orchestrator.errors import HwnasError


def cmd_lut(args: argparse.Namespace) -> int:
    from orchestrator.latency.devices import DeviceCatalog
    from orchestrator.latency.lut_build import build_lut, evaluate_lut, write_lut
    from search_spaces.base import SpaceSpec

    if args.check < 0:
        raise HwnasError(f"--check must be 0 or more, got {args.check}")
    space = SpaceSpec(name=args.space, options=dict(args.space_option or [])).build()
    # validated with the device's other options by the catalog (a bad value: one line naming the option)
    protocol = {"warmup": args.warmup, "repeats": args.repeats, "min_repeat_ms": args.min_repeat_ms}
    defaults = {"threads": args.threads, "batch_size": args.batch_size, "isolate": False, "protocol": protocol}
    device = DeviceCatalog(space).make(args.device, defaults=defaults)
    table = build_lut(device, space)
    path = write_lut(args.out, table, base_label="base_reference")
    print(f"wrote the lookup table of {device.name} ({len(table.choices)} layers, base "
          f"{table.base[device.name]:.3f} ms) to {path}")
    if args.check:
        err = evaluate_lut(device, space, table, args.check, np.random.default_rng(args.seed))
        print(f"against whole-network measurement on {err.n} sampled architectures: MAPE {err.mape:.1f} %, "
              f"SRCC {srcc_text(err.srcc)}")
    return 0


def add_lut_command(lat: Any) -> None:
    """Add ``lut`` to the ``hwnas latency`` subcommands."""
    p = lat.add_parser("lut", help="build a lookup table for a measured device (each block timed in place)")
    p.add_argument("--device", required=True, help="a measured device of this machine: torch-cpu, onnxrt-cpu, cuda")
    p.add_argument("--space", default="fbnet", help="a layer-wise space (fbnet)")
    p.add_argument("--space-option", action="append", type=space_option, metavar="KEY=VALUE",
                   help="a setting of the space (repeatable), e.g. resolution=32 width_mult=0.25")
    p.add_argument("--out", type=output_file(), required=True,
                   help="the lookup-table CSV to write (latency.lut: PATH reads it)")
    p.add_argument("--check", type=int, default=20, metavar="N",
                   help="then measure N sampled architectures whole and report the table's MAPE and SRCC (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--min-repeat-ms", type=float, default=20.0, help="each timed repeat lasts at least this long")
    p.set_defaults(func=cmd_lut)
