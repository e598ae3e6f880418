"""``hwnas compare RUN [RUN ...]``: the fronts of several finished runs (seeds, configs, proxies) overlaid per
device, with their figures side by side; written as PNG + CSV + JSON and, where the first run tracks to
MLflow, as one comparison run there.

Each device's panel draws every run's chosen front as a step line at the device's true latency where every
member's is known (a table, a simulator), else at the run's predicted latency (the axis label says which);
the legend gives each run's accuracy source, decision and hv_ratio. (Each run's own front PNG also shows the
true front.) Runs whose accuracies come from different sources (a supernet on digits, a CIFAR-10 table) are
compared with a warning: their accuracy axes are not the same quantity.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError
from orchestrator.report import read_front, read_record, read_summary, safe_name

log = logging.getLogger(__name__)

FIGURES = ("decision", "srcc_k", "hv_ratio", "pool_hv_ratio", "acc_loss_q50", "unserved_budgets", "front_size",
           "n_measurements")
MAX_PANELS = 16


@dataclass
class RunView:
    label: str
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def target(self, device: str) -> dict[str, Any] | None:
        return next((t for t in self.summary.get("targets", []) if t["target"] == device), None)

    @property
    def accuracy_source(self) -> str:
        """Where the run's accuracies come from, from its config: ``table acc_cifar10``, ``supernet nb201 on
        digits``, ``predictor (mlp) of supernet nb201 on digits``; ``unknown`` without a config."""
        acc = self.config.get("accuracy") or {}
        if not acc:
            return "unknown"
        from orchestrator.pipeline.accuracy import SOURCES

        source = acc.get("source", "supernet")
        sup = acc.get("supernet") or {}
        data = (sup.get("data") or {}).get("name", "digits")
        net = f"supernet {(self.config.get('space') or {}).get('name', '?')} on {data}"
        return SOURCES.get(source).label(acc, net) if source in SOURCES else source  # each source names itself

    def front(self, device: str) -> list[dict[str, Any]]:
        return read_front(self.path, device)


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunView]:
    """Every run dir must hold a finished run; labels are the dir names (with the parent where two clash)."""
    if len(run_dirs) < 2:
        raise ConfigError("hwnas compare needs at least two run directories")
    runs, problems, seen = [], [], {}
    for d in map(Path, run_dirs):
        if d.resolve() in seen:  # the same run twice would be drawn as two runs with one front
            problems.append(f"{d}: given twice (also as {seen[d.resolve()]}); name each run once")
            continue
        seen[d.resolve()] = d
        s = d / "summary.json"
        if not s.is_file():
            problems.append(f"{d}: no summary.json (not a finished hwnas run; finish it with hwnas run CONFIG "
                            f"--resume)")
            continue
        cfg_file = d / "pipeline.json"
        config = read_record(cfg_file, dict).get("config", {}) if cfg_file.is_file() else {}
        runs.append(RunView(d.name, d.resolve(), read_summary(s), config))
    if problems:
        raise ConfigError("cannot compare:\n" + "\n".join(f"  {p}" for p in problems))
    names = [r.label for r in runs]
    for r in runs:
        if names.count(r.label) > 1:
            r.label = f"{r.path.parent.name}/{r.path.name}"
    return runs


def shared_devices(runs: Sequence[RunView], wanted: Sequence[str] | None) -> list[str]:
    """The devices to compare: ``wanted`` (each must be a target of every run), else those every run has."""
    per_run = [[t["target"] for t in r.summary.get("targets", [])] for r in runs]
    if wanted:
        problems = [f"{d!r} is not a target of {r.label} (its targets: {', '.join(p[:8])}"
                    f"{' ...' if len(p) > 8 else ''})" for d in wanted for r, p in zip(runs, per_run, strict=True)
                    if d not in p]
        if problems:
            raise ConfigError("--device: " + "; ".join(problems))
        return list(dict.fromkeys(wanted))
    common = [d for d in per_run[0] if all(d in p for p in per_run[1:])]
    if not common:
        raise ConfigError("these runs have no target device in common; name devices with --device")
    return common


def comparison_rows(runs: Sequence[RunView], devices: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (device, run) with the run's figures for that device (missing ones None)."""
    rows = []
    for d in devices:
        for r in runs:
            t = r.target(d) or {}
            rows.append({"device": d, "run": r.label, "proxy": r.summary.get("proxy"),
                         "accuracy_source": r.accuracy_source, **{k: t.get(k) for k in FIGURES},
                         "unserved_q50": t.get("unserved_q50")})
    return rows


def _front_xy(front: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, bool]:
    true = [r.get("true_ms") for r in front]
    full = bool(front) and all(v is not None for v in true)
    lat = np.array(true if full else [r["predicted_ms"] for r in front], dtype=float)
    acc = np.array([r["accuracy"] for r in front], dtype=float)
    order = np.argsort(lat, kind="stable")
    return lat[order], acc[order], full


