"""The accuracy stage: a table, a supernet's evaluator pool (trained here or loaded), a predictor fit on
evaluated subnets (on the encoding or zero-cost scores), or a zero-cost proxy."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from orchestrator.pipeline.context import Context

log = logging.getLogger(__name__)


def accuracy_stage(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """The accuracy source and what to record about it."""
    from orchestrator.search.accuracy import PredictorAccuracy, TableAccuracy

    cfg = ctx.cfg.accuracy
    if cfg.source == "table":  # read and validated by the plan, before any work
        assert ctx.plan.accuracy is not None
        return TableAccuracy(ctx.space, ctx.plan.accuracy, seed=ctx.cfg.seed), {
            "accuracy_source": f"table:{cfg.table or ctx.cfg.latency.table}:{cfg.table_column}"}
    if cfg.source == "zero_cost":
        return zero_cost_source(ctx)
    source, info = supernet_source(ctx)
    if cfg.source == "predictor":
        features: Any = "encoding"
        if cfg.predictor_features != "encoding":
            from orchestrator.search.accuracy import ZeroCostFeatures

            features = ZeroCostFeatures(ctx.space, zero_cost_scorer(ctx, "ensemble"), cfg.predictor_features)
            info["accuracy_predictor_features"] = cfg.predictor_features
        pred = PredictorAccuracy(ctx.space, source, cfg.predictor_samples, np.random.default_rng([ctx.cfg.seed, 3]),
                                 cfg.predictor, features)
        info.update({f"accuracy_predictor_{k}": v for k, v in pred.quality.items()})
        return pred, info
    return source, info


def zero_cost_scorer(ctx: Context, proxy: str) -> Any:
    from orchestrator.search.zero_cost import make_scorer

    zc = ctx.cfg.accuracy.zero_cost
    return make_scorer(ctx.space, proxy, zc.data, zc.batch_size, zc.reference, ctx.cfg.seed)


def zero_cost_source(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """A zero-cost proxy's score of each network at initialisation (no training; seconds per architecture)."""
    from orchestrator.search.accuracy import ZeroCostAccuracy

    zc = ctx.cfg.accuracy.zero_cost
    scorer = zero_cost_scorer(ctx, zc.proxy)
    return ZeroCostAccuracy(ctx.space, scorer), {"accuracy_source": f"zero_cost:{zc.proxy}",
                                                 "zero_cost_data": zc.data.name}


def supernet_source(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """The supernet (trained on a Ray actor, resumable, or loaded from a run dir) behind an evaluator pool."""
    import ray

    from orchestrator.search.accuracy import SupernetAccuracy
    from orchestrator.supernet.actor import train_supernet
    from orchestrator.supernet.data import load_dataset
    from orchestrator.supernet.pool import EvaluatorPool
    from orchestrator.supernet.runs import load_trained
    from orchestrator.supernet.spec import one_shot_space, with_classes

    sc = ctx.cfg.accuracy.supernet
    with ctx.timed("supernet_s"):
        if sc.checkpoint:
            spec, weights, data = load_trained(sc.checkpoint)
            info: dict[str, Any] = {"supernet": f"loaded {sc.checkpoint}"}
        else:
            data = load_dataset(sc.data)
            # the space as configured, with the supernet's own options; the dataset's classes unless set
            spec = one_shot_space(with_classes(ctx.cfg.space.with_options(**sc.options), data.num_classes)).spec()
            summary, weights = train_supernet(spec, sc.data, sc.train, ctx.run_dir / "supernet",
                                              num_gpus=sc.train_gpus, show_progress=ctx.progress)
            last = summary["history"][-1] if summary["history"] else {}
            info = {"supernet_epochs": summary["epoch"], "supernet_last_loss": last.get("loss")}
    weights_ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(dict(weights))
    data_ref = ray.put(data)
    info["evaluator_actors"] = sc.actors
    info["supernet_space"] = spec.key()
    ctx.supernet = (spec, weights_ref)
    return SupernetAccuracy(ctx.space, lambda: EvaluatorPool(spec, weights_ref, data_ref, sc.eval,
                                                             n_actors=sc.actors, num_gpus=sc.eval_gpus)), info
