"""Two fixed costs every `hwnas run` process pays, each measured side by side with what it was before turn 15,
alternating, every round in new processes (as a run starts):

- a local Ray started by ``orchestrator.ray_connect.connect(None)`` while another Ray holds the dashboard agent's
  fixed HTTP port 52365 (two runs at once; a test's `hwnas run` beside the test's own Ray): the agent on any
  free port (now) against Ray's default port (before: the agent retries its bind for 3.4 s, the raylet waits);
- eight simulated devices costing NB201's whole space (15,625 cells): the layer-profile stack read from the disk
  cache (now, from the second process on) against built in the process (before; ``HWNAS_CACHE_DIR=off``).

    python bench/startup.py --rounds 4
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

RAY = """
import sys, time
from orchestrator import ray_connect
if sys.argv[1] == "default-port":
    ray_connect._any_agent_port = lambda: (lambda: None)
t = time.perf_counter()
ray_connect.connect(None, 1, _temp_dir=sys.argv[2])
print(time.perf_counter() - t)
import ray
ray.shutdown()
"""

SIM = """
import time
from orchestrator.latency.devices.simulated import SimulatedDevice
from search_spaces.nb201 import NB201Space
space = NB201Space()
ids = [space.arch_id(a) for a in space.enumerate()]
t = time.perf_counter()
total = sum(float(SimulatedDevice(s, space).latency_ms(ids).sum()) for s in range(8))
print(time.perf_counter() - t, repr(total))
"""


def _run(code: str, args: list[str], env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code, *args], env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    held = socket.socket()
    try:
        held.bind(("0.0.0.0", 52365))
        held.listen(1)
        print("holding port 52365 (as another Ray's agent would)")
    except OSError:
        print("port 52365 already held here (another Ray): the case measured all the same")
    times: dict[str, list[float]] = {"any-port": [], "default-port": [], "sim-cached": [], "sim-built": []}
    totals: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="hwb", dir="/tmp") as tmp:
        cache = {**env, "HWNAS_CACHE_DIR": str(Path(tmp) / "cache")}
        _run(SIM, [], cache)  # fills the cache once
        for r in range(args.rounds):
            for mode in ("any-port", "default-port"):
                times[mode].append(float(_run(RAY, [mode, str(Path(tmp) / f"r{r}{mode[0]}")], env)[0]))
            for mode, e in (("sim-cached", cache), ("sim-built", {**env, "HWNAS_CACHE_DIR": "off"})):
                t, total = _run(SIM, [], e)
                times[mode].append(float(t))
                totals.add(total)
    held.close()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; latencies identical cached vs built: "
          f"{len(totals) == 1}")
    for name, t in times.items():
        print(f"  {name:12s}: {', '.join(f'{x:.2f}' for x in t)} s (median {np.median(t):.2f})")
    for now, before in (("any-port", "default-port"), ("sim-cached", "sim-built")):
        print(f"  {now} / {before}: median ratio "
              f"{np.median(np.array(times[now]) / np.array(times[before])):.2f}")


if __name__ == "__main__":
    main()
