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
from search_spaces.costs import COSTS

FRONT_FIELDS = ("arch", "accuracy", "accuracy_from", "predicted_ms", "measured_ms", "true_ms", "proxy_ms")
INT8_FIELDS = ("accuracy_int8", "int8_drop", "int8_error")  # where int8 accuracy was evaluated
# (orchestrator.supernet.int8; int8_error: why a member's evaluation failed, blank where it did not)


def write_front(rows: Sequence[Mapping[str, Any]], stem: Path) -> tuple[Path, Path]:
    """``stem``.csv and ``stem``.json with one row per front member (missing values blank / null)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fields = [*FRONT_FIELDS, *(k for k in (*INT8_FIELDS, *COSTS) if any(k in r for r in rows))]  # where computed
    clean = [{k: (None if isinstance(r.get(k), float) and math.isnan(r[k]) else r.get(k)) for k in fields}
             for r in rows]
    csv_path, json_path = stem.parent / f"{stem.name}.csv", stem.parent / f"{stem.name}.json"  # v1.5: no suffix
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
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


def render_target_front(title: str, accuracy: np.ndarray, latency: np.ndarray, front: Sequence[int],
                        proxy_front: Sequence[int], *, latency_label: str, decision: str,
                        measured: Mapping[int, float] | None = None,
                        true_front: tuple[np.ndarray, np.ndarray] | None = None) -> bytes:
    """A target's front as PNG bytes (rendered where the data is, e.g. in a Ray task): the options it chose
    from at its latency, its front as a step line, the proxy's front, the true front over the known domain."""
    import io

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    ax.scatter(latency, accuracy, s=8, c="0.75", label="options")
    if true_front is not None:
        ta, tl = true_front
        ax.step(tl, ta, ":", where="post", c="tab:green", lw=1.5, label="true front (known domain)")
    pf = sorted(proxy_front, key=lambda i: latency[i])
    ax.step(latency[pf], accuracy[pf], "--", where="post", c="tab:orange", lw=1, label="proxy's front (reuse)")
    ax.plot(latency[pf], accuracy[pf], "s", ms=3, c="tab:orange")
    f = sorted(front, key=lambda i: latency[i])
    ax.step(latency[f], accuracy[f], "-", where="post", c="tab:blue", lw=1.3, label=f"chosen front ({decision})")
    ax.plot(latency[f], accuracy[f], "o", ms=4, c="tab:blue")
    if measured:
        idx = list(measured)
        ax.scatter([measured[i] for i in idx], accuracy[idx], marker="x", s=40, c="tab:red",
                   label="front measured on device")
    ax.set_xlabel(latency_label)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
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


