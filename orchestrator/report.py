"""Pareto sets on disk (CSV + JSON), plots (PNG) and the text tables of `hwnas report`."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError

FRONT_FIELDS = ("arch", "accuracy", "predicted_ms", "measured_ms", "true_ms", "proxy_ms")


def write_front(rows: Sequence[Mapping[str, Any]], stem: Path) -> tuple[Path, Path]:
    """``stem``.csv and ``stem``.json with one row per front member (missing values blank / null)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(r.get(k), float) and math.isnan(r[k]) else r.get(k)) for k in FRONT_FIELDS}
             for r in rows]
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FRONT_FIELDS)
        w.writeheader()
        for r in clean:
            w.writerow({k: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    json_path.write_text(json.dumps(clean, indent=2))
    return csv_path, json_path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_target_front(path: Path, device: str, accuracy: np.ndarray, latency: np.ndarray, front: Sequence[int],
                      proxy_front: Sequence[int], *, latency_label: str, decision: str,
                      measured: Mapping[int, float] | None = None, true_front: Sequence[int] | None = None) -> Path:
    """Candidates at the target's latency; the target's front; the proxy's front overlaid."""
    path.write_bytes(render_target_front(device, accuracy, latency, front, proxy_front, latency_label=latency_label,
                                         decision=decision, measured=measured, true_front=true_front))
    return path


def render_target_front(device: str, accuracy: np.ndarray, latency: np.ndarray, front: Sequence[int],
                        proxy_front: Sequence[int], *, latency_label: str, decision: str,
                        measured: Mapping[int, float] | None = None,
                        true_front: Sequence[int] | None = None) -> bytes:
    """The PNG of :func:`plot_target_front`, as bytes (rendered where the data is, e.g. in a Ray task)."""
    import io

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    ax.scatter(latency, accuracy, s=8, c="0.75", label="candidates")
    pf = sorted(proxy_front, key=lambda i: latency[i])
    ax.plot(latency[pf], accuracy[pf], "s--", ms=4, c="tab:orange", lw=1, label="proxy's front")
    f = sorted(front, key=lambda i: latency[i])
    ax.plot(latency[f], accuracy[f], "o-", ms=4, c="tab:blue", lw=1.3, label=f"target front ({decision})")
    if true_front is not None:
        tf = sorted(true_front, key=lambda i: latency[i])
        ax.plot(latency[tf], accuracy[tf], ":", c="tab:green", lw=1.3, label="true front")
    if measured:
        idx = list(measured)
        ax.scatter([measured[i] for i in idx], accuracy[idx], marker="x", s=40, c="tab:red",
                   label="front measured on device")
    ax.set_xlabel(latency_label)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{device}: Pareto front")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)  # fixed: tight_layout costs a redraw
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_hv_history(path: Path, history: Sequence[tuple[int, float]], title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=110)
    if history:
        n, hv = zip(*history, strict=True)
        ax.plot(n, hv, "-", c="tab:blue")
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume (accuracy x latency)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def format_summary(summary: Mapping[str, Any]) -> str:
    """The per-target table of a finished (or partly finished) sweep."""
    rows = summary.get("targets", [])
    head = (f"{'target':<14}{'kind':<11}{'k':>4}{'srcc_k':>8}  {'decision':<9}{'method':<10}{'front':>6}"
            f"{'hv_ratio':>9}{'(reuse)':>9}{'igd':>7}{'acc_loss@q50':>13}{'front_mape%':>12}")
    lines = [f"run {summary.get('name')}: proxy {summary.get('proxy')}, {summary.get('n_candidates')} candidates, "
             f"{len(rows)} targets", head]
    for r in rows:
        lines.append(f"{r['target']:<14}{r['kind']:<11}{r['k']:>4}{_fmt(r['srcc_k']):>8}  {r['decision']:<9}"
                     f"{r['method']:<10}{r['front_size']:>6}{_fmt(r.get('hv_ratio')):>9}"
                     f"{_fmt(r.get('hv_ratio_reuse')):>9}{_fmt(r.get('igd')):>7}"
                     f"{_fmt(r.get('acc_loss_q50'), '.2f'):>13}"
                     f"{_fmt(r.get('front_mape_pct'), '.1f'):>12}")
    return "\n".join(lines)


def format_front(device: str, rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"{device}: {len(rows)} front members",
             f"  {'accuracy':>9}{'predicted_ms':>13}{'measured_ms':>12}{'true_ms':>10}  arch"]
    for r in rows:
        lines.append(f"  {_fmt(r.get('accuracy'), '.2f'):>9}{_fmt(r.get('predicted_ms'), '.3f'):>13}"
                     f"{_fmt(r.get('measured_ms'), '.3f'):>12}{_fmt(r.get('true_ms'), '.3f'):>10}  {r['arch']}")
    return "\n".join(lines)


def report(run_dir: str | Path, fronts: bool = True) -> str:
    """The text report of a run directory (what `hwnas report RUN` prints)."""
    d = Path(run_dir)
    f = d / "summary.json"
    if not f.is_file():
        raise ConfigError(f"{d} has no summary.json: not a finished hwnas run (run 'hwnas run CONFIG' or "
                          f"'hwnas run CONFIG --resume' to finish it)")
    summary = json.loads(f.read_text())
    parts = [format_summary(summary)]
    if fronts:
        proxy = d / "fronts" / "proxy.json"
        if proxy.is_file():
            parts.append(format_front(f"proxy {summary.get('proxy')}", json.loads(proxy.read_text())))
        for r in summary.get("targets", []):
            p = d / "fronts" / f"{safe_name(r['target'])}.json"
            if p.is_file():
                parts.append(format_front(r["target"], json.loads(p.read_text())))
    return "\n\n".join(parts)


def safe_name(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


