"""Records: the run dir's files (candidates, fronts, plots, per-target JSON, summary) and MLflow (one parent
run per sweep, one nested run per target). Only the driver writes them."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.latency.table import LatencyTable
from orchestrator.pipeline.accuracy import SOURCES
from orchestrator.pipeline.context import STATE_FILE, Context, atomic_write, public_config
from orchestrator.report import plot_hv_history, plot_projections, safe_name, write_front
from orchestrator.search.driver import Candidate, extra_matrix, hypervolume_history
from orchestrator.search.pareto import hypervolume_nd
from orchestrator.sweep import SweepShared, TargetReport, front_of, render
from orchestrator.tracking import package_versions, save_runs_view

SUMMARY_FILE = "summary.json"


def record_start(ctx: Context) -> None:
    t, parent = ctx.tracker, ctx.tracker.parent_id
    t.params(parent, {"config": public_config(ctx.cfg)})
    t.tags(parent, {f"version.{k}": v for k, v in package_versions().items()}
           | {"seed": ctx.cfg.seed, "proxy": ctx.plan.proxy})
    t.artifact(parent, ctx.run_dir / STATE_FILE)
    save_runs_view(t, ctx.run_dir, ctx.cfg.name)  # the UI opens this sweep's device runs with their figures


def record_search(ctx: Context, found: Sequence[Candidate], pool: Sequence[Candidate]) -> None:
    """candidates.csv, the proxy's front, the hypervolume over trials."""
    parent = ctx.tracker.parent_id
    objectives = list(ctx.cfg.search.objectives)
    path = ctx.run_dir / "candidates.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["number", "arch_id", "accuracy", "latency_ms", *objectives, "feasible"])
        w.writeheader()
        for c in found:
            row = c.as_dict()
            row.update(zip(objectives, row.pop("extra"), strict=True))
            w.writerow(row)
    acc = np.array([c.accuracy for c in pool])
    lat = np.array([c.latency_ms for c in pool])
    extra = extra_matrix(pool)  # (n, 0) without extra objectives
    front = front_of(acc, lat, extra)
    label = SOURCES.get(ctx.cfg.accuracy.source).accuracy_from
    rows = [{"arch": pool[i].arch_id, "accuracy": float(acc[i]), "accuracy_from": label,
             "predicted_ms": float(lat[i]), "proxy_ms": float(lat[i]),
             **{o: float(v) for o, v in zip(objectives, extra[i], strict=True)}}
            for i in front]
    if objectives and front:
        ctx.tracker.metrics(parent, {"proxy_hypervolume_nd": front_volume(acc[front], lat[front], extra[front])})
        proj = plot_projections(ctx.run_dir / "fronts" / "proxy_projections.png", acc,
                                {"proxy latency (ms, predicted)": lat,
                                 **{o: extra[:, j] for j, o in enumerate(objectives)}}, front,
                                f"proxy {ctx.plan.proxy}: the front in {2 + len(objectives)} objectives")
        ctx.tracker.artifact(parent, proj, "proxy_search")
    csv_p, json_p = write_front(rows, ctx.run_dir / "fronts" / "proxy")
    all_acc = np.array([c.accuracy for c in found])
    all_lat = np.array([c.latency_ms for c in found])
    hist = hypervolume_history(found, float(all_acc.min()) - 1e-6, float(all_lat.max()) * 1.001,
                               every=max(1, len(found) // 50))
    png = plot_hv_history(ctx.run_dir / "hv_history.png", hist, f"proxy {ctx.plan.proxy}: hypervolume over trials")
    for p in (path, csv_p, json_p, png):
        ctx.tracker.artifact(parent, p, "proxy_search")
    for n, hv in hist:
        ctx.tracker.metrics(parent, {"proxy_hypervolume": hv}, step=n)
    ctx.tracker.metrics(parent, {"n_trials": len(found), "n_candidates": len(pool), "proxy_front_size": len(front),
                                 "n_evaluated": len(ctx.eval_log().values), **ctx.timings})


def front_volume(acc: np.ndarray, lat: np.ndarray, extra: np.ndarray) -> float:
    """Hypervolume of a front in all its objectives (accuracy up; latency and costs down), as a share of the
    box from the front's best value in each objective to its reference point (its worst value in each plus
    10 % of the range)."""
    pts = np.column_stack([-acc, lat, extra])
    ref = pts.max(axis=0) + 0.1 * np.maximum(np.ptp(pts, axis=0), 1e-9)
    return hypervolume_nd(pts, ref) / float(np.prod(ref - pts.min(axis=0)))


def front_rows(shared: SweepShared, rep: TargetReport, int8: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per front member; ``int8`` (arch id -> ``Int8Accuracy``), where evaluated, adds its int8
    accuracy and its drop from fp32 (percentage points, on the same validation images)."""
    proxy = np.asarray(shared.proxy_predictor.predict(_enc(shared, rep.front_ids())), dtype=float) \
        if rep.front else np.zeros(0)
    costs = shared.costs.of(rep.front_ids()) if shared.costs is not None else None
    return [{"arch": rep.options[i], "accuracy": float(rep.accuracy[i]),
             "accuracy_from": shared.oracle.label(rep.options[i]), "predicted_ms": float(rep.predicted[i]),
             "measured_ms": rep.measured_front.get(rep.options[i]),
             "true_ms": None if rep.true_ms is None or np.isnan(rep.true_ms[i]) else float(rep.true_ms[i]),
             "proxy_ms": float(p), **_int8_columns(int8, rep.options[i]),
             **(asdict(costs[n]) if costs is not None else {})}
            for n, (i, p) in enumerate(zip(rep.front, proxy, strict=True))]


def _int8_columns(int8: Mapping[str, Any] | None, arch: str) -> dict[str, Any]:
    """``accuracy_int8``, ``int8_drop`` and ``int8_error`` (None but where the member's evaluation failed; the
    accuracy and drop are None then)."""
    r = None if int8 is None else int8.get(arch)
    return {} if r is None else {"accuracy_int8": r.accuracy_int8, "int8_drop": r.drop, "int8_error": r.error}


def _enc(shared: SweepShared, ids: Sequence[str]) -> np.ndarray:
    from search_spaces.base import encode_ids

    return encode_ids(shared.space_spec.build(), ids)


def record_target(ctx: Context, shared: SweepShared, rep: TargetReport, export_dir: Path | None,
                  simulated: bool = False, int8: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the target's files and its nested MLflow run (tag ``simulated``: the device's own property,
    ``Target.simulated``; ``int8``: its front's int8 accuracies, columns of the front); return its summary row."""
    rows = front_rows(shared, rep, int8)
    stem = ctx.run_dir / "fronts" / safe_name(rep.name)
    csv_p, json_p = write_front(rows, stem)
    png = stem.parent / f"{stem.name}.png"
    if rep.png is None:
        rep.png = render(shared, rep, rep.reference)
    png.write_bytes(rep.png)
    if ctx.refused.get(rep.name):  # what its device refused in every round and hook (ctx.refused)
        rep.metrics["refused_architectures"] = float(len(ctx.refused[rep.name]))
    summary = rep.summary()
    run = ctx.tracker.child(rep.name, tags={"decision": rep.decision.decision, "method": rep.method,
                                            "kind": rep.kind, "simulated": simulated},
                            seconds=rep.seconds)
    ctx.tracker.record(run, {"kind": rep.kind, "k": rep.k, "srcc_threshold": ctx.cfg.sweep.srcc_threshold,
                             "decision_rule": ctx.cfg.sweep.decision, "reason": rep.decision.reason,
                             "sources_used": rep.sources_used or "-",
                             "transfer": ctx.cfg.sweep.transfer, "sources": ctx.cfg.sweep.sources,
                             "target_search": ctx.cfg.sweep.target_search.algorithm},
                       {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for p in (csv_p, json_p, png):
        ctx.tracker.artifact(run, p)
    if export_dir is not None:
        ctx.tracker.artifact(run, export_dir, "exported_front")
        uris = {p.stem: ctx.tracker.onnx_model(run, p, p.stem) for p in sorted(export_dir.glob("*.onnx"))}
        if any(uris.values()):
            ctx.tracker.tags(run, {f"model_uri.{k}": v for k, v in uris.items()})
            summary["model_uris"] = " ".join(f"{k}={v}" for k, v in uris.items())
    ctx.tracker.finish(run)
    atomic_write(ctx.run_dir / "targets" / f"{safe_name(rep.name)}.json", json.dumps(
        {"summary": summary, "pool": ctx.pool_id, "budgets_ms": rep.budgets_ms,
         "samples": {**rep.samples, **rep.measured_front}}, indent=2, default=float))
    return summary


def pool_fingerprint(pool: Sequence[Candidate]) -> str:
    """A fingerprint of the candidate pool (its architectures): a target judged on another pool is redone."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(c.arch_id for c in pool)).encode()).hexdigest()[:16]


def done_targets(ctx: Context, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Summary rows of targets finished before a resume, on this run's candidate pool. A result file that does
    not parse, or that was computed on another pool (the journal lost trials and the search redid them), is not
    used, nor one whose front file (``fronts/<name>.json``, what report and compare read) is missing or damaged:
    that target is redone, so the summary never pairs a new pool with old results and every row has its front."""
    import logging

    from orchestrator.errors import ConfigError
    from orchestrator.report import read_record

    log = logging.getLogger(__name__)
    out = {}
    for name in names:
        f = ctx.run_dir / "targets" / f"{safe_name(name)}.json"
        if not f.is_file():
            continue
        front = ctx.run_dir / "fronts" / f"{safe_name(name)}.json"
        try:
            read_record(front, list)
        except ConfigError:
            log.warning("resume: %s is %s; target %s is redone", front,
                        "damaged" if front.exists() else "missing", name)
            continue
        try:
            data = json.loads(f.read_text())
            row = data["summary"]
            if not isinstance(row, dict):
                raise TypeError(f"summary is a {type(row).__name__}")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            log.warning("resume: %s is damaged (%s); target %s is redone", f, str(e)[:120], name)
            continue
        if data.get("pool", ctx.pool_id) != ctx.pool_id:
            log.warning("resume: %s was judged on another candidate pool (the search was redone in part); target "
                        "%s is redone", f, name)
            continue
        out[name] = row
    return out


def summarize(ctx: Context, pool_size: int, rows: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        v = [r[key] for r in rows if r.get(key) is not None and not np.isnan(r[key])]
        return float(np.mean(v)) if v else None

    summary = {
        "name": ctx.cfg.name, "proxy": ctx.plan.proxy, "n_candidates": pool_size, "targets": rows,
        "n_reuse": sum(r["decision"] == "reuse" for r in rows), "n_adapt": sum(r["decision"] == "adapt" for r in rows),
        **{f"mean_{k}": mean(k) for k in ("hv_ratio", "pool_hv_ratio", "hv_ratio_reuse", "per_device_hv_ratio",
                                          "acc_loss_q25", "acc_loss_q50", "acc_loss_q75")},
        "unserved_budgets": int(sum(r.get("unserved_budgets") or 0 for r in rows)),
        "unserved_budgets_reuse": int(sum(r.get("unserved_budgets_reuse") or 0 for r in rows)),
        "target_measurements": int(sum(r["n_measurements"] for r in rows)),
        "unreliable_targets": [r["target"] for r in rows if r.get("retest_reliable") == 0.0],
        "failed_targets": dict(ctx.failed_targets),
        **({"int8_failures": dict(ctx.int8_failures)} if ctx.int8_failures else {}),
        **({"refused_architectures": {t: dict(r) for t, r in ctx.refused.items() if r}}
           if any(ctx.refused.values()) else {}),
        "timings": ctx.timings, "wall_s": time.perf_counter() - t_start,
        **({"mlflow_view": ctx.tracker.view_link} if ctx.tracker.view_link else {}),
    }
    atomic_write(ctx.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=float))
    return summary


def record_sweep(ctx: Context, shared: SweepShared, summary: dict[str, Any]) -> None:
    """The SRCC heatmap over the known domain (the proxy's predictions, every device with a truth there)."""
    from orchestrator.latency.monotonicity import plot_heatmap, srcc_matrix

    parent = ctx.tracker.parent_id
    measured: dict[str, dict[str, float]] = {}  # devices without a truth: their own measurements
    for target in ctx.plan.targets:
        f = ctx.run_dir / "targets" / f"{safe_name(target.name)}.json"
        if not target.has_truth and f.is_file():
            measured[target.name] = json.loads(f.read_text()).get("samples", {})
    ids = list(dict.fromkeys([*shared.ref_ids, *(a for m in measured.values() for a in m)]))
    cols = {f"{shared.proxy} (predicted)": np.asarray(shared.proxy_predictor.predict(_enc(shared, ids)), dtype=float)}
    for target in [ctx.plan.proxy_target, *ctx.plan.targets][:64]:
        name = target.name
        if name in measured:
            if len(measured[name]) >= 3:
                cols[f"{name} (measured, {len(measured[name])})"] = np.array(
                    [measured[name].get(a, np.nan) for a in ids], dtype=float)
            continue
        if not target.has_truth:
            continue
        t = target.truth(ids)
        if np.isfinite(t).sum() >= 3:
            cols[name] = t
    names = list(cols)[:64]
    m = srcc_matrix(LatencyTable(list(ids), names, np.stack([cols[n] for n in names], axis=1)))
    png = plot_heatmap(m, ctx.run_dir / "srcc_heatmap.png",
                       title=f"Latency SRCC over the {len(shared.ref_ids)} architectures of the known domain"
                             + (" and each measured device's own samples" if measured else ""))
    mj = ctx.run_dir / "srcc_matrix.json"
    mj.write_text(json.dumps({"devices": m.devices, "srcc": np.where(np.isnan(m.srcc), None, m.srcc).tolist(),
                              "shared": m.shared.tolist()}, indent=1))
    ctx.tracker.artifact(parent, png)
    ctx.tracker.artifact(parent, mj)
    ctx.tracker.artifact(parent, ctx.run_dir / SUMMARY_FILE)
    ctx.tracker.metrics(parent, {k: v for k, v in summary.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
                        | dict(summary["timings"]))
