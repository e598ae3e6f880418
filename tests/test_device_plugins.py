"""Device plug-ins through the ``hwnas.devices`` entry point: a tiny package made for the test, put on sys.path
with a .dist-info holding its entry_points.txt (nothing installed into the venv)."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from orchestrator.errors import DeviceError
from orchestrator.latency.devices.catalog import DeviceCatalog, get_device
from orchestrator.latency.devices.registry import DEVICES, PREFIXES

PLUGIN = textwrap.dedent('''
    """A third-party device: latency = a fixed cost per parameter (a toy accelerator model)."""
    import numpy as np
    from pydantic import BaseModel, ConfigDict, Field

    from orchestrator.latency.devices.protocol import DeviceSpec, DeviceType


    class NpuOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        ns_per_param: float = Field(2.0, gt=0)


    class Npu:
        kind = "plugin"
        deterministic = True

        def __init__(self, name, space, options):
            self.name, self.space, self.options = name, space, options

        def latency_ms(self, ids):
            nets = [self.space.build(self.space.parse(a)) for a in ids]
            return np.array([sum(p.numel() for p in n.parameters()) * self.options.ns_per_param * 1e-6
                             for n in nets])

        def truth(self, ids):
            return self.latency_ms(ids)

        def domain(self):
            return None

        def cluster_resources(self):
            return {}

        def spec(self):
            return DeviceSpec(name=self.name, options=self.options.model_dump())

        def close(self):
            pass


    NPU = DeviceType("plugin", NpuOptions, lambda name, space, o: Npu(name, space, o), help="a toy NPU")


    def board():
        return DeviceType("plugin", NpuOptions, lambda name, space, o: Npu("board:" + name, space, o),
                          help="a toy board family", pattern="board:<name>")


    NOT_A_DEVICE = 42
''')


@pytest.fixture
def plugin_path(tmp_path):
    site = tmp_path / "site"
    pkg = site / "hwnas_toy_npu"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    info = site / "hwnas_toy_npu-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hwnas-toy-npu\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hwnas.devices]\ntoy-npu = hwnas_toy_npu:NPU\nboard: = hwnas_toy_npu:board\n"
        "broken = hwnas_toy_npu:NOT_A_DEVICE\ntorch-cpu = hwnas_toy_npu:NPU\n")
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    for reg, name in ((DEVICES, "toy-npu"), (PREFIXES, "board:")):  # leave the registries as they were
        reg._items.pop(name, None)
        reg._help.pop(name, None)
    sys.modules.pop("hwnas_toy_npu", None)


def test_plugin_devices_behave_like_builtins(plugin_path, small_space, caplog, capsys):
    from orchestrator.latency.devices.plugins import plugin_errors

    cat = DeviceCatalog(small_space)
    assert "toy-npu" in cat.names() and "board:<name>" in cat.names()
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    n = sum(p.numel() for p in small_space.build(small_space.parse(arch)).parameters())
    dev = get_device("toy-npu", small_space, ns_per_param=4.0)
    assert dev.latency_ms([arch])[0] == pytest.approx(n * 4e-6)
    board = cat.make("board:rk3588")
    assert board.name == "board:rk3588" and board.latency_ms([arch])[0] == pytest.approx(n * 2e-6)
    # validation names the plug-in's options, as for a built-in
    probs = cat.problems("toy-npu", {"ns_per_parm": 1.0})
    assert probs and "unknown option (valid options: ns_per_param)" in probs[0]
    with pytest.raises(DeviceError, match="greater than 0"):
        get_device("toy-npu", small_space, ns_per_param=0)
    # a broken plug-in and one taking a built-in's name are skipped with a warning; the built-in stays
    errs = plugin_errors()
    assert "not an orchestrator.latency.devices.protocol.DeviceType" in errs["broken"]
    assert "already registered" in errs["torch-cpu"] and "hwnas-toy-npu 0.1" in errs["torch-cpu"]
    assert "broken" not in cat.names() and DEVICES.get("torch-cpu").kind == "measured"
    # hwnas list shows them
    from orchestrator.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy-npu" in out and "[plug-in: hwnas-toy-npu]" in out and "board:<name>" in out
    assert isinstance(dev.latency_ms([arch]), np.ndarray)
