"""How far each int8 runtime's network is from the fp32 PyTorch network, per architecture, on this host.

For random NB201 cells (and any named with ``--cell``) each int8 device builds its artefact exactly as it does to
measure latency (``prepare``: the seeded network of ``arch_network``, calibrated on the device's real images),
and the relative L2 error of its outputs against PyTorch's on the device's check images is printed, with the
share a tolerance would refuse. The tolerance is set out of the way here so every error is seen.

Devices: ``onnxrt-int8`` with 8-bit weights (``reduce_range`` off) and as "auto" decides on this CPU, and
``executorch-xnnpack`` at ``precision: int8`` (PT2E, XNNPACK's own int8 kernels). Needs ``pip install -e
.[runtimes]``.

Run: ``python bench/int8_error.py --cells 30`` (about 10 s per cell and device on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.latency.devices.catalog import get_device
from orchestrator.latency.devices.measured import arch_network
from orchestrator.latency.devices.runtimes import int8_saturates, relative_error
from search_spaces.nb201 import NB201Space

# the worst cell of turn 9's 100 (1.165 off with 8-bit weights on ONNX Runtime's fused kernels; docs/benchmarks.md)
WORST = "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|skip_connect~1|none~2|"

DEVICES = {
    "onnxrt-int8 8-bit": ("onnxrt-int8", {"reduce_range": False}),
    "onnxrt-int8 auto": ("onnxrt-int8", {"reduce_range": "auto"}),
    "executorch int8": ("executorch-xnnpack", {"precision": "int8"}),
}


def error(dev, space, arch_id: str) -> float:
    """The relative L2 error of ``dev``'s artefact for ``arch_id`` on its check images (the device's own
    comparison, ``RuntimeDevice.outputs``; ONNX Runtime's run returns a list of outputs)."""
    model = arch_network(space, space.parse(arch_id))
    run = dev.prepare(arch_id, model)
    _, chk = dev.images(arch_id)

    def first(b: np.ndarray) -> np.ndarray:
        out = run(b)
        return out[0] if isinstance(out, list) else out

    return relative_error(*dev.outputs(first, model, chk))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=30, help="random NB201 cells (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cell", action="append", default=[WORST], help="a cell to add (repeatable; the worst of "
                                                                     "turn 9 is always added)")
    ap.add_argument("--devices", default=",".join(DEVICES), help=f"comma-separated of {list(DEVICES)}")
    ap.add_argument("--tolerances", default="0.05,0.25", help="report the share above each")
    args = ap.parse_args()
    space = NB201Space(channels=16, cells_per_stage=1)  # runtimes5.yaml's deployed cells
    rng = np.random.default_rng(args.seed)
    cells = list(dict.fromkeys([*args.cell, *(space.arch_id(space.sample(rng)) for _ in range(args.cells))]))
    tols = [float(t) for t in args.tolerances.split(",")]
    print(f"int8_saturates() on this host: {int8_saturates()}; {len(cells)} cells (C=16, N=1)")
    rows = []
    for label in args.devices.split(","):
        kind, opts = DEVICES[label]
        dev = get_device(kind, space, **opts, tolerance=1e9, isolate=False)
        t0 = time.perf_counter()
        errs = np.array([error(dev, space, c) for c in cells])
        secs = time.perf_counter() - t0
        rows.append((label, errs, secs))
        print(f"{label}: worst cell {errs[0]:.4f}; done in {secs:.0f} s", flush=True)
    head = "| device | cells | median | p90 | max | worst-of-turn-9 cell | " + \
        " | ".join(f"> {t:g}" for t in tols) + " | seconds |"
    print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
    for label, errs, secs in rows:
        over = " | ".join(f"{int((errs > t).sum())} / {len(errs)}" for t in tols)
        print(f"| {label} | {len(errs)} | {np.median(errs):.4f} | {np.quantile(errs, 0.9):.4f} | {errs.max():.4f} | "
              f"{errs[0]:.4f} | {over} | {secs:.0f} |")


if __name__ == "__main__":
    main()
