"""An exported front network and its MLflow model agree (issue 17, kind 4): a dynamic batch dimension in the
ONNX file, the torch.export program and the model signature, fed batch 1 and 4 through each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from orchestrator.supernet.export import export_network
from orchestrator.tracking import Tracker
from search_spaces.nb201 import NB201Space


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    space = NB201Space(channels=4, cells_per_stage=1)
    arch = space.sample(np.random.default_rng(5))
    net = space.build(arch).eval()
    out = tmp_path_factory.mktemp("export")
    exp = export_network(net, space, arch, out, name="front0")
    return space, net, exp


def _inputs(space, b):
    return torch.randn(b, *space.input_shape(1)[1:], generator=torch.Generator().manual_seed(b))


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_and_program_take_any_batch(exported, batch):
    import onnxruntime as ort

    space, net, exp = exported
    x = _inputs(space, batch)
    with torch.no_grad():
        ref = net(x).numpy()
    sess = ort.InferenceSession(str(exp.onnx), providers=["CPUExecutionProvider"])
    assert not isinstance(sess.get_inputs()[0].shape[0], int)  # the file says: any batch
    (y,) = sess.run(None, {"input": x.numpy()})
    assert y.shape == ref.shape == (batch, 10) and np.abs(y - ref).max() < 1e-4
    prog = torch.export.load(exp.program).module()
    with torch.no_grad():
        assert np.abs(prog(x).numpy() - ref).max() < 1e-4
    assert json.loads(exp.arch_json.read_text())["input_shape"] == ["batch", 3, 32, 32]


def test_mlflow_model_signature_matches_the_file(exported, tmp_path):
    import mlflow

    space, net, exp = exported
    t = Tracker(f"sqlite:///{tmp_path}/m.db", "exports")
    t.start(tmp_path / "run", "r", resume=False)
    uri = t.onnx_model(t.parent_id, exp.onnx, "front0")
    model = mlflow.pyfunc.load_model(uri)
    (inp,) = model.metadata.get_input_schema().inputs
    assert inp.shape == (-1, 3, 32, 32) and inp.name == "input"
    assert model.metadata.get_output_schema().inputs[0].shape == (-1, 10)
    for b in (1, 4):
        x = _inputs(space, b)
        y = model.predict(x.numpy())
        y = y["logits"] if isinstance(y, dict) else np.asarray(y)
        with torch.no_grad():
            assert np.asarray(y).shape == (b, 10) and np.abs(np.asarray(y) - net(x).numpy()).max() < 1e-4
