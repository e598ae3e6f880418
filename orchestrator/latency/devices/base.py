"""Device protocol, the measured-device base class and the device registry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from orchestrator.latency.measurement import LatencySample, MeasurementProtocol, pin_cores
from orchestrator.registry import Registry
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)


@runtime_checkable
class Device(Protocol):
    name: str
    kind: str  # "measured", "tabulated" or "remote"


class MeasuredDevice:
    """A device that runs the network: subclasses build a runnable per architecture.

    ``threads`` sets the runtime's intra-op threads, ``batch_size`` the input
    batch, ``cores`` (optional) pins the measuring process to those cores.
    """

    kind = "measured"
    runtime = ""

    def __init__(self, space: SearchSpace, *, name: str | None = None, threads: int = 1, batch_size: int = 1,
                 cores: Sequence[int] | None = None, protocol: MeasurementProtocol | None = None,
                 resolution: int = 32) -> None:
        from orchestrator.errors import DeviceError

        if threads < 1 or batch_size < 1:
            raise DeviceError(f"threads and batch_size must be >= 1, got threads={threads}, batch_size={batch_size}")
        self.space = space
        self.threads = threads
        self.batch_size = batch_size
        self.cores = list(cores) if cores is not None else None
        self.protocol = protocol or MeasurementProtocol()
        self.resolution = resolution
        self.name = name or f"{self.runtime}-{threads}t-b{batch_size}"
        self._pinned = False

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this device elsewhere (a Ray worker)."""
        return {"runtime": self.runtime, "name": self.name, "threads": self.threads, "batch_size": self.batch_size,
                "cores": self.cores, "protocol": self.protocol.model_dump(), "resolution": self.resolution}

    def _setup(self) -> None:
        if not self._pinned:
            pin_cores(self.cores)
            self._pinned = True

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        self._setup()
        return self._measure(self.space.arch_id(arch), arch)

    def _measure(self, arch_id: str, arch: Mapping[str, Any]) -> LatencySample:
        raise NotImplementedError

    def measure_many(self, archs: Iterable[Mapping[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[LatencySample]:
        out = []
        for arch in archs:
            out.append(self.measure(arch))
            if progress is not None:
                progress(1)
        return out


DEVICES: Registry[Callable[..., Any]] = Registry("device")


def get_device(name: str, space: SearchSpace, /, **kwargs: Any) -> Any:
    """Make the device ``name``. ``remote:<resource>`` makes a remote device on
    the Ray node(s) carrying custom resource ``device:<resource>``; pass the
    runtime to run there as ``inner=`` (default ``torch-cpu``). ``sim:<n>`` makes
    the SIMULATED roofline device number n (orchestrator.latency.simulator)."""
    from orchestrator.errors import DeviceError

    # Importing the modules registers their devices.
    from orchestrator.latency.devices import measured, tabulated  # noqa: F401
    from orchestrator.latency.devices.remote import RemoteDevice

    if name.startswith("sim:"):
        from orchestrator.latency.simulator import SimulatedDevice, parse_simulated

        if kwargs:
            raise DeviceError(f"simulated device {name!r} takes no options, got {sorted(kwargs)}")
        return SimulatedDevice(parse_simulated(name), space)
    if name.startswith("remote:"):
        inner = kwargs.pop("inner", "torch-cpu")
        return RemoteDevice(name[len("remote:"):], inner, space, **kwargs)
    return DEVICES.get(name)(space, **kwargs)


def device_names() -> list[str]:
    from orchestrator.latency.devices import measured, tabulated  # noqa: F401

    return DEVICES.names()
