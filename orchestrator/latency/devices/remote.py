"""Remote devices: a runtime on another machine, reached as a Ray node that
carries the custom resource ``device:<name>`` (e.g. ``ray start --resources
'{"device:pixel7": 1}'``). Measurement tasks are scheduled with that resource
and rebuild the space and the runtime from their specs there, so the network
timed is exactly the configured one (each sample carries its parameter count).

Ray waits forever for a resource that no node has, so the resource is checked
against the live cluster first and a missing one is an immediate error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import Field, field_validator

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.measured import CudaOptions
from orchestrator.latency.devices.protocol import DeviceSpec, DeviceType, SampledDevice
from orchestrator.latency.devices.registry import DEVICES, PREFIXES
from orchestrator.latency.measurement import LatencySample
from orchestrator.latency.service import RESOURCE_PREFIX, device_resources, require_resource
from search_spaces.base import SearchSpace, SpaceSpec

__all__ = ["RESOURCE_PREFIX", "RemoteDevice", "RemoteOptions", "device_resources", "require_resource"]


class RemoteOptions(CudaOptions):
    """The runtime to run on the device's node (``inner``) and its options."""

    inner: str = Field("torch-cpu", description="the measured runtime on the node: torch-cpu, onnxrt-cpu, cuda")
    chunk: int = Field(16, ge=1, description="architectures per measurement task")
    address: str = Field("auto", description="the Ray cluster to join if this process is not connected yet")

    @field_validator("inner")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DEVICES:
            raise ValueError(f"unknown runtime {v!r}; valid: {', '.join(DEVICES.names())}")
        return v


def _measure_task(space_spec: SpaceSpec, inner_type: DeviceType, inner: DeviceSpec, arch_ids: list[str]
                  ) -> list[dict[str, Any]]:
    space = space_spec.build()
    device = inner_type.build(inner.name, space, inner_type.options.model_validate(inner.options))
    # a refusal (ArchitectureRefused) carries the samples measured before it (measure_many)
    return [s.to_dict() for s in device.measure_many([space.parse(a) for a in arch_ids])]  # type: ignore[attr-defined]


class RemoteDevice(SampledDevice):
    """Measures on the Ray node(s) carrying ``device:<name>`` with the runtime ``inner``."""

    kind = "remote"

    def __init__(self, resource_name: str, space: SearchSpace, options: RemoteOptions) -> None:
        if not resource_name:
            raise DeviceError("remote device needs a name: remote:<name> for Ray resource device:<name>")
        self.name = f"remote:{resource_name}"
        self.resource = RESOURCE_PREFIX + resource_name
        self.space = space
        self.options = options
        inner_type = self._inner_type = DEVICES.get(options.inner)  # travels to the node's task
        fields = inner_type.options.model_fields
        inner_opts = {k: v for k, v in options.model_dump(mode="json").items() if k in fields}
        inner_opts["isolate"] = False  # the task is the isolation
        self._inner = DeviceSpec(name=options.inner, options=inner_opts)

    def cluster_resources(self) -> dict[str, float]:
        return {self.resource: 1.0}

    def check(self) -> None:
        import ray

        if not ray.is_initialized():
            from orchestrator.ray_connect import cluster_address, connect

            connect(cluster_address(self.options.address), log_to_driver=False)
        require_resource(self.resource)

    def samples(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None
                ) -> list[LatencySample]:
        import ray

        self.check()
        ids = list(arch_ids)
        task = ray.remote(_measure_task).options(resources={self.resource: 1}, num_cpus=0, max_retries=2)
        spec = self.space.spec()
        chunk = self.options.chunk
        refs = [task.remote(spec, self._inner_type, self._inner, ids[i:i + chunk]) for i in range(0, len(ids), chunk)]
        out: list[LatencySample] = []
        for i, ref in enumerate(refs):  # in order: chunks run one at a time on a device with one unit
            try:
                rows = ray.get(ref)
            except Exception as e:
                from orchestrator.latency.devices.measured import raise_if_refused, refusal

                if refusal(e) is not None:
                    for later in refs[i + 1:]:  # the caller decides what to measure next
                        ray.cancel(later)
                raise_if_refused(e, out, progress)
                raise
            out.extend(LatencySample(**r) for r in rows)
            if progress is not None:
                progress(len(rows))
        return out

    def measure_many(self, archs: Sequence[Mapping[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[LatencySample]:
        return self.samples([self.space.arch_id(a) for a in archs], progress)

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        return self.measure_many([arch])[0]


def _build(name: str, space: SearchSpace, options: Any) -> RemoteDevice:
    return RemoteDevice(name, space, options)


PREFIXES.add("remote:", DeviceType("remote", RemoteOptions, _build, pattern="remote:<name>",
                                   help="a measured runtime (option inner) on the Ray node(s) carrying custom "
                                        "resource device:<name>"))
