"""Export a chosen subnet: the arch JSON, a ``torch.export`` program (.pt2) and ONNX.

ONNX uses PyTorch's dynamo-based exporter (it needs ``onnxscript``); where it
fails on a model, the TorchScript-based exporter is tried, and the file says
which one wrote it. Both files take any batch size (a dynamic first dimension:
what a deployed classifier is fed, and what the MLflow model's signature says).
``verify_export`` checks that both files reproduce the subnet's outputs at
batch 1 and 4.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from search_spaces.base import arch_input_shape

log = logging.getLogger(__name__)

BATCH = "batch"  # the name of the dynamic first dimension of the input and the logits
MAX_BATCH = 1 << 16  # the largest batch torch.export's program is told to expect
VERIFY_BATCHES = (1, 4)


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """The exporters' own chatter (torch.onnx warns that torchvision's ops are not registered, torch.export
    emits FutureWarnings about its internals) hidden; real failures still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass
class ExportedSubnet:
    arch_json: Path
    program: Path
    onnx: Path
    onnx_exporter: str


def export_subnet(space: Any, supernet: nn.Module, arch: Mapping[str, Any], out_dir: str | Path,
                  batch_size: int = 1, name: str = "subnet", extra: Mapping[str, Any] | None = None) -> ExportedSubnet:
    """Extract ``arch`` from ``supernet`` (weights copied, eval mode) and write its three files."""
    net = space.extract(supernet, arch)
    return export_network(net, space, arch, out_dir, batch_size, name,
                          {"weights": "supernet (inherited, BatchNorm as trained)", **(extra or {})})


def export_network(net: nn.Module, space: Any, arch: Mapping[str, Any], out_dir: str | Path, batch_size: int = 1,
                   name: str = "subnet", extra: Mapping[str, Any] | None = None) -> ExportedSubnet:
    """Write ``net`` (the network of ``arch`` in ``space``) as arch JSON (with the space's spec and the
    parameter count), a ``torch.export`` program and ONNX, both with a dynamic batch dimension: input
    ``(batch, channels, r, r)`` at the architecture's own resolution ``r`` (``arch_input_shape``: the space's
    where the resolution is not searched), logits ``(batch, classes)`` for any batch from 1 to 65,536
    (``batch_size`` is only the example traced; the JSON's ``input_shape`` has ``batch`` in front)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = net.cpu().eval()
    # traced at batch >= 2: torch.export would specialise a dimension of size 1 to the constant 1
    example = torch.randn(*arch_input_shape(space, arch, max(batch_size, 2)))
    arch_json = out / f"{name}.json"
    arch_json.write_text(json.dumps({"space": space.name, "space_spec": space.spec().model_dump(),
                                     "arch_id": space.arch_id(arch), "arch": dict(arch),
                                     "n_params": int(sum(p.numel() for p in net.parameters())),
                                     "input_shape": [BATCH, *example.shape[1:]], **(extra or {})}, indent=2))
    batch = torch.export.Dim(BATCH, min=1, max=MAX_BATCH)
    with torch.no_grad(), quiet_exporters():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        pt2 = out / f"{name}.pt2"
        torch.export.save(program, pt2)
        onnx_path = out / f"{name}.onnx"
        exporter = "dynamo"
        try:
            torch.onnx.export(net, (example,), str(onnx_path), dynamo=True, input_names=["input"],
                              output_names=["logits"], external_data=False, verbose=False,
                              dynamic_shapes=({0: batch},))
        except Exception as e:  # noqa: BLE001 - exporter coverage varies by op; fall back and say so
            log.warning("dynamo ONNX export failed (%s: %s); using the TorchScript exporter", type(e).__name__, e)
            exporter = "torchscript"
            torch.onnx.export(net, (example,), str(onnx_path), dynamo=False, input_names=["input"],
                              output_names=["logits"], opset_version=17,
                              dynamic_axes={"input": {0: BATCH}, "logits": {0: BATCH}})
    log.info("exported %s to %s (.json, .pt2, .onnx via %s)", space.arch_id(arch), out, exporter)
    return ExportedSubnet(arch_json, pt2, onnx_path, exporter)


def verify_export(space: Any, supernet: nn.Module, exported: ExportedSubnet, atol: float = 1e-4) -> dict[str, float]:
    """Max absolute difference of the .pt2 and .onnx outputs from the subnet's own, on fresh inputs of each
    batch size in ``VERIFY_BATCHES`` (1 and 4)."""
    import onnxruntime as ort

    meta = json.loads(exported.arch_json.read_text())
    net = space.extract(supernet, meta["arch"]).cpu().eval()
    prog = torch.export.load(exported.program).module()
    sess = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    d_pt2 = d_onnx = 0.0
    for b in VERIFY_BATCHES:
        x = torch.randn(b, *meta["input_shape"][1:], generator=torch.Generator().manual_seed(b))
        with torch.no_grad():
            ref = net(x).numpy()
            d_pt2 = max(d_pt2, float(np.abs(prog(x).numpy() - ref).max()))
        (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        d_onnx = max(d_onnx, float(np.abs(out - ref).max()))
    if max(d_pt2, d_onnx) > atol:
        raise AssertionError(f"exported subnet differs from the supernet's: pt2 {d_pt2:.2e}, onnx {d_onnx:.2e}")
    return {"pt2_max_abs_diff": d_pt2, "onnx_max_abs_diff": d_onnx}
