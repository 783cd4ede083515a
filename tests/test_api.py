"""The public API: patentcpc.load_model / train / evaluate, CPCModel.predict and Prediction."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import patentcpc
from patentcpc.errors import ConfigError, DataError, ModelError


@pytest.fixture
def trained(tiny_jsonl, tmp_path):
    return patentcpc.train(model="tfidf", data=str(tiny_jsonl), eval_data=str(tiny_jsonl),
                           output=tmp_path / "m", linear={"C": 5.0})


def test_all_is_pinned():
    assert sorted(patentcpc.__all__) == sorted([
        "CPCModel", "ConfigError", "DataError", "ModelError", "PatentCPCError", "Prediction", "TrainConfig",
        "__version__", "evaluate", "load_model", "read_documents", "train"])
    for name in patentcpc.__all__:
        assert getattr(patentcpc, name) is not None
    with pytest.raises(AttributeError):
        patentcpc.no_such_name  # noqa: B018


# The lazy-import policy (issue 28): heavy libraries are imported inside the functions that use them;
# `import patentcpc`, its public names, the registry and every kind's package (its declaration) load none.
# (`patentcpc --help`: tests/test_safety_model.py::test_help_and_linear_predict_import_nothing_heavy.)
HEAVY = ("torch", "transformers", "sklearn", "datasets", "scipy", "onnxruntime", "fastapi", "pandas")


def test_import_is_light():
    from pathlib import Path

    kinds = sorted(p.parent.name for p in (Path(patentcpc.__file__).parent / "kinds").glob("*/__init__.py"))
    assert len(kinds) >= 8, kinds
    code = ("import sys, patentcpc, patentcpc.registry; patentcpc.load_model; patentcpc.Prediction; "
            + "".join(f"import patentcpc.kinds.{k}; " for k in kinds)
            + "patentcpc.registry.kinds(); "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_train_predict_save_load(trained, tiny_jsonl, tmp_path):
    m = patentcpc.load_model(tmp_path / "m")
    assert isinstance(m, patentcpc.CPCModel) and m.labels == trained.labels
    assert m.manifest.config["linear"]["C"] == 5.0  # the keyword reached the configuration
    assert m.manifest.metrics["f1@1"] > 0.5
    texts = ["wireless base station handover for mobile terminals", "a plough with tines for soil"]
    scores = m.predict_scores(texts)
    assert scores.shape == (2, len(m.labels))
    preds = m.predict(texts, top_k=3)
    assert len(preds) == 2
    for row, s in zip(preds, scores, strict=True):
        assert len(row) == 3
        assert [p.score for p in row] == sorted((p.score for p in row), reverse=True)
        assert [p.code for p in row] == [m.labels[j] for j in np.argsort(-s, kind="stable")[:3]]
        assert all(isinstance(p.score, float) for p in row)
        assert [p.assigned for p in row] == [p.score >= m.thresholds[m.labels.index(p.code)] for p in row]
    assert preds[0][0].code in ("H04W", "H04L") and preds[1][0].code == "A01B"
    assert preds[1][0].path[-1] == "A01B" and preds[1][0].path[0] == "A"
    with pytest.raises(dataclasses.FrozenInstanceError):
        preds[0][0].score = 1.0
    # no top_k: exactly the assigned codes; a threshold filters
    assigned = m.predict(texts)
    assert [[p.code for p in row] for row in assigned] == [  # the best code is always assigned
        [m.labels[j] for j in np.argsort(-s, kind="stable") if s[j] >= m.thresholds[j] or j == s.argmax()]
        for s in scores]
    high = m.predict(texts, threshold=float(scores.max()))
    assert sum(len(r) for r in high) == int((scores >= scores.max()).sum())
    assert all(p.score >= scores.max() for r in high for p in r)
    assert m.predict("a plough with tines", top_k=1)[0][0].code == "A01B"  # one string = one text
    with pytest.raises(ConfigError):
        m.predict(texts, top_k=0)
    m.save(tmp_path / "copy")
    again = patentcpc.load_model(tmp_path / "copy")
    np.testing.assert_allclose(again.predict_scores(texts), scores)


def test_evaluate_matches_the_cli(trained, tiny_jsonl, tmp_path):
    import json

    from typer.testing import CliRunner

    from patentcpc.cli import app

    metrics = patentcpc.evaluate(tmp_path / "m", str(tiny_jsonl))
    res = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--data", str(tiny_jsonl), "--json"])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.stdout)  # the overlap warning goes to stderr
    assert metrics["f1@1"] == pytest.approx(cli["f1@1"]) and metrics["n_docs"] == cli["n_docs"] == 24
    assert metrics == pytest.approx(patentcpc.evaluate(trained, str(tiny_jsonl)), nan_ok=True)  # auroc@1: all hits


def test_train_config_sources(tmp_path):
    from patentcpc.api import train_config

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model: tfidf\nlinear:\n  C: 2.0\n")
    cfg = train_config(str(yaml_file), ["linear.ngram_max=1"], seed=7)
    assert (cfg.model, cfg.linear.C, cfg.linear.ngram_max, cfg.seed) == ("tfidf", 2.0, 1, 7)
    assert train_config(cfg).linear.C == 2.0
    assert train_config({"model": "scheme"}).model == "scheme"
    with pytest.raises(ConfigError):
        train_config(42)


def test_load_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        patentcpc.load_model(tmp_path / "nothing")


@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_unreachable_hub_id_fails_fast_with_a_hint(kind, monkeypatch, tmp_path):
    """The network is closed here (and in CI): a hub id must fail within 5 s, saying what to do."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.perf_counter()
    if kind == "model":
        with pytest.raises(ModelError) as err:
            patentcpc.load_model("patentcpc-test-nobody/no-such-model")
    else:
        from patentcpc.data import load_data

        with pytest.raises(DataError) as err:
            load_data("patentcpc-test-nobody/no-such-dataset")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg and "no-such" in msg
    assert "HF_HUB_OFFLINE=1" in msg or "local folder" in msg


def test_hub_check_is_skipped_offline(monkeypatch):
    from patentcpc import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.check_hub("patentcpc-test-nobody/no-such-model")  # no request, no error
    assert hub.is_hub_id("owner/name") and not hub.is_hub_id("./owner/name") and not hub.is_hub_id("a/b/c")
