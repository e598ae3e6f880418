"""Command devices: hardware the cluster cannot import (a phone over adb, a board over ssh, a vendor
benchmark binary), timed by a user's command run on the Ray node that carries ``device:<name>``.

For each architecture the node builds the space's network, exports it (ONNX or TorchScript) to a file,
optionally runs ``push`` (e.g. ``adb push {model} /data/local/tmp/{model_name}``), then runs ``command``
``runs`` times and parses the latency from its output with ``regex``. Placeholders in both templates:

- ``{model}``: the exported file's path on the node; ``{model_name}``: its file name;
- ``{batch_size}``; ``{input_shape}``: the input shape joined by commas (``1,3,32,32``).

``regex`` must have exactly one named group, ``ms``, ``us`` or ``s``, which gives the unit; the last match in
stdout+stderr counts. The default, :data:`DEFAULT_REGEX`, reads ``median_ms=1.23`` (or ``median ms: 1.23``);
TensorFlow Lite's ``benchmark_model`` needs ``Inference \\(avg\\): (?P<us>[0-9.eE+-]+)``.

Failures are errors of this target alone, each naming its cause: the program not found on the node, a
timeout (the command's whole process group is killed), a non-zero exit (with the output's tail), output the
regex does not match (with the output's tail and the regex). ``local: true`` runs the command in this process
instead of a Ray task (a phone plugged into this machine).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.errors import ArchitectureRefused, DeviceError
from orchestrator.latency.devices.protocol import DeviceType, SampledDevice
from orchestrator.latency.devices.registry import PREFIXES
from orchestrator.latency.measurement import LatencySample, summarize
from orchestrator.schema import Schema
from search_spaces.base import SearchSpace, arch_input_shape

log = logging.getLogger(__name__)

DEFAULT_REGEX = r"(?i)median[ _]?ms\s*[=:]\s*(?P<ms>[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
PLACEHOLDERS = ("model", "model_name", "batch_size", "input_shape")
UNITS = {"ms": 1.0, "us": 1e-3, "s": 1e3}
TAIL = 600  # characters of output quoted in an error


def _fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"template {template!r} is malformed ({e}); write literal braces as {{{{ and }}}}") from e


def _check_template(template: str) -> str:
    bad = sorted(f for f in _fields(template) if f not in PLACEHOLDERS)
    if bad:
        raise ValueError(f"unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)} in {template!r}; "
                         f"valid: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return template


class CommandOptions(Schema):
    """A command device's options (``hwnas validate`` checks them before any work)."""

    command: str = Field(description="the command template that runs the model and prints its latency")
    push: str | None = Field(None, description="a command template run once per model before `command` "
                                               "(e.g. adb push {model} /data/local/tmp/{model_name})")
    regex: str = Field(DEFAULT_REGEX, description="parses the latency: one named group ms, us or s; last match")
    shell: bool = Field(False, description="run the templates through /bin/sh (pipes, &&) instead of splitting "
                                           "them into arguments")
    timeout_s: float = Field(120.0, gt=0, description="seconds one run of a command may take")
    runs: int = Field(1, ge=1, description="runs of `command` per architecture; the median is reported")
    format: Literal["onnx", "torchscript"] = Field("onnx", description="the exported model file's format")
    model_dir: str | None = Field(None, description="directory on the node for the exported files "
                                                    "(default: a temporary one, removed afterwards)")
    batch_size: int = Field(1, ge=1, description="input batch of the exported network")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables for the commands")
    local: bool = Field(False, description="run here instead of on the Ray node carrying device:<name>")
    chunk: int = Field(16, ge=1, description="architectures per Ray task")
    address: str = Field("auto", description="the Ray cluster to join if this process is not connected yet")

    @field_validator("command", "push")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip():
            raise ValueError("an empty command; give the program and its arguments")
        return _check_template(v)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as e:
            raise ValueError(f"regex {v!r} does not compile: {e}") from e
        units = [g for g in rx.groupindex if g in UNITS]
        if len(units) != 1:
            raise ValueError(f"regex {v!r} needs exactly one named group giving the unit: (?P<ms>...), "
                             "(?P<us>...) or (?P<s>...)")
        return v

    @model_validator(mode="after")
    def _model_reaches_command(self) -> CommandOptions:
        used = _fields(self.command) | (_fields(self.push) if self.push else set())
        if not used & {"model", "model_name"}:
            raise ValueError("neither `command` nor `push` names the model file: put {model} (its path on the "
                             "node) or {model_name} (its file name) where the runtime reads it")
        return self


