"""The proxy search: the run's accuracy source against the proxy's latency predictor, on a persistent
Optuna study (resumable), through ``run_search``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError, HwnasError
from orchestrator.pipeline.context import Context, start_over_hint
from orchestrator.search.algorithms import SearchProblem, SearchSettings, run_search
from orchestrator.search.driver import Candidate, TableDomain
from orchestrator.search.storage import make_storage

log = logging.getLogger(__name__)


def table_domain(ctx: Context) -> TableDomain | None:
    """The search domain as the searches take it: the table's cells, or None for the whole space."""
    return ctx.plan.domain.search_domain()


def additive_accuracy(accuracy: Any) -> Any:
    """The additive model behind an accuracy source, where it has one (the MILP search needs it)."""
    try:
        return accuracy.oracle().additive
    except HwnasError:  # a supernet with nothing evaluated yet
        return None


def search_settings(ctx: Context, resume: bool) -> SearchSettings:
    s = ctx.cfg.search
    sn = ctx.cfg.accuracy.supernet  # DNAS trains on the supernet's data and options unless it sets its own
    dnas = s.dnas.model_copy(update={"data": s.dnas.data or sn.data,
                                     "supernet_options": sn.options if s.dnas.supernet_options is None
                                     else s.dnas.supernet_options})
    return SearchSettings(n_trials=s.n_trials, population=s.population, batch_size=s.batch_size, seed=ctx.cfg.seed,
                          storage=make_storage(s.storage, ctx.run_dir, ctx.record), study_name=ctx.cfg.name,
                          resume=resume, progress=ctx.progress, dnas=dnas)


def search_stage(ctx: Context, accuracy: Any, latency: Callable[[Sequence[str]], np.ndarray],
                 resume: bool) -> list[Candidate]:
    """The proxy search; returns its candidates (every completed trial)."""
    cfg = ctx.cfg.search
    problem = SearchProblem(ctx.space, accuracy, latency, domain=table_domain(ctx),
                            latency_budget_ms=cfg.latency_budget_ms, eval_log=ctx.eval_log(),
                            latency_model=ctx.proxy_predictor, accuracy_model=additive_accuracy(accuracy),
                            objectives=tuple(cfg.objectives), constraints=dict(cfg.constraints),
                            label="proxy search")
    res = run_search(problem, cfg.algorithm, search_settings(ctx, resume))
    ctx.timings["search_s"] = res.seconds
    ctx.timings["search_evaluated"] = float(res.evaluated)
    ctx.timings.update({f"search_{k}": v for k, v in res.info.items()})
    feasible = res.feasible()
    if len(feasible) < 3:
        raise ConfigError(f"only {len(feasible)} feasible candidates among the search's {len(res.candidates)}: "
                          f"search.latency_budget_ms {cfg.latency_budget_ms} / search.constraints "
                          f"{cfg.constraints or '{}'} are too tight for proxy {ctx.plan.proxy}, or the search "
                          f"(search.n_trials {cfg.n_trials:,}) too short to find architectures within them; raise "
                          f"them or search.n_trials. {start_over_hint(ctx.cfg, ctx.run_dir)}")
    return res.candidates
