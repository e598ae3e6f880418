"""The command device with a real command: a small Python script that runs ONNX Runtime on the exported file."""

from __future__ import annotations

import shlex
import sys
import textwrap

import pytest

from orchestrator.errors import DeviceError
from orchestrator.latency.devices import DeviceCatalog, get_device
from orchestrator.latency.devices.command import DEFAULT_REGEX, parse_latency_ms

CELLS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
]
ORT_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import onnxruntime as ort

    path, shape = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        for _ in range(5):
            sess.run(None, feed)
        times.append((time.perf_counter() - t0) / 5 * 1e3)
    print("loaded", path)
    print(f"median_ms={float(np.median(times)):.4f}")
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("cmd") / "ort_bench.py"
    p.write_text(ORT_SCRIPT)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(p))}"


def test_default_regex_and_units():
    assert parse_latency_ms("warm\nmedian_ms=1.5\nmedian ms: 2.25\n", DEFAULT_REGEX) == 2.25  # the last match
    assert parse_latency_ms("nothing here", DEFAULT_REGEX) is None
    tflite = r"Inference \(avg\): (?P<us>[0-9.eE+-]+)"
    out = "Inference timings in us: Init: 3456, First inference: 7890, Warmup (avg): 1300.5, Inference (avg): 1234.5"
    assert parse_latency_ms(out, tflite) == pytest.approx(1.2345)
    assert parse_latency_ms("took 0.5 s", r"took (?P<s>[0-9.]+) s") == 500.0


def test_real_onnxruntime_command_locally(small_space, script):
    dev = get_device("command:laptop", small_space, command=script + " {model} {input_shape}", local=True, runs=2)
    samples = dev.measure_many([small_space.parse(a) for a in CELLS])
    assert [s.arch for s in samples] == CELLS and all(s.repeats == 2 and s.median_ms > 0 for s in samples)
    assert samples[0].median_ms > samples[1].median_ms  # nine 3x3 convolutions vs one skip connection
    n = [sum(p.numel() for p in small_space.build(small_space.parse(a)).parameters()) for a in CELLS]
    assert [s.n_params for s in samples] == n
    assert dev.kind == "command" and dev.cluster_resources() == {}


def test_push_and_model_dir(small_space, script, tmp_path):
    dest = tmp_path / "device"
    dest.mkdir()
    dev = get_device("command:laptop", small_space, local=True, model_dir=str(tmp_path / "out"),
                     push=f"cp {{model}} {dest}/{{model_name}}",
                     command=script + f" {dest}/{{model_name}} {{input_shape}}")
    s = dev.measure(small_space.parse(CELLS[1]))
    assert s.median_ms > 0
    assert [p.suffix for p in dest.iterdir()] == [".onnx"]  # pushed where the template said
    assert list((tmp_path / "out").iterdir()) == []  # the node's copy is removed after timing


def test_each_failure_is_a_clear_error(small_space, script, tmp_path):
    arch = small_space.parse(CELLS[1])

    def dev(**o):
        return get_device("command:laptop", small_space, local=True, **o)

    with pytest.raises(DeviceError, match="program 'no-such-benchmark' .*not found on host"):
        dev(command="no-such-benchmark --graph={model}")
    with pytest.raises(DeviceError, match=r"timed out after 0.5 s .*raise option timeout_s"):
        dev(command="sleep 30 && echo {model}", shell=True, timeout_s=0.5).measure(arch)  # sh and its child
    with pytest.raises(DeviceError, match=r"exited with status 3 .*boom"):
        dev(command=f"{shlex.quote(sys.executable)} -c 'import sys; print(\"boom\"); sys.exit(3)' {{model}}"
            ).measure(arch)
    with pytest.raises(DeviceError, match=r"has no latency matching regex .*set option regex.*loaded"):
        dev(command=script + " {model} {input_shape}", regex=r"avg=(?P<ms>[0-9.]+)").measure(arch)
    with pytest.raises(DeviceError, match=r"status 127 \(127: the shell did not find the program\)"):
        dev(command="no-such-benchmark {model}", shell=True).measure(arch)


def test_bad_options_are_refused_before_any_work(small_space):
    cat = DeviceCatalog(small_space)
    probs = cat.problems("command:phone", {"command": "adb shell ./bench --graph={graph}"})
    assert any("unknown placeholder(s) {graph}" in p and "{model}" in p for p in probs)
    probs = cat.problems("command:phone", {"command": "./bench", "regex": r"avg=([0-9.]+)"})
    assert any("one named group giving the unit" in p for p in probs)
    probs = cat.problems("command:phone", {"command": "./bench --graph=/data/m.onnx"})
    assert any("names the model file" in p for p in probs)
    probs = cat.problems("command:phone", {"comand": "./bench {model}"})
    assert any("unknown option (valid options: command, push, regex" in p for p in probs)
    assert cat.problems("command:phone", {"command": "adb shell ./bench --graph={model}"}) == []
    assert "command:<name>" in cat.names()


@pytest.mark.ray
def test_runs_on_the_node_carrying_the_resource(ray_cluster, small_space, script):
    dev = get_device("command:testphone", small_space, command=script + " {model} {input_shape}")
    assert dev.cluster_resources() == {"device:testphone": 1.0}
    y = dev.latency_ms(CELLS)
    assert y.shape == (2,) and y[0] > y[1] > 0
    bad = get_device("command:testphone", small_space, command="no-such-benchmark {model}")
    with pytest.raises(DeviceError, match="'no-such-benchmark' .*not found on host"):
        bad.latency_ms(CELLS[:1])
    assert dev.latency_ms(CELLS[1:])[0] > 0  # the failure cost nothing to the next measurement
    with pytest.raises(DeviceError, match="no node of the Ray cluster carries resource 'device:pixel9'"):
        get_device("command:pixel9", small_space, command=script + " {model}").latency_ms(CELLS[:1])
