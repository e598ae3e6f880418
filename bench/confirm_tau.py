"""Does the one-shot ranking hold when the chosen architectures are trained from scratch? And what do
concurrent Ray Tune trials buy?

Runs the Quickstart pipeline (digits, NB201 supernet, 15 targets; MLflow off) into a temporary dir, then
`confirm` on the union of its fronts (at least ``--min-archs`` architectures; ASHA off: every architecture
gets all ``--epochs``, so accuracies compare), once with 1 concurrent trial and once with 2 on the same
architectures. Prints Kendall tau between one-shot and from-scratch accuracy, and the wall times.

    python bench/confirm_tau.py [--epochs 4] [--min-archs 20]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--min-archs", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from orchestrator.config import parse_config
    from orchestrator.confirm import ConfirmConfig, confirm, front_archs
    from orchestrator.pipeline import run_pipeline

    work = Path(tempfile.mkdtemp(prefix="hwnas-confirm-"))
    try:
        data = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
        data.update(output_dir=str(work / "runs"), tracking={"enabled": False})
        cfg = parse_config(data)
        run_pipeline(cfg, progress=False)
        run = cfg.run_dir()
        top = next((t for t in range(1, 50) if len(front_archs(run, t)) >= args.min_archs), 0)
        n = len(front_archs(run, top))
        print(f"{n} architectures (the {top or 'all'} most accurate of every front), {args.epochs} epochs each")
        for conc in (1, 2):
            c = ConfirmConfig(top=top, epochs=args.epochs, grace_period=args.epochs, max_concurrent=conc)
            out = confirm(run, c, name=f"confirm_c{conc}")
            print(f"{conc} concurrent: {out['seconds']:.0f}s, Kendall tau one-shot vs from scratch "
                  f"{out['kendall_tau']:.3f} over {out['n'] - out['n_errors']} architectures", flush=True)
            if conc == 1:
                rows = sorted(out["architectures"], key=lambda r: -r["one_shot"])
                for r in rows:
                    print(f"  one-shot {r['one_shot']:6.2f}  scratch {r['confirmed']:6.2f}  {r['arch']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
