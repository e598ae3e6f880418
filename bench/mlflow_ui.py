"""What the MLflow UI shows for a finished run, read through the endpoints the UI itself calls.

Serves the run's store with ``mlflow server`` on 127.0.0.1, then checks and prints: the UI's page is served;
the sweep's saved runs view (the link ``hwnas run`` prints) is an experiment tag; the sweep's parent run and one nested
run per target, with the figures a user looks for (decision, srcc_k, lower bound, hv_ratio, ...); the logged
models (exported fronts, loadable by URI); how long each answer took. This reads the UI's REST answers; for the
rendered pages (headless Chromium) see bench/mlflow_screens.py.

    python bench/mlflow_ui.py runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

from mlflow_server import call, loopback_server, search_runs

KEY_METRICS = ("srcc_k", "srcc_lb", "hv_ratio", "pool_hv_ratio", "acc_loss_q50", "unserved_budgets")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run dir of `hwnas run` (tracking on)")
    args = ap.parse_args()
    run = Path(args.run).resolve()
    state = json.loads((run / "pipeline.json").read_text())
    uri = state.get("tracking_uri") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    experiment = state["config"]["tracking"]["experiment"]
    summary = json.loads((run / "summary.json").read_text())
    problems: list[str] = []
    with loopback_server(uri) as base:
        if base is None:
            print("mlflow server did not come up in 120 s")
            return 1
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{base}/", timeout=30) as r:
            page = r.read().decode(errors="replace")
        t_page = time.perf_counter() - t0
        if "<div id=\"root\"" not in page and "MLflow" not in page:
            problems.append("the UI's page was not served")
        exp = call(base, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")["experiment"]
        tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        kind = tags.get("mlflow.experimentKind", "(none)")
        view = summary.get("mlflow_view", "")
        key = view.split("viewStateShareKey=")[-1].split("&")[0] if view else ""
        if not key or f"mlflow.sharedViewState.{key}" not in tags:
            problems.append("no saved runs view for this sweep: the UI opens on MLflow 3's GenAI views")
        t0 = time.perf_counter()
        runs = search_runs(base, exp["experiment_id"], filter=f"tags.`hwnas.run_dir` = '{run}'")
        t_runs = time.perf_counter() - t0
        tagged = [{**r, "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
                   "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])}} for r in runs]
        parents = [r for r in tagged if "mlflow.parentRunId" not in r["tags"]]
        kids = [r for r in tagged if "mlflow.parentRunId" in r["tags"]]
        t0 = time.perf_counter()
        models = call(base, "/ajax-api/2.0/mlflow/logged-models/search",
                      {"experiment_ids": [exp["experiment_id"]], "max_results": 100}).get("models", [])
        t_models = time.perf_counter() - t0
    want = {t["target"] for t in summary["targets"]}
    got = {r["tags"].get("hwnas.device") for r in kids}
    if len(parents) != 1:
        problems.append(f"{len(parents)} parent runs for this run dir (want 1)")
    if got != want:
        problems.append(f"nested runs {sorted(got)} != targets {sorted(want)}")
    print(f"UI page served in {t_page:.2f}s; experiment {experiment!r} kind {kind}")
    print(f"runs table: {len(parents)} parent + {len(kids)} nested runs in {t_runs:.2f}s")
    print(f"{'device':14s} {'status':9s} {'decision':9s} " + " ".join(f"{m:>14s}" for m in KEY_METRICS))
    for r in sorted(kids, key=lambda r: r["tags"].get("hwnas.device", "")):
        vals = " ".join(f"{r['metrics'][m]:14.3f}" if m in r["metrics"] else f"{'-':>14s}" for m in KEY_METRICS)
        print(f"{r['tags'].get('hwnas.device', '?')[:14]:14s} {r['info']['status']:9s} "
              f"{r['tags'].get('decision', '-'):9s} {vals}")
    uris = {r["tags"]["hwnas.device"]: v for r in kids for k, v in r["tags"].items() if k.startswith("model_uri.")}
    print(f"logged models: {len(models)} in {t_models:.2f}s; device runs with a model URI: "
          + (", ".join(f"{d} {u}" for d, u in uris.items()) or "none"))
    for p in problems:
        print(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
