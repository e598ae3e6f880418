"""``hwnas latency lut``: a lookup table built by timing each block in place on a measured device."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.errors import DeviceError
from orchestrator.latency.devices import DeviceCatalog
from orchestrator.latency.devices.lut import read_lut
from orchestrator.latency.lut_build import build_lut, evaluate_lut, layer_inputs, lut_latency, reference_arch, write_lut
from orchestrator.latency.measurement import MeasurementProtocol
from search_spaces.base import get_space

FAST = MeasurementProtocol(warmup=1, repeats=3, min_repeat_ms=1.0)


@pytest.fixture(scope="module")
def tiny():
    """FBNet at 16 x 16 input and a tenth of its widths: the 22-layer plan, each block in milliseconds."""
    return get_space("fbnet", resolution=16, width_mult=0.1, num_classes=4)


@pytest.fixture(scope="module")
def built(tiny):
    device = DeviceCatalog(tiny).make("torch-cpu", defaults={"protocol": FAST, "isolate": False})
    return device, build_lut(device, tiny)


def test_layer_inputs_follow_the_stride_plan(tiny):
    shapes = layer_inputs(tiny, reference_arch(tiny))
    assert len(shapes) == 22
    for (c_in, _, _), shape in zip(tiny.layer_shapes, shapes, strict=True):
        assert shape[1] == c_in
    # CIFAR strides 1, 1, 2, 2, 1, 2, 1 over stages of 1, 4, 4, 4, 4, 4, 1 layers (stem stride 1)
    sides = [s[2] for s in shapes]
    assert sides[0] == 16 and sides[5] == 16 and sides[6] == 8 and sides[10] == 4 and sides[18] == 2


def test_built_table_reads_back_and_sums(built, tiny, tmp_path, rng):
    device, table = built
    assert table.devices == ["torch-cpu"]
    d = table.deltas["torch-cpu"]
    assert d.shape == (22, 9) and np.isfinite(d).all()
    assert (d[:, 0] == 0).all()  # the reference block (k3_e1) is the base
    path = write_lut(tmp_path / "lut.csv", table)
    back = read_lut(path, tiny)
    np.testing.assert_allclose(back.deltas["torch-cpu"], d)
    assert back.base["torch-cpu"] == pytest.approx(table.base["torch-cpu"])
    ids = [tiny.arch_id(tiny.sample(rng)) for _ in range(5)]
    by_hand = [table.base["torch-cpu"] + sum(d[i, tiny.blocks.index(op)] for i, op in enumerate(a.split("-")))
               for a in ids]
    np.testing.assert_allclose(lut_latency(back, "torch-cpu", tiny, ids), by_hand)


def test_identity_skip_is_cheaper_than_a_conv_block_in_place(built):
    """Layers that keep width and stride make 'skip' the identity: its in-place time is far below k3_e1's."""
    _, table = built
    d = table.deltas["torch-cpu"]
    keep = [2, 3, 4, 7, 8]  # stage 2 and 3's later layers: same width, stride 1
    assert (d[keep, 8] < 0).all()


def test_evaluate_lut_compares_whole_networks_with_the_sum(built, tiny):
    device, table = built
    err = evaluate_lut(device, tiny, table, 4, np.random.default_rng(0))
    assert err.n == 4 and (err.measured_ms > 0).all()
    assert err.mape == pytest.approx(100 * np.mean(np.abs(err.table_ms - err.measured_ms) / err.measured_ms))


def test_lut_build_rejects_what_it_cannot_time(tiny):
    with pytest.raises(DeviceError, match="measured runtime"):
        build_lut(object(), tiny)
    nb201 = get_space("nb201")
    device = DeviceCatalog(nb201).make("torch-cpu", defaults={"protocol": FAST, "isolate": False})
    with pytest.raises(DeviceError, match="layer-wise"):
        build_lut(device, nb201)


@pytest.mark.slow
def test_cli_lut_writes_a_table_and_reports_its_error(tmp_path, capsys):
    out = tmp_path / "cpu.csv"
    rc = main(["latency", "lut", "--device", "torch-cpu", "--space-option", "resolution=8",
               "--space-option", "width_mult=0.1", "--space-option", "num_classes=4", "--out", str(out),
               "--check", "3", "--warmup", "1", "--repeats", "3", "--min-repeat-ms", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "MAPE" in text and "SRCC" in text
    assert read_lut(out, get_space("fbnet", resolution=8, width_mult=0.1, num_classes=4)).devices == ["torch-cpu"]
    assert main(["latency", "lut", "--device", "torch-cpu", "--space-option", "resolution=7",
                 "--out", str(out)]) == 2


@pytest.mark.parametrize("extra, message", [
    (["--repeats", "0"], "device 'torch-cpu' option 'protocol.repeats': Input should be greater than or equal to 3"),
    (["--warmup", "-1"], "option 'protocol.warmup': Input should be greater than or equal to 0"),
    (["--min-repeat-ms", "nan"], "option 'protocol.min_repeat_ms': Input should be greater than or equal to 0"),
    (["--space-option", "width_mult=abc"], "space 'fbnet': options {'width_mult': 'abc'} cannot be used"),
])
def test_cli_lut_bad_protocol_or_option_values_are_one_line_errors(tmp_path, capsys, extra, message):
    """Were a pydantic ValidationError and a TypeError traceback (break test); now exit 2 naming the option."""
    assert main(["latency", "lut", "--device", "torch-cpu", "--out", str(tmp_path / "x.csv"), "--check", "0",
                 *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()
