"""The proxy stage: the proxy's latency predictor, fit on its table rows or on measurements, served by a
latency-service actor."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from orchestrator.latency.predictors import make_predictor
from orchestrator.latency.service import start_latency_service
from orchestrator.latency.table import LatencyTable, read_table, write_table
from orchestrator.pipeline.context import Context
from search_spaces.base import distinct_sample, encode_ids

log = logging.getLogger(__name__)

PROXY_FILE = "proxy_measurements.csv"


def proxy_samples(ctx: Context) -> LatencyTable:
    """The proxy's own latencies: its table rows where it is known only there (a tabulated device), else
    ``latency.proxy_samples`` architectures measured on it (kept in the run dir for a resume)."""
    plan = ctx.plan
    device = plan.device(plan.proxy, {})
    domain = device.domain()
    if domain is not None:
        return LatencyTable(list(domain), [plan.proxy], device.latency_ms(domain)[:, None])
    path = ctx.run_dir / PROXY_FILE
    if path.is_file():
        return read_table(path, ctx.space, device_prefix="lat_ms_")
    rng = np.random.default_rng([ctx.cfg.seed, 11])
    ids = distinct_sample(ctx.space, ctx.cfg.latency.proxy_samples, rng)
    log.info("proxy %s: measuring %d architectures to fit its predictor", plan.proxy, len(ids))
    y = device.latency_ms(ids)
    write_table(path, LatencyTable(ids, [f"lat_ms_{plan.proxy}"], y[:, None]))
    return LatencyTable(ids, [plan.proxy], y[:, None], str(path))


def proxy_stage(ctx: Context) -> tuple[Any, LatencyTable]:
    """Fit the proxy's predictor and serve it; returns (the service actor, the proxy's own table)."""
    own = proxy_samples(ctx)
    ids, y = own.measured(ctx.plan.proxy)
    params = {"seed": ctx.cfg.seed} if ctx.cfg.latency.predictor == "mlp" else {}
    device = ctx.plan.device(ctx.plan.proxy, {})
    if hasattr(device, "additive"):  # a lookup table: the device is its own exact additive model
        ctx.proxy_predictor = device.additive()
    else:
        ctx.proxy_predictor = make_predictor(ctx.cfg.latency.predictor, **params).fit(encode_ids(ctx.space, ids), y)
    svc = ctx.services[ctx.plan.proxy] = start_latency_service(ctx.plan.proxy, ctx.proxy_predictor)
    if ctx.plan.proxy_score is not None:
        log.info("proxy: %s (mean SRCC %.3f to the other tabulated devices)", ctx.plan.proxy, ctx.plan.proxy_score)
    return svc, own
