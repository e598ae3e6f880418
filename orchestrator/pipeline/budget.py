"""The latency budget against the proxy: refused before any work where the proxy's predictor already shows that
the search cannot find enough architectures within it.

The proxy search minimises the proxy's *predicted* latency (``proxy.proxy_stage``) and needs at least
``MIN_FEASIBLE`` feasible candidates. Where the proxy's own latencies are known without measuring (a table's
column, a simulated device: ``Device.deterministic``) and its predictor is cheap to fit (one that declares
``additive``: ``orchestrator.latency.predictors``),
``hwnas validate`` fits the same predictor on the same samples and refuses a budget below the
``MIN_FEASIBLE``-th fastest architecture of the search domain, naming that value. Otherwise (a measured
proxy, an MLP predictor, a space too large to list) the same check runs once the predictor is fitted, before
the search.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_FEASIBLE = 3  # the proxy search refuses fewer feasible candidates (pipeline.search)
MAX_LISTED = 20_000  # a space domain is checked where it can be listed (NB201: 15,625 cells)


def fit_proxy_predictor(cfg: Any, space: Any, ids: list[str], y: np.ndarray) -> Any:
    """The proxy's latency predictor as the run fits it (``latency.predictor`` on the proxy's own samples)."""
    from orchestrator.latency.predictors import make_predictor
    from search_spaces.base import encode_ids

    return make_predictor(cfg.latency.predictor, seed=cfg.seed).fit(encode_ids(space, ids), y)


def known_proxy_samples(plan: Any) -> tuple[list[str], np.ndarray] | None:
    """The proxy's own samples where they are known without measuring (the same ones ``proxy_samples``
    takes: its table rows, or ``latency.proxy_samples`` architectures drawn with the run's seed from a
    deterministic device); None for a measured proxy."""
    from search_spaces.base import distinct_sample

    device = plan.proxy_target.device
    dom = plan.proxy_target.domain
    if dom is not None:
        y = np.asarray(device.latency_ms(dom), dtype=float)
        ok = np.isfinite(y)
        return [a for a, k in zip(dom, ok, strict=True) if k], y[ok]
    if not device.deterministic:
        return None
    ids = distinct_sample(plan.space, plan.cfg.latency.proxy_samples, np.random.default_rng([plan.cfg.seed, 11]))
    return ids, np.asarray(device.latency_ms(ids), dtype=float)


def domain_ids(plan: Any) -> list[str] | None:
    """The search domain's architectures where they can be listed (a table's rows, a small space), else None."""
    return plan.domain.enumeration(MAX_LISTED)


def budget_problem(plan: Any, predictor: Any) -> str | None:
    """The problem with ``search.latency_budget_ms`` (None: none seen): fewer than ``MIN_FEASIBLE``
    architectures of the search domain within it (and within ``search.constraints``) on ``predictor``."""
    from search_spaces.base import encode_ids

    budget = plan.cfg.search.latency_budget_ms
    ids = domain_ids(plan) if budget is not None else None
    if ids is None:
        return None
    lat = np.asarray(predictor.predict(encode_ids(plan.space, ids)), dtype=float)
    ok = np.ones(len(ids), dtype=bool)
    limits = plan.cfg.search.constraints
    if limits:
        from search_spaces.costs import CostModel

        model = CostModel(plan.space.spec())
        for name, limit in limits.items():
            ok &= model.values(ids, name) <= limit
    fast = np.sort(lat[ok])
    if (fast <= budget).sum() >= MIN_FEASIBLE or len(fast) < MIN_FEASIBLE:  # too few at any budget: cost_problems
        return None
    least = float(fast[MIN_FEASIBLE - 1])
    where = f"the {plan.domain.kind} domain's {len(ids):,} architectures" + (
        f" ({int(ok.sum()):,} within search.constraints)" if limits else "")
    return (f"search.latency_budget_ms: {budget:g} ms, but proxy {plan.proxy}'s predicted latency is within it for "
            f"only {int((fast <= budget).sum())} of {where} (the search needs {MIN_FEASIBLE}); the fastest are "
            f"{', '.join(f'{v:.4g}' for v in fast[:MIN_FEASIBLE])} ms: set it to at least {_up(least)}")


def _up(v: float) -> str:
    """``v`` printed with 4 significant digits, rounded up (a budget of that value admits it)."""
    s = f"{v:.4g}"
    if float(s) < v:
        digits = 3 - int(np.floor(np.log10(abs(v)))) if v > 0 else 3
        s = f"{np.ceil(v * 10**digits) / 10**digits:.{max(digits, 0)}f}"
    return s


def plan_budget_problems(plan: Any) -> list[str]:
    """At validation: the budget against the proxy's predictor where it is cheap and certain (see module)."""
    from orchestrator.latency.predictors import predictor_declares

    if plan.cfg.search.latency_budget_ms is None or not plan.proxy \
            or not predictor_declares(plan.cfg.latency.predictor, "additive"):
        return []
    if plan.proxy_target is None or domain_ids(plan) is None:
        return []
    own = known_proxy_samples(plan)
    if own is None or len(own[0]) < 2:
        return []
    p = budget_problem(plan, fit_proxy_predictor(plan.cfg, plan.space, *own))
    return [p] if p else []
