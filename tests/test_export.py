"""ONNX export: ONNX Runtime matches PyTorch (fp32 within 1e-4), int8 is close, the ONNX model
loads from a model folder and serves like any model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from patentcpc.kinds.onnx.model import OnnxCPCModel  # noqa: E402
from patentcpc.kinds.transformer.engine import predict_logits  # noqa: E402
from patentcpc.kinds.transformer.export import export_onnx, int8_path, parity  # noqa: E402

TEXTS = ["Plough", "Semiconductor transistor with a gate oxide layer on silicon " * 8, "wireless network cell",
         "x " * 60]


@pytest.fixture(scope="module", params=["modernbert-tiny", "bert-tiny"])
def exported(request, tmp_path_factory):
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel

    torch.manual_seed(0)
    model = TransformerCPCModel.create(["A01B", "H01L", "H04L"], arch=request.param, max_length=96, dropout=0.0,
                                       device="cpu")
    model.network.eval()
    folder = tmp_path_factory.mktemp(request.param) / "model"
    model.save(folder)
    path = export_onnx(model, folder / "onnx" / "model.onnx", quantize=True)
    return model, folder, path


def test_onnx_matches_pytorch(exported):
    model, _, path = exported
    assert parity(model, path, TEXTS) <= 1e-4
    assert parity(model, path, TEXTS[:1]) <= 1e-4  # batch of one, no padding


def test_int8_is_close_and_loads_from_folder(exported):
    model, folder, path = exported
    assert int8_path(path).exists()
    q = OnnxCPCModel.from_folder(folder, int8_path(path))
    fp = OnnxCPCModel.from_folder(folder)
    ref = predict_logits(model, TEXTS)
    assert np.abs(q.logits(TEXTS) - ref).max() < 0.1
    np.testing.assert_allclose(fp.scores(TEXTS), 1 / (1 + np.exp(-ref)), atol=1e-5)
    assert fp.labels == model.labels


def test_onnx_model_serves(exported):
    from fastapi.testclient import TestClient

    from patentcpc.serving import create_app

    _, folder, _ = exported
    with TestClient(create_app(OnnxCPCModel.from_folder(folder))) as c:
        r = c.post("/predict", json={"documents": [{"title": "Plough", "abstract": "Tines for soil"}]})
        assert r.status_code == 200, r.text
        assert len(r.json()["documents"][0]["predictions"]) == 3


def test_export_refuses_linear_models():
    from conftest import TINY_DOCS
    from patentcpc.errors import ModelError
    from patentcpc.kinds.linear.model import LinearCPCModel

    with pytest.raises(ModelError):
        export_onnx(LinearCPCModel.fit([t for t, _ in TINY_DOCS], [[c] for _, c in TINY_DOCS]), "x.onnx")


def test_export_and_predict_batch_cli(exported, tmp_path, tiny_jsonl):
    from typer.testing import CliRunner

    from patentcpc.cli import app

    _, folder, _ = exported
    onnx_file = tmp_path / "m.onnx"
    r = CliRunner().invoke(app, ["export", "onnx", "--model", str(folder), "--output", str(onnx_file)])
    assert r.exit_code == 0, r.output
    assert onnx_file.exists() and "max |onnx - torch|" in r.output
    out = tmp_path / "p.parquet"
    r = CliRunner().invoke(app, ["predict-batch", "--model", str(folder), "--onnx", str(onnx_file), "--input",
                                 str(tiny_jsonl), "--output", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 24


def test_onnx_is_a_registered_kind(exported, tmp_path):
    """load_model(folder, onnx_file=...) and a saved ``onnx`` folder both give the same scores."""
    from patentcpc.api import load_model
    from patentcpc.models.artifact import read_manifest
    from patentcpc.registry import kinds

    model, folder, path = exported
    assert "onnx" in kinds()
    m = load_model(folder, onnx_file=path)
    assert m.kind == "onnx" and m.labels == model.labels
    m.save(tmp_path / "onnx-model")
    assert read_manifest(tmp_path / "onnx-model").kind == "onnx"
    again = load_model(tmp_path / "onnx-model")
    assert type(again).__name__ == "OnnxCPCModel"
    ref = 1 / (1 + np.exp(-predict_logits(model, TEXTS)))
    np.testing.assert_allclose(again.predict_scores(TEXTS), ref, atol=1e-5)
    (preds,) = again.predict(TEXTS[:1], top_k=2)
    assert [p.code for p in preds] == [model.labels[j] for j in np.argsort(-ref[0], kind="stable")[:2]]
