"""How long simulated devices take to cost a whole space (the layer profile of every architecture), the cost each
`hwnas run` with simulated targets pays once per process; side by side with the pre-turn-13 profile (five arrays
and ``np.isin`` per architecture, kept here as the reference), which must give bit-identical profiles.

    python bench/sim_profile.py --rounds 6         # NB201's 15,625 cells
    python bench/sim_profile.py --n 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import orchestrator.latency.devices.simulated as sim
from search_spaces.costs import network_layers
from search_spaces.nb201 import NB201Space


def reference_profile(space, arch) -> sim.LayerProfile:
    """The profile as computed before turn 13 (one array per field, np.isin per architecture)."""
    layers = network_layers(space, arch)
    types = np.array([sim._T[x.kind] for x in layers], dtype=np.int64)
    n_in = np.array([x.n_in for x in layers], dtype=float)
    n_out = np.array([x.n_out for x in layers], dtype=float)
    weights = np.array([x.weights for x in layers], dtype=float)
    macs = np.array([x.macs_per_out for x in layers], dtype=float)
    compute = np.isin(types, [sim._T["conv"], sim._T["dwconv"], sim._T["linear"]])
    ewise = types == sim._T["elementwise"]
    flops = np.where(compute, 2.0 * n_out * macs, n_in)
    moved = np.where(compute, 4.0 * (n_in + n_out + weights), np.where(ewise, 8.0 * n_in, 4.0 * (n_in + n_out)))
    return sim.LayerProfile(types, flops, moved)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, help="first N cells of the space (default: all)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of each implementation")
    args = ap.parse_args()
    space = NB201Space()
    ids = [space.arch_id(a) for a in space.enumerate()][: args.n]
    current = sim._profile
    times: dict[str, list[float]] = {"reference": [], "current": []}
    stacked = {}
    try:
        for _ in range(args.rounds):
            for name, fn in (("reference", reference_profile), ("current", current)):
                sim._profile = fn
                sim.clear_profile_cache()
                t0 = time.perf_counter()
                stacked[name] = sim.profile_bank(space).stacked(ids)[0]
                times[name].append(time.perf_counter() - t0)
    finally:
        sim._profile = current
        sim.clear_profile_cache()
    a, b = stacked["reference"], stacked["current"]
    same = all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("types", "flops", "bytes"))
    print(f"{len(ids)} NB201 cells, {len(b.types)} layers; profiles identical: {same}")
    for name, t in times.items():
        print(f"  {name:9s}: {', '.join(f'{x:.2f}' for x in t)} s")
    print(f"  ratio current/reference: median {np.median(times['current']) / np.median(times['reference']):.2f}, "
          f"best of each {min(times['current']) / min(times['reference']):.2f}")


if __name__ == "__main__":
    main()