def parse_latency_ms(output: str, regex: str) -> float | None:
    """The latency (ms) that ``regex`` finds last in ``output``, or ``None``; its named group gives the unit."""
    rx = re.compile(regex)
    unit = next(g for g in rx.groupindex if g in UNITS)
    found = list(rx.finditer(output))
    if not found:
        return None
    return float(found[-1].group(unit)) * UNITS[unit]


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= TAIL else "..." + text[-TAIL:]


class CommandDevice(SampledDevice):
    """Times architectures with a user's command on the node carrying ``device:<name>`` (or here: ``local``)."""

    kind = "command"

    def __init__(self, resource_name: str, space: SearchSpace, options: CommandOptions) -> None:
        if not resource_name:
            raise DeviceError("command device needs a name: command:<name> runs on the Ray node carrying "
                              "resource device:<name>")
        self.name = f"command:{resource_name}"
        self.resource = f"device:{resource_name}"
        self.space = space
        self.options = options
        if options.local:
            self.check_programs()

    def cluster_resources(self) -> dict[str, float]:
        return {} if self.options.local else {self.resource: 1.0}

    # -- on the node ------------------------------------------------------------
    def _argv(self, template: str, values: Mapping[str, str]) -> list[str] | str:
        if self.options.shell:
            return template.format(**{k: shlex.quote(v) for k, v in values.items()})
        return [part.format(**values) for part in shlex.split(template)]

    def check_programs(self) -> None:
        """The templates' programs (their first words) exist on this host; with ``shell``, the shell checks."""
        if self.options.shell:
            return  # the shell finds the programs (exit 127 says it did not)
        for template in filter(None, (self.options.push, self.options.command)):
            try:
                words = shlex.split(template)
            except ValueError as e:
                raise DeviceError(f"{self.name}: cannot split command {template!r}: {e}") from e
            prog = words[0] if words else ""
            if "{" in prog:
                continue  # a placeholder names the program: known only per model
            if shutil.which(prog) is None:
                raise DeviceError(f"{self.name}: program {prog!r} of command {template!r} not found on host "
                                  f"{socket.gethostname()!r} (PATH={os.environ.get('PATH', '')}); install it there "
                                  "or give its absolute path")

    def _run(self, what: str, cmd: list[str] | str, arch_id: str) -> str:
        env = {**os.environ, **self.options.env}
        try:
            proc = subprocess.Popen(cmd, shell=self.options.shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env=env, start_new_session=True)
        except FileNotFoundError as e:
            raise DeviceError(f"{self.name}: program {e.filename!r} not found on host {socket.gethostname()!r}; "
                              "install it there or give its absolute path") from e
        except PermissionError as e:
            raise DeviceError(f"{self.name}: program {e.filename!r} is not executable on host "
                              f"{socket.gethostname()!r}: {e}") from e
        try:
            out, _ = proc.communicate(timeout=self.options.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a shell's children too
            out, _ = proc.communicate()
            raise DeviceError(f"{self.name}: {what} timed out after {self.options.timeout_s:g} s for {arch_id} "
                              f"(killed); raise option timeout_s if the runtime is this slow. Output so far: "
                              f"{_tail(out or '')!r}") from None
        if proc.returncode != 0:
            hint = " (127: the shell did not find the program)" if self.options.shell and proc.returncode == 127 \
                else ""
            raise DeviceError(f"{self.name}: {what} exited with status {proc.returncode}{hint} for {arch_id}: "
                              f"{cmd!r}; output: {_tail(out)!r}")
        return out

    def _export(self, model: Any, path: Path, arch_id: str) -> None:
        import torch

        example = torch.randn(*arch_input_shape(self.space, arch_id, self.options.batch_size))
        if self.options.format == "onnx":
            from orchestrator.latency.devices.measured import export_onnx

            path.write_bytes(export_onnx(model, example))
        else:
            with torch.no_grad():
                torch.jit.trace(model, example).save(str(path))

    def measure(self, arch: Mapping[str, Any]) -> LatencySample:
        """One architecture, on this host: export, push, run ``runs`` times, parse."""
        from orchestrator.latency.devices.measured import arch_network, n_params

        arch_id = self.space.arch_id(arch)
        model = arch_network(self.space, arch)
        suffix = ".onnx" if self.options.format == "onnx" else ".pt"
        name = "hwnas-" + hashlib.sha1(arch_id.encode()).hexdigest()[:16] + suffix
        with tempfile.TemporaryDirectory(prefix="hwnas-cmd-") as tmp:
            folder = Path(self.options.model_dir or tmp)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            try:
                times = self._export_and_run(model, path, name, arch_id)
            finally:
                path.unlink(missing_ok=True)
        return summarize(arch_id, times).with_params(n_params(model))

    def _export_and_run(self, model: Any, path: Path, name: str, arch_id: str) -> list[float]:
        self._export(model, path, arch_id)
        values = {"model": str(path), "model_name": name, "batch_size": str(self.options.batch_size),
                  "input_shape": ",".join(map(str, arch_input_shape(self.space, arch_id, self.options.batch_size)))}
        if self.options.push:
            self._run("push command", self._argv(self.options.push, values), arch_id)
        times = []
        for _ in range(self.options.runs):
            out = self._run("command", self._argv(self.options.command, values), arch_id)
            ms = parse_latency_ms(out, self.options.regex)
            if ms is None:
                # the command ran and exited 0: this architecture's output, not the device, is at fault (a
                # device whose every output fails the regex is ended by the sweep's bound on refusals)
                raise ArchitectureRefused(f"{self.name}: the output of {self.options.command!r} for {arch_id} has "
                                          f"no latency matching regex {self.options.regex!r} (set option regex); "
                                          f"output: {_tail(out)!r}", arch_id)
            times.append(ms)
        return times

    def measure_many(self, archs: Sequence[Mapping[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[LatencySample]:
        out: list[LatencySample] = []
        for arch in archs:
            try:
                out.append(self.measure(arch))
            except ArchitectureRefused as e:  # with what this call measured before it
                raise e.after(out) from None
            if progress is not None:
                progress(1)
        return out

    # -- from the driver ---------------------------------------------------------
    def samples(self, arch_ids: Sequence[str], progress: Callable[[int], None] | None = None
                ) -> list[LatencySample]:
        if self.options.local:
            return self.measure_many([self.space.parse(a) for a in arch_ids], progress)
        import ray

        from orchestrator.latency.service import require_resource

        if not ray.is_initialized():
            from orchestrator.ray_connect import cluster_address, connect

            connect(cluster_address(self.options.address), log_to_driver=False)
        require_resource(self.resource)
        ids = list(arch_ids)
        task = ray.remote(_command_task).options(resources={self.resource: 1}, num_cpus=0, max_retries=0)
        spec = self.space.spec()
        opts = self.options.model_dump(mode="json")
        chunk = self.options.chunk
        refs = [task.remote(spec, self.name.partition(":")[2], opts, ids[i:i + chunk])
                for i in range(0, len(ids), chunk)]
        out: list[LatencySample] = []
        try:
            for ref in refs:
                rows = ray.get(ref)
                out.extend(LatencySample(**r) for r in rows)
                if progress is not None:
                    progress(len(rows))
        except ray.exceptions.RayTaskError as e:
            for ref in refs:
                ray.cancel(ref)
            from orchestrator.latency.devices.measured import raise_if_refused

            raise_if_refused(e, out, progress)  # one architecture: with the chunks measured before it
            cause = e.cause if isinstance(e.cause, DeviceError) else None
            raise (DeviceError(str(cause)) if cause else DeviceError(f"{self.name}: measurement failed: {e}")) \
                from None
        return out


def _command_task(space_spec: Any, resource_name: str, options: dict[str, Any], arch_ids: list[str]
                  ) -> list[dict[str, Any]]:
    space = space_spec.build()
    device = CommandDevice(resource_name, space, CommandOptions.model_validate({**options, "local": True}))
    return [s.to_dict() for s in device.measure_many([space.parse(a) for a in arch_ids])]


def _build(name: str, space: SearchSpace, options: Any) -> CommandDevice:
    return CommandDevice(name, space, options)


PREFIXES.add("command:", DeviceType("command", CommandOptions, _build, pattern="command:<name>",
                                    help="a user's command (adb, ssh, a benchmark binary) timing the exported "
                                         "model on the Ray node carrying device:<name>"))
