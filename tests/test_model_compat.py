"""Model folders written by the previous release (before the kind registry) load and predict the same
scores with the current code, for every kind (fixtures: tests/fixtures/previous_release/README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import patentcpc

FIXTURES = Path(__file__).parent / "fixtures" / "previous_release"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED["models"]))
def test_a_previous_release_folder_loads_and_predicts_the_same(name, tmp_path):
    if name in ("transformer", "onnx", "causal_lm", "ensemble", "router"):  # an encoder or decoder inside
        pytest.importorskip("torch")
    if name == "omikuji":
        pytest.importorskip("omikuji")
    if name == "onnx":
        pytest.importorskip("onnxruntime")
    want = EXPECTED["models"][name]
    folder = tmp_path / name  # a copy: loading never needs to write, but the fixture stays pristine
    src = "transformer" if name == "onnx" else name
    shutil.copytree(FIXTURES / src, tmp_path / src, dirs_exist_ok=True)
    if name == "onnx":
        model = patentcpc.load_model(tmp_path / src, onnx_file=tmp_path / src / "onnx" / "model.onnx")
    else:
        model = patentcpc.load_model(folder)
    assert model.kind == want["kind"]
    assert list(model.labels) == want["labels"]
    texts = EXPECTED["texts"]
    raw = np.asarray(model.raw_scores(texts), dtype=float)  # before the calibrator
    np.testing.assert_allclose(raw, np.asarray(want["raw_scores"]), rtol=1e-5, atol=2e-6)
    scores = np.asarray(model.predict_scores(texts), dtype=float)
    np.testing.assert_allclose(scores, np.asarray(want["scores"]), rtol=1e-5, atol=2e-6)
    assert len(np.unique(np.round(scores, 4))) > 2 * len(model.labels) // 3  # the fixture is not saturated
    if "routed" in want:  # the router sends these documents to its second member, and only these
        assert model.route(np.asarray(model.members[0].scores(texts))).tolist() == want["routed"]
        assert any(want["routed"]) and not all(want["routed"])
    assert [[p.code for p in ps] for ps in model.predict(EXPECTED["texts"], top_k=3)] == want["top"]
    if name in ("linear", "scheme", "omikuji"):  # saved before linear.title_weight: no line is weighed
        joined = [f"{a}\n{b}" for a, b in zip(texts, texts[1:], strict=False)]
        np.testing.assert_array_equal(model.raw_scores(joined), model.raw_scores([t.replace("\n", " ")
                                                                                 for t in joined]))
