"""The accuracy stage: a table, a supernet's evaluator pool (trained here or loaded), a predictor fit on
evaluated subnets (on the encoding or zero-cost scores), or a zero-cost proxy.

``SOURCES`` registers each ``accuracy.source`` once: how the stage builds it, and what it needs, which the
plan's checks, the cluster pre-flight and the algorithms' requirements ask instead of comparing its name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.registry import Registry

if TYPE_CHECKING:
    from orchestrator.config import AccuracySection
    from orchestrator.pipeline.context import Context

log = logging.getLogger(__name__)


def _no(acc: AccuracySection) -> bool:
    return False


def _none(acc: AccuracySection) -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class AccuracySourceKind:
    """An accuracy source as the pipeline builds it (``build(ctx) -> (source, what to record)``), and what it
    needs, declared once."""

    build: Callable[[Context], tuple[Any, dict[str, Any]]]
    help: str
    accuracy_from: str  # the proxy front's ``accuracy_from`` column: where its accuracies come from, in a word
    trains_supernet: bool = False  # trains (or loads) the one-shot supernet: accuracy.supernet's options, GPUs
    reads_table: bool = False  # its values are read from an accuracy table when the plan is made
    additive: Callable[[AccuracySection], bool] = field(default=_no)  # an additive accuracy model (the MILP)
    subnets: Callable[[AccuracySection], dict[str, int]] = field(default=_none)  # distinct subnets asked, by field
    label: Callable[[dict[str, Any], str], str] = field(default=lambda acc, net: net)  # a run's source, in words
    # the accuracy section (a field of AccuracySection with a ``data``) holding the images the source reads: set
    # to the config's images (``default_source.images_of``) when the source is chosen by default; None: it
    # reads none of its own
    images_section: str | None = None


SOURCES: Registry[AccuracySourceKind] = Registry("accuracy source")


def accuracy_stage(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """The accuracy source and what to record about it (the config's resolved source; the choice and its
    reason logged, ``accuracy_source_by``: 'config' or 'default')."""
    choice = ctx.plan.accuracy_choice
    if choice is not None:
        log.info("accuracy source: %s", choice.describe())
    source, info = SOURCES.get(ctx.cfg.accuracy.source).build(ctx)
    if choice is not None:
        info["accuracy_source_by"] = "default" if choice.by_default else "config"
    return source, info


def table_source(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """An accuracy table, read and validated by the plan before any work."""
    from orchestrator.search.accuracy import TableAccuracy

    cfg = ctx.cfg.accuracy
    assert ctx.plan.accuracy is not None
    return TableAccuracy(ctx.space, ctx.plan.accuracy, seed=ctx.cfg.seed), {
        "accuracy_source": f"table:{cfg.table or ctx.cfg.latency.table}:{cfg.table_column}"}


def predictor_source(ctx: Context) -> tuple[Any, dict[str, Any]]:
    """A predictor fit on subnets the supernet evaluated (on the encoding, the zero-cost scores, or both)."""
    from orchestrator.search.accuracy import PredictorAccuracy

    cfg = ctx.cfg.accuracy
    source, info = supernet_source(ctx)
    features: Any = "encoding"
    if cfg.predictor_features != "encoding":
        from orchestrator.search.accuracy import ZeroCostFeatures

        features = ZeroCostFeatures(ctx.space, zero_cost_scorer(ctx, "ensemble"), cfg.predictor_features)
        info["accuracy_predictor_features"] = cfg.predictor_features
    pred = PredictorAccuracy(ctx.space, source, cfg.predictor_samples, np.random.default_rng([ctx.cfg.seed, 3]),
                             cfg.predictor, features)
    info.update({f"accuracy_predictor_{k}": v for k, v in pred.quality.items()})
    return pred, info


def _predictor_additive(acc: Any) -> bool:
    """Whether ``accuracy.predictor`` declares ``additive`` (asked of the predictor registry; an unknown name is
    not additive: the plan's checks report it)."""
    from orchestrator.latency.predictors import PREDICTORS, predictor_declares

    return acc.predictor in PREDICTORS and predictor_declares(acc.predictor, "additive")


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
    ctx.supernet_data = data_ref
    return SupernetAccuracy(ctx.space, lambda: EvaluatorPool(spec, weights_ref, data_ref, sc.eval,
                                                             n_actors=sc.actors, num_gpus=sc.eval_gpus)), info


SOURCES.add("table", AccuracySourceKind(
    table_source, "an accuracy table (accuracy.table)", "table", reads_table=True, additive=lambda acc: True,
    label=lambda acc, net: f"table {acc.get('table_column', 'acc_cifar10')}"),
    help="an accuracy table (accuracy.table)")
SOURCES.add("supernet", AccuracySourceKind(supernet_source, "a one-shot supernet's evaluated subnets", "evaluated",
                                           trains_supernet=True), help="a one-shot supernet's evaluated subnets")
SOURCES.add("predictor", AccuracySourceKind(
    predictor_source, "a predictor fit on the supernet's evaluated subnets", "predicted", trains_supernet=True,
    additive=_predictor_additive,
    subnets=lambda acc: {"accuracy.predictor_samples": acc.predictor_samples},
    label=lambda acc, net: f"predictor ({acc.get('predictor', 'mlp')}) of {net}"),
    help="a predictor fit on the supernet's evaluated subnets")
SOURCES.add("zero_cost", AccuracySourceKind(
    zero_cost_source, "a zero-cost proxy at initialisation", "zero_cost", images_section="zero_cost",
    label=lambda acc, net: f"zero_cost {(acc.get('zero_cost') or {}).get('proxy', 'ensemble')}"),
            help="a zero-cost proxy at initialisation (no training)")
