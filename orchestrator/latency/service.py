"""The latency service: one Ray actor per device, and the cluster resources a device's actor or task needs.

Each actor holds a device's predictor and serves batched ``predict`` calls; for a measured device it also
runs measurements (one at a time, in the actor's own process, pinned and threaded as the device says). The
device is built in the actor by the ``build`` callable its owner passes (for a measured device: its own class,
its name, its space's spec and its options with ``isolate`` off), so the actor times exactly the configured
network. Predictions and measurements run in separate concurrency groups, so predictions are answered while a
measurement is under way.

This module imports no device module: devices use it (a measured device starts its actor here), not the
other way round.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray

from orchestrator.errors import DeviceError

log = logging.getLogger(__name__)

RESOURCE_PREFIX = "device:"
NODE_ID_LABEL = "ray.io/node-id"


def device_resources() -> dict[str, float]:
    """The ``device:*`` custom resources of the connected Ray cluster."""
    if not ray.is_initialized():
        raise DeviceError("remote devices need a Ray cluster: connect first (ray.init(address=...))")
    return {k: v for k, v in ray.cluster_resources().items() if k.startswith(RESOURCE_PREFIX)}


def require_resource(resource: str) -> None:
    """Raise a DeviceError naming the fix when no node carries ``resource`` (Ray would wait forever)."""
    have = device_resources()
    if resource not in have:
        listed = ", ".join(sorted(have)) or "none"
        raise DeviceError(
            f"no node of the Ray cluster carries resource {resource!r} (device resources present: {listed}); "
            f"start the device's host with `ray start --address=HEAD --resources='{{\"{resource}\": 1}}'`"
        )


@contextmanager
def reserve_cpus(cpus: float, node_id: str | None = None) -> Iterator[str]:
    """Hold ``cpus`` logical CPUs of one node while the block runs (a placement group, removed at the end), so
    Ray schedules no other work on them; yields that node's id. ``node_id``: that node (else any node with the
    CPUs free). Waits, as Ray does, until the CPUs are free."""
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    label = [{NODE_ID_LABEL: node_id}] if node_id else None
    pg = placement_group([{"CPU": float(cpus)}], strategy="STRICT_PACK", bundle_label_selector=label)
    try:
        ray.get(pg.ready())
        yield placement_group_table(pg)["bundles_to_node_id"][0]
    finally:
        remove_placement_group(pg)


@ray.remote(max_restarts=2, max_task_retries=2, concurrency_groups={"predict": 1, "measure": 1})
class LatencyService:
    def __init__(self, device_name: str, predictor: Any | None, build: Callable[[], Any] | None = None,
                 threads: int | None = None) -> None:
        self.device_name = device_name
        self.predictor = predictor
        self._device: Any = None
        self.n_predicted = 0
        self.n_measured = 0
        if threads is not None:  # the runtime's default threads, as an actor holding `threads` CPUs would get
            os.environ["OMP_NUM_THREADS"] = str(threads)
        if build is not None:
            self._device = build()  # measured here, in this actor's process

    @ray.method(concurrency_group="predict")
    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.predictor is None:
            raise DeviceError(f"latency service {self.device_name!r} has no predictor; start it with one")
        y = np.asarray(self.predictor.predict(X))
        self.n_predicted += len(y)
        return y

    @ray.method(concurrency_group="measure")
    def measure(self, arch_ids: Sequence[str]) -> list[dict[str, Any]]:
        if self._device is None:
            raise DeviceError(f"latency service {self.device_name!r} serves a device that cannot be measured here")
        space = self._device.space
        # a refusal (ArchitectureRefused) carries the samples measured before it (measure_many)
        out = [s.to_dict() for s in self._device.measure_many([space.parse(a) for a in arch_ids])]
        self.n_measured += len(out)
        return out

    @ray.method(concurrency_group="measure")
    def close(self) -> None:
        """Close the device this actor measures on (after its last measurement)."""
        if self._device is not None:
            self._device.close()
            self._device = None

    def set_predictor(self, predictor: Any) -> None:
        self.predictor = predictor

    def stats(self) -> dict[str, Any]:
        return {"device": self.device_name, "predicted": self.n_predicted, "measured": self.n_measured,
                "pid": os.getpid()}


def start_latency_service(device_name: str, predictor: Any | None = None, *, device: Any | None = None,
                          resources: dict[str, float] | None = None, node_id: str | None = None,
                          hold_cpus: bool = True) -> Any:
    """Start the service actor for one device and return its handle.

    ``device``: a measured device whose measurements this actor runs (its ``builder()`` travels and builds
    it in the actor; the actor asks Ray for ``device.actor_resources()``, without the CPUs when ``hold_cpus``
    is off: the device's owner then holds them while it measures, see :func:`reserve_cpus`). ``node_id``: the
    node the actor must run on. ``resources``: custom resources the actor needs (a remote device's
    ``device:<name>``); checked first, since Ray would wait forever for a resource no node carries.
    """
    for r in resources or {}:
        require_resource(r)
    need = dict(device.actor_resources()) if device is not None else {"num_cpus": 0.0, "num_gpus": 0.0}
    threads = None if device is None else max(1, int(need["num_cpus"]))
    if not hold_cpus:
        need["num_cpus"] = 0.0
    opts: dict[str, Any] = {**need, "resources": resources or {}}
    if node_id is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    return LatencyService.options(**opts).remote(device_name, predictor,
                                                 None if device is None else device.builder(), threads)