def plot_projections(path: Path, accuracy: np.ndarray, axes: Mapping[str, np.ndarray], front: Sequence[int],
                     title: str) -> Path:
    """A front in several objectives as 2-D projections: accuracy against each other objective, every
    candidate grey, the (all-objective) front as a step line."""
    plt = _plt()
    fig, panels = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 3.6), dpi=110, squeeze=False)
    for ax, (name, x) in zip(panels[0], axes.items(), strict=True):
        ax.scatter(x, accuracy, s=8, c="0.75", label="candidates")
        f = sorted(front, key=lambda i: x[i])
        fx, fa = x[f], np.maximum.accumulate(accuracy[f]) if len(f) else accuracy[f]
        ax.step(fx, fa, where="post", c="tab:blue", lw=1.2)
        ax.scatter(x[f], accuracy[f], s=16, c="tab:blue", label="front (all objectives)")
        ax.set_xlabel(name)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    panels[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


# (header, summary key, format, width); groups shown only when some target has their first key
_COLUMNS: tuple[tuple[tuple[str, str, str, int], ...], ...] = (
    (("target", "target", "", -14), ("kind", "kind", "", -10), ("k", "k", "d", 3), ("srcc_k", "srcc_k", ".3f", 7),
     ("lb", "srcc_lb", ".3f", 6), ("decision", "decision", "", -9), ("method", "method", "", -9),
     ("front", "front_size", "d", 5)),
    (("hv_ratio", "hv_ratio", ".3f", 9), ("pool", "pool_hv_ratio", ".3f", 6), ("reuse_hv", "hv_ratio_reuse", ".3f", 8),
     ("unserved", "unserved_budgets", ".0f", 9), ("loss@q50", "acc_loss_q50", ".2f", 9)),
    (("per-dev hv", "per_device_hv_ratio", ".3f", 11), ("evals", "per_device_evaluated", ".0f", 6),
     ("s", "per_device_s", ".1f", 6)),
    (("mape%", "front_mape_pct", ".1f", 6), ("retest", "retest_srcc", ".3f", 7)),
)


UNDEFINED_WHEN_NAN = frozenset({"srcc_k"})  # NaN there is an SRCC against a constant: undefined, not "no truth"


def _cell(v: Any, fmt: str, width: int, key: str = "", unserved: bool = False) -> str:
    text = "unserved" if unserved else _fmt(v, fmt) if fmt else ("-" if v is None else str(v))
    if key in UNDEFINED_WHEN_NAN and isinstance(v, float) and math.isnan(v):
        text = "undef"
    return f"{text:<{-width}}" if width < 0 else f"{text:>{width}}"


def format_summary(summary: Mapping[str, Any]) -> str:
    """The per-target table of a finished (or partly finished) sweep. Figures against the truth (hv_ratio
    ...) exist for targets whose latency is known (tables, simulators); measured devices get the error of
    their measured front (mape%) and their test-retest SRCC; per-dev: the per-device-search baseline.
    ``reuse_hv`` is the hv_ratio of plain reuse (the proxy search's front as is), whatever the decision;
    ``loss@q50`` reads "unserved" where nothing chosen fits that budget."""
    rows = summary.get("targets", [])
    cols = [c for group in _COLUMNS for c in group
            if group is _COLUMNS[0] or any(r.get(group[0][1]) is not None for r in rows)]
    lines = [f"run {summary.get('name')}: proxy {summary.get('proxy')}, {summary.get('n_candidates')} candidates, "
             f"{len(rows)} targets",
             " ".join(f"{h:<{-w}}" if w < 0 else f"{h:>{w}}" for h, _, _, w in cols)]
    for r in rows:  # a loss at a budget nothing chosen fits is the whole accuracy: say "unserved" instead
        lines.append(" ".join(_cell(r.get(key), fmt, w, key, key.startswith("acc_loss_q")
                                    and r.get("unserved_" + key[len("acc_loss_"):]) == 1.0)
                              for _, key, fmt, w in cols))
    flagged = summary.get("unreliable_targets") or []
    if flagged:
        lines.append(f"UNRELIABLE measurements (test-retest SRCC < 0.9): {', '.join(flagged)}; their fronts rank "
                     f"noise: measure on an idle machine or with more repeats")
    return "\n".join(lines)


def format_front(device: str, rows: Sequence[Mapping[str, Any]]) -> str:
    costs = [c for c in COSTS if any(r.get(c) is not None for r in rows)]  # where the run computed them
    lines = [f"{device}: {len(rows)} front members",
             f"  {'accuracy':>9} {'from':<10}{'predicted_ms':>13}{'measured_ms':>12}{'true_ms':>10}"
             + "".join(f"{c:>12}" for c in costs) + "  arch"]
    for r in rows:
        lines.append(f"  {_fmt(r.get('accuracy'), '.2f'):>9} {r.get('accuracy_from') or '-':<10}"
                     f"{_fmt(r.get('predicted_ms'), '.3f'):>13}"
                     f"{_fmt(r.get('measured_ms'), '.3f'):>12}{_fmt(r.get('true_ms'), '.3f'):>10}"
                     + "".join(f"{_fmt(r.get(c), '.4g'):>12}" for c in costs) + f"  {r['arch']}")
    return "\n".join(lines)


def report(run_dir: str | Path, fronts: bool = True) -> str:
    """The text report of a run directory (what `hwnas report RUN` prints)."""
    d = Path(run_dir)
    f = d / "summary.json"
    if not d.is_dir():
        raise ConfigError(f"{d} {'is a file, not a run dir' if d.exists() else 'does not exist'}: give the run dir "
                          f"'hwnas run' printed (<output_dir>/<name>, e.g. runs/quickstart)")
    if not f.is_file():
        raise ConfigError(f"{d} has no summary.json: not a finished hwnas run (run 'hwnas run CONFIG' or "
                          f"'hwnas run CONFIG --resume' to finish it)")
    summary = read_summary(f)
    parts = [format_summary(summary)]
    if fronts:
        proxy = d / "fronts" / "proxy.json"
        if proxy.is_file():
            parts.append(format_front(f"proxy {summary.get('proxy')}", read_record(proxy, list)))
        for r in summary.get("targets", []):
            parts.append(format_front(r["target"], read_front(d, r["target"])))
    return "\n\n".join(parts)


def read_front(run_dir: Path, device: str) -> list[dict[str, Any]]:
    """The chosen front of ``device`` in a finished run dir (``fronts/<device>.json``: one object per member);
    a ConfigError naming the file where it is missing or damaged (a resume writes it again)."""
    p = run_dir / "fronts" / f"{safe_name(device)}.json"
    if not p.exists():
        raise ConfigError(f"{p} is missing (the front of target {device!r}); resume the run (hwnas run CONFIG "
                          f"--resume) to write it again")
    return read_record(p, list)


def read_record(path: Path, kind: type) -> Any:
    """The JSON record ``path`` of a run dir (a ``kind``: dict or list); a ConfigError naming the file and the
    way to write it again when it is damaged (truncated, not JSON, another shape)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(value, kind) or (kind is list and not all(isinstance(x, dict) for x in value)):
            raise ValueError(f"not a JSON {'object' if kind is dict else 'list of objects'}")
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise ConfigError(f"{path} is damaged ({type(e).__name__}: {str(e)[:120]}); delete it and resume the run "
                          f"(hwnas run CONFIG --resume) to write it again") from None
    return value


def read_summary(path: Path) -> dict[str, Any]:
    """A run's ``summary.json``, checked: an object whose ``targets`` is a list of rows, each naming its target."""
    summary = read_record(path, dict)
    rows = summary.get("targets", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("target"), str) for r in rows):
        raise ConfigError(f"{path} is damaged (its 'targets' are not rows that each name a target); delete it and "
                          f"resume the run (hwnas run CONFIG --resume) to write it again")
    return summary


def safe_name(name: str) -> str:
    """A device's file stem (``orchestrator.names.file_stem``): ``sim:0`` -> ``sim_0``, ``../x`` -> ``_.._x``."""
    from orchestrator.names import file_stem

    return file_stem(name)


