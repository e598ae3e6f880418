"""Remote devices: a runtime on another machine, reached as a Ray node that
carries the custom resource ``device:<name>`` (e.g. ``ray start --resources
'{"device:pixel7": 1}'``). Measurement tasks are scheduled with that resource.

Ray waits forever for a resource that no node has, so the resource is checked
against the live cluster first and a missing one is an immediate error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orchestrator.errors import DeviceError
from orchestrator.latency.measurement import LatencySample
from search_spaces.base import SearchSpace

RESOURCE_PREFIX = "device:"


def device_resources() -> dict[str, float]:
    """The ``device:*`` custom resources of the connected Ray cluster."""
    import ray

    if not ray.is_initialized():
        raise DeviceError("remote devices need a Ray cluster: call ray.init() (or hwnas --address) first")
    return {k: v for k, v in ray.cluster_resources().items() if k.startswith(RESOURCE_PREFIX)}


def require_resource(resource: str) -> None:
    have = device_resources()
    if resource not in have:
        listed = ", ".join(sorted(have)) or "none"
        raise DeviceError(
            f"no node of the Ray cluster carries resource {resource!r} (device resources present: {listed}); "
            f"start the device's host with `ray start --address=HEAD --resources='{{\"{resource}\": 1}}'`"
        )


def _measure_task(space_name: str, space_kwargs: dict[str, Any], inner: str, spec: dict[str, Any],
                  arch_ids: list[str]) -> list[dict[str, Any]]:
    from orchestrator.latency.devices.base import get_device
    from orchestrator.latency.measurement import MeasurementProtocol
    from search_spaces.base import get_space

    space = get_space(space_name, **space_kwargs)
    kwargs = {k: v for k, v in spec.items() if k not in ("runtime", "protocol")}
    kwargs["protocol"] = MeasurementProtocol(**spec["protocol"])
    device = get_device(inner, space, **kwargs)
    return [device.measure(space.parse(a)).to_dict() for a in arch_ids]


class RemoteDevice:
    """Measures on the Ray node(s) carrying ``device:<name>`` with runtime ``inner``."""

    kind = "remote"

    def __init__(self, resource_name: str, inner: str, space: SearchSpace, *, chunk: int = 16,
                 **inner_kwargs: Any) -> None:
        name = resource_name
        from orchestrator.latency.devices.base import DEVICES, get_device

        if not name:
            raise DeviceError("remote device needs a name: remote:<name> for Ray resource device:<name>")
        self.name = name
        self.resource = RESOURCE_PREFIX + name
        self.space = space
        self.inner = inner
        DEVICES.get(inner)  # unknown runtime -> error listing valid names, before any scheduling
        self._spec = get_device(inner, space, name=f"{name}/{inner}", **inner_kwargs).spec()
        self.chunk = chunk

    def check(self) -> None:
        require_resource(self.resource)

    def measure_many(self, archs: Iterable[Mapping[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[LatencySample]:
        import ray

        self.check()
        ids = [self.space.arch_id(a) for a in archs]
        task = ray.remote(_measure_task).options(resources={self.resource: 1}, num_cpus=0, max_retries=2)
        space_kwargs = {k: getattr(self.space, k) for k in ("channels", "cells_per_stage", "num_classes")
                        if hasattr(self.space, k)}
        refs = [task.remote(self.space.name, space_kwargs, self.inner, self._spec, ids[i:i + self.chunk])
                for i in range(0, len(ids), self.chunk)]
        out: list[LatencySample] = []
        for ref in refs:  # in order: chunks run one at a time on a device with one unit
            rows = ray.get(ref)
            out.extend(LatencySample(**r) for r in rows)
            if progress is not None:
                progress(len(rows))
        return out

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        return self.measure_many([arch])[0]
