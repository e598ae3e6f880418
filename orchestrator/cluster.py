"""What a pipeline config needs from a Ray cluster, checked before any work is scheduled.

Ray queues a task or actor that asks for a resource no node has forever (the
autoscaler only adds node types that advertise it), so a run on a cluster
first compares its needs with ``ray.cluster_resources()``.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.config import PipelineConfig
from orchestrator.errors import ConfigError


def _device_names(cfg: PipelineConfig) -> list[str]:
    names = [t if isinstance(t, str) else t.name for t in cfg.sweep.targets]
    return [cfg.latency.proxy, *names]


def required_resources(cfg: PipelineConfig) -> dict[str, tuple[float, str]]:
    """Resource -> (amount one task or actor needs, why)."""
    need: dict[str, tuple[float, str]] = {"CPU": (1.0, "the driver's tasks")}
    sn = cfg.accuracy.supernet
    if cfg.accuracy.source != "table" and not sn.checkpoint and sn.train_gpus > 0:
        need["GPU"] = (sn.train_gpus, "accuracy.supernet.train_gpus")
    if cfg.accuracy.source != "table" and sn.eval_gpus > 0 and sn.eval_gpus > need.get("GPU", (0.0, ""))[0]:
        need["GPU"] = (sn.eval_gpus, "accuracy.supernet.eval_gpus")
    for n in _device_names(cfg):
        if n == "cuda":
            need["GPU"] = (max(1.0, need.get("GPU", (0.0, ""))[0]), "the cuda device (a whole GPU to time on)")
        elif n.startswith("remote:"):
            need[f"device:{n[len('remote:'):]}"] = (1.0, f"device {n}")
    return need


def check_cluster(cfg: PipelineConfig, available: Mapping[str, float]) -> None:
    """Every missing resource in one error, naming the config field and the fix."""
    problems = []
    for res, (amount, why) in required_resources(cfg).items():
        have = float(available.get(res, 0.0))
        if have < amount:
            problems.append(f"  {res}: {why} needs {amount:g}, the cluster has {have:g}")
    if problems:
        devices = sorted(k for k in available if k.startswith("device:"))
        raise ConfigError(
            "the Ray cluster cannot run this config; Ray would wait forever for:\n" + "\n".join(problems)
            + f"\n(device resources present: {', '.join(devices) or 'none'}). Add a node type that carries them "
              "(cluster.yaml; min_workers >= 1 for device hosts), or change the config.")
