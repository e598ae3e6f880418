"""The latency service: one Ray actor per device.

Each actor holds the device's predictor and serves batched ``predict`` calls;
for a measured device it also runs measurements (one at a time, in the actor's
own process, pinned and threaded as the device says). The device is rebuilt in
the actor from its spec and the space's spec, so the actor times exactly the
configured network. Predictions and measurements run in separate concurrency
groups, so predictions are answered while a measurement is under way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.base import DeviceSpec
from search_spaces.base import SpaceSpec

log = logging.getLogger(__name__)


@ray.remote(max_restarts=2, max_task_retries=2, concurrency_groups={"predict": 1, "measure": 1})
class LatencyService:
    def __init__(self, device_name: str, predictor: Any | None, space_spec: SpaceSpec | None = None,
                 device_spec: DeviceSpec | None = None) -> None:
        self.device_name = device_name
        self.predictor = predictor
        self._device: Any = None
        self._space: Any = None
        self.n_predicted = 0
        self.n_measured = 0
        if device_spec is not None:
            from orchestrator.latency.devices.base import make_device

            if space_spec is None:
                raise DeviceError("a measuring latency service needs the space's spec as well as the device's")
            self._space = space_spec.build()
            # measured here, in this actor's process
            local = device_spec.model_copy(update={"options": {**device_spec.options, "isolate": False}})
            self._device = make_device(local, self._space)

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
        out = [self._device.measure(self._space.parse(a)).to_dict() for a in arch_ids]
        self.n_measured += len(out)
        return out

    def set_predictor(self, predictor: Any) -> None:
        self.predictor = predictor

    def stats(self) -> dict[str, Any]:
        return {"device": self.device_name, "predicted": self.n_predicted, "measured": self.n_measured}


def start_latency_service(device_name: str, predictor: Any | None = None, *, device: Any | None = None,
                          resources: dict[str, float] | None = None) -> Any:
    """Start the service actor for one device and return its handle.

    ``device``: a measured device whose measurements this actor runs (its spec and its space's spec travel;
    the actor rebuilds it and asks Ray for ``device.actor_resources()``). ``resources``: custom resources
    the actor needs (a remote device's ``device:<name>``); checked first, since Ray would wait forever for a
    resource no node carries.
    """
    from orchestrator.latency.devices.remote import require_resource

    for r in resources or {}:
        require_resource(r)
    need = device.actor_resources() if device is not None else {"num_cpus": 0.0, "num_gpus": 0.0}
    return LatencyService.options(**need, resources=resources or {}).remote(
        device_name, predictor, None if device is None else device.space.spec(),
        None if device is None else device.spec())
