"""The latency service: one Ray actor per device.

Each actor holds the device's predictor and serves batched ``predict`` calls;
for a measured device it also queues measurements (run one at a time, in the
actor's own process, pinned and threaded as the device says). Predictions and
measurements run in separate concurrency groups, so predictions are answered
while a measurement is under way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from orchestrator.errors import DeviceError

log = logging.getLogger(__name__)


@ray.remote(max_restarts=2, max_task_retries=2, concurrency_groups={"predict": 1, "measure": 1})
class LatencyService:
    def __init__(self, device_name: str, predictor: Any | None, space_name: str | None = None,
                 device_spec: dict[str, Any] | None = None) -> None:
        self.device_name = device_name
        self.predictor = predictor
        self._device = None
        self._space = None
        self.n_predicted = 0
        self.n_measured = 0
        if device_spec is not None:
            from orchestrator.latency.devices.base import get_device
            from orchestrator.latency.measurement import MeasurementProtocol
            from search_spaces.base import get_space

            self._space = get_space(space_name or "nb201")
            spec = dict(device_spec)
            runtime = spec.pop("runtime")
            spec["protocol"] = MeasurementProtocol(**spec["protocol"])
            self._device = get_device(runtime, self._space, **spec)

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
        assert self._space is not None
        out = [self._device.measure(self._space.parse(a)).to_dict() for a in arch_ids]
        self.n_measured += len(out)
        return out

    def set_predictor(self, predictor: Any) -> None:
        self.predictor = predictor

    def stats(self) -> dict[str, Any]:
        return {"device": self.device_name, "predicted": self.n_predicted, "measured": self.n_measured}


def start_latency_service(device_name: str, predictor: Any | None = None, *, device: Any | None = None,
                          num_cpus: float | None = None, resources: dict[str, float] | None = None) -> Any:
    """Start the service actor for one device and return its handle.

    ``device``: a measured device whose measurements this actor runs (its
    ``spec()`` travels; the actor rebuilds it). ``resources``: custom resources
    the actor needs (a remote device's ``device:<name>``); checked first, since
    Ray would wait forever for a resource no node carries.
    """
    from orchestrator.latency.devices.remote import require_resource

    for r in resources or {}:
        require_resource(r)
    spec = device.spec() if device is not None else None
    if num_cpus is None:
        num_cpus = float(device.threads) if device is not None and hasattr(device, "threads") else 0.0
    # A CUDA device times on a whole GPU: Ray hides GPUs from an actor that asks for none.
    num_gpus = 1.0 if getattr(device, "runtime", "") == "cuda" else 0.0
    return LatencyService.options(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or {}).remote(
        device_name, predictor, getattr(getattr(device, "space", None), "name", None), spec
    )