def plot_comparison(path: Path, runs: Sequence[RunView], devices: Sequence[str]) -> Path:
    from orchestrator.report import _plt

    plt = _plt()
    shown = list(devices)[:MAX_PANELS]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.5 * rows), dpi=100, squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, d in zip(axes.ravel(), shown, strict=False):
        all_true = True
        for j, r in enumerate(runs):
            lat, acc, full = _front_xy(r.front(d))
            all_true &= full
            t = r.target(d) or {}
            hv = t.get("hv_ratio")
            label = f"{r.label} [{r.accuracy_source}]: {t.get('decision', '?')}" + (
                f", hv {hv:.3f}" if isinstance(hv, float) else "")
            if len(lat):
                ax.step(lat, np.maximum.accumulate(acc), where="post", c=colors(j % 10), lw=1.3, label=label)
                ax.plot(lat, acc, "o", ms=3, c=colors(j % 10))
        ax.set_title(d, fontsize=10)
        ax.set_xlabel(f"latency (ms, {'true' if all_true else 'predicted'})")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    more = f" (first {MAX_PANELS} of {len(devices)} devices)" if len(devices) > MAX_PANELS else ""
    mixed = mixed_sources(runs)
    fig.suptitle(f"fronts of {len(runs)} runs{more}" + (
        "\nWARNING: accuracies from different sources\n(in [ ]): not comparable" if mixed else ""),
        color="tab:red" if mixed else "black", fontsize=10 if mixed else 12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def mixed_sources(runs: Sequence[RunView]) -> list[str]:
    """``run: source`` for every run when the runs' accuracy sources differ, else an empty list."""
    if len({r.accuracy_source for r in runs}) < 2:
        return []
    return [f"{r.label}: {r.accuracy_source}" for r in runs]


def format_comparison(rows: Sequence[dict[str, Any]]) -> str:
    head = f"{'device':14s} {'run':20s} {'accuracy from':24s} {'decision':9s} {'srcc_k':>7s} {'hv':>7s} " \
           f"{'pool_hv':>7s} {'loss_q50':>8s} {'unserved':>8s} {'front':>5s}"
    out = [head, "-" * len(head)]

    def f(v: Any, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    for r in rows:
        loss = "unserved" if r.get("unserved_q50") == 1.0 else f(r['acc_loss_q50'], '8.2f')
        out.append(f"{r['device'][:14]:14s} {r['run'][:20]:20s} {r.get('accuracy_source', '-')[:24]:24s} "
                   f"{f(r['decision'], '9s')} {f(r['srcc_k'], '7.3f')} "
                   f"{f(r['hv_ratio'], '7.3f')} {f(r['pool_hv_ratio'], '7.3f')} {loss:>8s} "
                   f"{f(r['unserved_budgets'], '8.0f')} {f(r['front_size'], '5d')}")
    return "\n".join(out)


def mean_by_run(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            out.setdefault(r["run"], []).append(float(v))
    return {k: float(np.mean(v)) for k, v in out.items()}


def compare(run_dirs: Sequence[str | Path], devices: Sequence[str] | None = None, out: str | Path | None = None,
            track: bool = True) -> tuple[Path, str]:
    """Write the comparison (compare.png, compare.csv, compare.json) to ``out`` (default: next to the first
    run, ``compare-<run>-<run>...``) and, where the first run tracks to MLflow, a comparison run there.
    Returns the output dir and the printed table."""
    runs = load_runs(run_dirs)
    devs = shared_devices(runs, devices)
    mixed = mixed_sources(runs)
    if mixed:
        log.warning("compare: these runs' accuracies come from different sources (%s): their fronts' accuracy "
                    "axes are not the same quantity; compare runs of one source", "; ".join(mixed))
    out_dir = Path(out) if out else runs[0].path.parent / ("compare-" + "-".join(safe_name(r.label) for r in runs)
                                                           )[:120]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(runs, devs)
    with open(out_dir / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    means = {k: mean_by_run(rows, k) for k in ("hv_ratio", "acc_loss_q50")}
    (out_dir / "compare.json").write_text(json.dumps({"runs": [str(r.path) for r in runs], "devices": devs,
                                                      "rows": rows, "means": means}, indent=2, default=str))
    png = plot_comparison(out_dir / "compare.png", runs, devs)
    table = format_comparison(rows)
    if mixed:
        table = ("WARNING: accuracies from different sources (" + "; ".join(mixed) + "): the accuracy axes and "
                 "loss_q50 are not comparable across these runs\n\n" + table)
    if means["hv_ratio"]:
        table += "\n\nmean hv_ratio: " + ", ".join(f"{k} {v:.3f}" for k, v in means["hv_ratio"].items())
    if track:
        _track(runs, out_dir, png, means)
    return out_dir, table


def _track(runs: Sequence[RunView], out_dir: Path, png: Path, means: dict[str, dict[str, float]]) -> None:
    tracking = runs[0].config.get("tracking") or {}
    if not tracking.get("enabled", False):
        return
    from orchestrator.tracking import Tracker, run_tracking_uri

    tracker = Tracker(run_tracking_uri(runs[0].path, tracking.get("uri")), tracking.get("experiment", "hwnas"))
    run = tracker.client.create_run(tracker.experiment_id, run_name="compare: " + " vs ".join(r.label for r in runs),
                                    tags={"hwnas.kind": "compare", "hwnas.runs": " ".join(str(r.path) for r in runs)})
    rid = run.info.run_id
    tracker.metrics(rid, {f"{key}.{safe_name(k)}": v for key, m in means.items() for k, v in m.items()})
    for p in (png, out_dir / "compare.csv", out_dir / "compare.json"):
        tracker.artifact(rid, p)
    tracker.finish(rid)
    log.info("compare: MLflow run %s in experiment %s", rid, tracking.get("experiment", "hwnas"))
