"""How long opening a NEW SQLite MLflow store takes, MLflow's own creation (every schema migration) side by side
with a copy of hwnas's template (``orchestrator/store_template.py``), alternating in one process; each through
hwnas's ``Tracker`` (as ``hwnas run`` opens its store: lock, create, experiment). The first seeded store also
makes the template (its time printed apart).

    python bench/store_template.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.disk_cache import ENV


def open_new_store(work: Path, label: str, cache: str) -> float:
    from orchestrator.tracking import Tracker

    os.environ[ENV] = cache
    t0 = time.perf_counter()
    Tracker(f"sqlite:///{work / label / 'mlflow.db'}", "bench")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import mlflow

    with tempfile.TemporaryDirectory(prefix="hwnas-store-bench") as d:
        work = Path(d)
        cache = str(work / "cache")
        first = open_new_store(work, "first", cache)
        print(f"MLflow {mlflow.__version__}; the first seeded store, making the template: {first:.2f} s")
        plain, seeded = [], []
        for r in range(args.rounds):
            plain.append(open_new_store(work, f"plain{r}", "off"))
            seeded.append(open_new_store(work, f"seeded{r}", cache))
            print(f"round {r + 1}: MLflow's creation {plain[-1]:.2f} s, from the template {seeded[-1]:.2f} s")
        ratio = statistics.median(s / p for s, p in zip(seeded, plain, strict=True))
        print(f"median: MLflow's creation {statistics.median(plain):.2f} s, from the template "
              f"{statistics.median(seeded):.2f} s; median ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
