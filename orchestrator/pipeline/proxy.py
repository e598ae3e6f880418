"""The proxy stage: the proxy's latency predictor, fit on its table rows or on measurements, served by a
latency-service actor."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from orchestrator.errors import ArchitectureRefused, ConfigError, DeviceError
from orchestrator.latency.service import start_latency_service
from orchestrator.latency.table import LatencyTable, read_table, write_table
from orchestrator.pipeline.budget import budget_problem, fit_proxy_predictor
from orchestrator.pipeline.context import Context, start_over_hint
from search_spaces.base import distinct_sample

log = logging.getLogger(__name__)

PROXY_FILE = "proxy_measurements.csv"


def proxy_samples(ctx: Context) -> LatencyTable:
    """The proxy's own latencies: its table rows where it is known only there (a tabulated device), else
    ``latency.proxy_samples`` architectures measured on it (kept in the run dir for a resume)."""
    plan = ctx.plan
    device = plan.proxy_target.device
    domain = plan.proxy_target.domain
    if domain is not None:
        return LatencyTable(list(domain), [plan.proxy], device.latency_ms(domain)[:, None])
    path = ctx.run_dir / PROXY_FILE
    if path.is_file():
        return read_table(path, ctx.space, device_prefix="lat_ms_")
    rng = np.random.default_rng([ctx.cfg.seed, 11])
    ids = distinct_sample(ctx.space, ctx.cfg.latency.proxy_samples, rng)
    log.info("proxy %s: measuring %d architectures to fit its predictor", plan.proxy, len(ids))
    ids, y = measure_proxy(ctx, device, ids)
    device.close()  # the proxy's last measurement: its measuring actor ends before the search starts
    write_table(path, LatencyTable(ids, [f"lat_ms_{plan.proxy}"], y[:, None]))
    return LatencyTable(ids, [plan.proxy], y[:, None], str(path))


def measure_proxy(ctx: Context, device: Any, ids: list[str]) -> tuple[list[str], np.ndarray]:
    """``ids`` measured on the proxy's device, past each architecture it refuses (``ArchitectureRefused``: its
    artefact failed an output check): skipped, listed in summary.json ``refused_architectures`` under
    '<proxy> (proxy samples)', the predictor fit on the rest. A device that refuses more than half of them is
    broken (or its check too strict): a DeviceError naming the fix, what was measured kept in the log only."""
    from orchestrator.latency.devices.measured import latencies_skipping_refused

    name = ctx.plan.proxy
    refused = ctx.refused.setdefault(f"{name} (proxy samples)", {})
    limit = max(1, len(ids) // 2)

    def on_refused(r: ArchitectureRefused) -> None:
        refused[r.arch_id] = str(r)
        log.warning("proxy %s: its device refused %s, skipped (%d of %d refused so far): %s", name, r.arch_id,
                    len(refused), len(ids), r)
        if len(refused) > limit:
            raise DeviceError(f"proxy {name}: the device refused {len(refused)} of the {len(ids)} architectures "
                              f"(latency.proxy_samples) it was to measure, more than half: a device that refuses "
                              f"this many cannot be trusted to measure the rest; fix its check or its options "
                              f"(e.g. a larger tolerance), or choose another proxy. Last refusal: {r}") from None

    return latencies_skipping_refused(device, ids, on_refused)


def proxy_stage(ctx: Context) -> tuple[Any, LatencyTable]:
    """Fit the proxy's predictor and serve it; returns (the service actor, the proxy's own table)."""
    own = proxy_samples(ctx)
    ids, y = own.measured(ctx.plan.proxy)
    device = ctx.plan.proxy_target.device
    if hasattr(device, "additive"):  # a lookup table: the device is its own exact additive model
        ctx.proxy_predictor = device.additive()
    else:
        ctx.proxy_predictor = fit_proxy_predictor(ctx.cfg, ctx.space, ids, y)
    problem = budget_problem(ctx.plan, ctx.proxy_predictor)  # where validation could not know the proxy's latency
    if problem:
        raise ConfigError(f"{problem}. Nothing was searched; {start_over_hint(ctx.cfg, ctx.run_dir)}")
    svc = ctx.services[ctx.plan.proxy] = start_latency_service(ctx.plan.proxy, ctx.proxy_predictor)
    if ctx.plan.proxy_score is not None:
        log.info("proxy: %s (mean SRCC %.3f to the other tabulated devices)", ctx.plan.proxy, ctx.plan.proxy_score)
    return svc, own
