"""What a user sees in the MLflow UI for a finished run, as screenshots from a real browser.

Serves the run's store with ``mlflow server`` on 127.0.0.1 and opens it in headless Chromium (a fresh
profile per page, so each is what a first-time visitor sees), taking four screenshots:

1. ``landing.png``: the experiment's page as a click on its name in the experiment list opens it;
2. ``runs.png``: the link ``hwnas run`` prints (the sweep's saved runs view: its device runs with their
   figures);
3. ``device_run.png``: one device's run (a measured device if the sweep has one), its overview;
4. ``front.png``: that run's front plot in the run's artifact viewer.

Chromium: Debian's ``chromium`` package (``apt-get install -y chromium``); ``--chromium`` names another
binary. Prints each page's address, file and size; exit 1 when the server or the browser fails.

    python bench/mlflow_screens.py runs/quickstart --out /tmp/screens
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow_server import call, loopback_server, search_runs  # noqa: E402

from orchestrator.report import safe_name  # noqa: E402


def screenshot(chromium: str, url: str, out: Path, size: tuple[int, int], wait_ms: int,
               timeout: float = 150) -> float:
    """One page in a fresh headless profile (the browser's whole process group killed after ``timeout``
    seconds); returns the seconds it took."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                 f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                                 f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run dir of `hwnas run` (tracking on)")
    ap.add_argument("--out", default="mlflow_screens", help="folder for the PNGs")
    ap.add_argument("--chromium", default=None, help="browser binary (default: chromium on PATH)")
    ap.add_argument("--size", default="1600x1000", help="window WIDTHxHEIGHT")
    ap.add_argument("--wait-ms", type=int, default=20000, help="virtual time the page gets to load")
    args = ap.parse_args()
    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium on PATH: apt-get install -y chromium (or --chromium BINARY)")
        return 1
    size = tuple(int(v) for v in args.size.split("x"))
    run = Path(args.run).resolve()
    state = json.loads((run / "pipeline.json").read_text())
    uri = state.get("tracking_uri") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    experiment = state["config"]["tracking"]["experiment"]
    summary = json.loads((run / "summary.json").read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with loopback_server(uri) as base:
        if base is None:
            print("mlflow server did not come up in 120 s")
            return 1
        exp = call(base, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")["experiment"]
        eid = exp["experiment_id"]
        view = summary.get("mlflow_view")
        if not view:  # a run recorded before hwnas saved a view: save it now
            from orchestrator.tracking import Tracker, save_runs_view

            view = save_runs_view(Tracker(uri, experiment), run, summary.get("name", run.name))
        kids = [r for r in search_runs(base, eid, filter=f"tags.`hwnas.run_dir` = '{run}'")
                if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        kinds = {t["target"]: t.get("kind") for t in summary["targets"]}

        def device(r: dict) -> str:
            return next(t["value"] for t in r["data"]["tags"] if t["key"] == "hwnas.device")

        kids.sort(key=lambda r: (kinds.get(device(r)) != "measured", device(r)))
        pages = [("landing", f"{base}/#/experiments/{eid}"), ("runs", f"{base}/{view}")]
        if kids:
            rid, dev = kids[0]["info"]["run_id"], device(kids[0])
            pages += [("device_run", f"{base}/#/experiments/{eid}/runs/{rid}?workflowType=machine_learning"),
                      ("front", f"{base}/#/experiments/{eid}/runs/{rid}/artifacts/{safe_name(dev)}.png"
                                f"?workflowType=machine_learning")]
        else:
            print("PROBLEM: no device runs for this run dir")
        bad = 0
        for name, url in pages:
            png = out / f"{name}.png"
            png.unlink(missing_ok=True)
            secs = screenshot(chromium, url, png, size, args.wait_ms)
            if not png.is_file():  # a page that hung (a loaded host, a server still starting): once more
                secs += screenshot(chromium, url, png, size, args.wait_ms)
            ok = png.is_file() and png.stat().st_size > 0
            bad += not ok
            print(f"{name:11s} {url[len(base):]:<100s} {png} "
                  + (f"{png.stat().st_size / 1024:.0f} KB in {secs:.1f}s" if ok else "NOT WRITTEN"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
