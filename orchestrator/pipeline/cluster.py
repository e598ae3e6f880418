"""What a pipeline config needs from a Ray cluster, checked before any work is scheduled.

Ray queues a task or actor that asks for a resource no node has forever (the
autoscaler only adds node types that advertise it), so a run on a cluster
first compares its needs with ``ray.cluster_resources()``. Each device says
what it needs (``Device.cluster_resources()``: a GPU to time on, the custom
resource ``device:<name>`` of its host).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.pipeline.plan import Plan


def required_resources(plan: Plan) -> dict[str, tuple[float, str]]:
    """Resource -> (amount one task or actor needs, why)."""
    cfg = plan.cfg
    need: dict[str, tuple[float, str]] = {"CPU": (1.0, "the driver's tasks")}

    def ask(res: str, amount: float, why: str) -> None:
        if amount > need.get(res, (0.0, ""))[0]:
            need[res] = (amount, why)

    from orchestrator.pipeline.accuracy import SOURCES

    sn = cfg.accuracy.supernet
    supernet = SOURCES.get(cfg.accuracy.source).trains_supernet  # the source says whether it has one
    if supernet and not sn.checkpoint and sn.train_gpus > 0:
        ask("GPU", sn.train_gpus, "accuracy.supernet.train_gpus")
    if supernet and sn.eval_gpus > 0:
        ask("GPU", sn.eval_gpus, "accuracy.supernet.eval_gpus")
    for t in [plan.proxy_target, *plan.targets]:
        for res, amount in t.device.cluster_resources().items():
            ask(res, amount, f"device {t.name}")
    return need


def check_cluster(plan: Plan, available: Mapping[str, float]) -> None:
    """Every missing resource in one error, naming the config field and the fix."""
    problems = []
    for res, (amount, why) in required_resources(plan).items():
        have = float(available.get(res, 0.0))
        if have < amount:
            problems.append(f"  {res}: {why} needs {amount:g}, the cluster has {have:g}")
    if problems:
        devices = sorted(k for k in available if k.startswith("device:"))
        raise ConfigError(
            "the Ray cluster cannot run this config; Ray would wait forever for:\n" + "\n".join(problems)
            + f"\n(device resources present: {', '.join(devices) or 'none'}). Add a node type that carries them "
              "(cluster.yaml; min_workers >= 1 for device hosts), or change the config.")
