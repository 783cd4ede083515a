"""Batch predictor: token-budgeted length-sorted batches, input order, parity with a plain padded
forward, the packed (padding-free) ModernBERT path, streaming JSONL/Parquet output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from patentcpc.errors import ConfigError
from patentcpc.inference_options import InferenceOptions
from patentcpc.kinds.transformer.engine import plan_batches, predict_logits
from patentcpc.streaming import stream_predict

LABELS = ["A01B", "H01L", "H04L", "H04W"]
TEXTS = [
    "Plough with adjustable soil working tines for tractors",
    "Semiconductor transistor with a gate oxide layer on silicon " * 6,
    "Network",
    "Routing digital data packets between network nodes with a protocol " * 3,
    "Seed drill that plants seeds in furrows made in the soil",
    "x " * 90,
]


@pytest.fixture(scope="module")
def tiny_models():
    from patentcpc.kinds.transformer.model import TransformerCPCModel

    torch.manual_seed(0)
    models = {arch: TransformerCPCModel.create(LABELS, arch=arch, max_length=128, dropout=0.0, device="cpu")
              for arch in ("modernbert-tiny", "bert-tiny")}
    for m in models.values():
        m.network.eval()
    return models


def _plain_logits(model, texts):
    enc = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="pt")
    with torch.inference_mode():
        return model.network(enc["input_ids"], enc["attention_mask"]).numpy()


def test_plan_batches_cover_every_index_once_within_limits():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, 500)
    batches = plan_batches(lengths, batch_size=32, token_budget=2048)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        assert len(b) <= 32
        assert len(b) == 1 or len(b) * lengths[b].max() <= 2048
    assert lengths[batches[0]].max() == lengths.max()  # longest first


def test_plan_batches_single_row_over_budget_still_runs():
    assert [b.tolist() for b in plan_batches([10, 5000], 8, 100)] == [[1], [0]]
    assert plan_batches([], 8, 100) == []


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"token_budget": 0}, {"autocast": "fp8"},
                                 {"padding_free": "maybe"}])
def test_options_are_validated(bad):
    with pytest.raises(ConfigError):
        InferenceOptions(**bad)


@pytest.mark.parametrize("arch", ["modernbert-tiny", "bert-tiny"])
def test_sorted_batches_match_plain_forward_in_input_order(tiny_models, arch):
    model = tiny_models[arch]
    expected = _plain_logits(model, TEXTS)
    got = predict_logits(model, TEXTS, options=InferenceOptions(batch_size=2, token_budget=64))
    assert got.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert predict_logits(model, []).shape == (0, len(LABELS))
    # scores() goes through the same path
    np.testing.assert_allclose(model.scores(TEXTS), 1 / (1 + np.exp(-expected)), atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_packed_padding_free_path_matches(tiny_models, pooling):
    model = tiny_models["modernbert-tiny"]
    model.network.pooling = pooling
    try:
        packed = predict_logits(model, TEXTS, options=InferenceOptions(padding_free="on", batch_size=4))
        padded = predict_logits(model, TEXTS, options=InferenceOptions(padding_free="off", batch_size=4))
    finally:
        model.network.pooling = "cls"
    np.testing.assert_allclose(packed, padded, atol=1e-5)


def test_padding_free_refuses_bert(tiny_models):
    with pytest.raises(ConfigError):
        predict_logits(tiny_models["bert-tiny"], TEXTS, options=InferenceOptions(padding_free="on"))


def test_progress_callback_counts_documents(tiny_models):
    seen = []
    from patentcpc.kinds.transformer.engine import BatchPredictor

    BatchPredictor(tiny_models["bert-tiny"], InferenceOptions(batch_size=2)).logits(TEXTS, progress=seen.append)
    assert sum(seen) == len(TEXTS)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("kind", ["linear", "transformer"])
def test_stream_predict_writes_every_document_in_order(tmp_path, tiny_jsonl, linear_model, tiny_models, suffix,
                                                       kind):
    from patentcpc.data import load_data

    model = linear_model if kind == "linear" else tiny_models["bert-tiny"]
    data = load_data(tiny_jsonl, require_labels=False)
    out = tmp_path / f"pred{suffix}"
    stats = stream_predict(model, data, out, top_k=2, chunk_size=5, options=InferenceOptions(batch_size=3))
    assert stats.n_docs == len(data) == 24
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == [str(i) for i in data.ids]
    assert all(len(r["predictions"]) >= 2 for r in rows)
    assert {p["code"] for r in rows for p in r["predictions"]} <= set(model.labels)
    assert not list(tmp_path.glob(".pred*"))  # no temporary file left


def test_records_format_the_one_ranking(monkeypatch):
    """format_predictions (CLI, service, files) formats predictions.rank's output: same codes, order
    (ties to the lower column), scores and assigned flags as ``model.predict(top_k=k)``; rank runs once."""
    from types import SimpleNamespace

    from patentcpc import predictions
    from patentcpc.cpc import hierarchy_path
    from patentcpc.streaming import format_predictions

    labels = ["A01B", "H01L", "H04L", "H04W", "G06F"]
    scores = np.array([[0.5, 0.5, 0.9, 0.1, 0.5],      # ties: lower column first
                       [0.2, 0.25, 0.1, 0.05, 0.2],    # nothing above threshold, best above abstain_below
                       [0.01, 0.02, 0.0, 0.0, 0.0]])   # best below abstain_below: no code assigned
    model = SimpleNamespace(labels=labels, thresholds=np.full(5, 0.4), abstain_below=0.1)
    calls = []
    rank = predictions.rank
    monkeypatch.setattr(predictions, "rank", lambda *a, **k: calls.append(1) or rank(*a, **k))
    records = format_predictions(model, scores, top_k=4)
    assert len(calls) == 1
    expected = rank(scores, labels, model.thresholds, 4, abstain_below=0.1)
    for rec, preds in zip(records, expected, strict=True):
        assert [(p["code"], p["score"], p["assigned"], p["above_threshold"], p["title"]) for p in rec["predictions"]] \
            == [(p.code, round(p.score, 6), p.assigned, p.assigned, p.title) for p in preds]
        assert [p["path"] for p in rec["predictions"]] == [hierarchy_path(p.code) for p in preds]
        assert rec["labels"] == [p.code for p in preds if p.assigned]
    assert [p["code"] for p in records[0]["predictions"]] == ["H04L", "A01B", "H01L", "G06F"]
    assert records[1]["labels"] == ["H01L"] and "note" not in records[1]
    assert records[2]["labels"] == [] and records[2]["note"].startswith(predictions.NO_CODE)
    assert format_predictions(model, np.zeros((0, 5)), top_k=4) == []


def test_stream_predict_rejects_unknown_output(tmp_path, tiny_jsonl, linear_model):
    from patentcpc.data import load_data

    with pytest.raises(ConfigError):
        stream_predict(linear_model, load_data(tiny_jsonl, require_labels=False), tmp_path / "out.xlsx")


def test_predict_batch_cli(tmp_path, tiny_jsonl, linear_model):
    from typer.testing import CliRunner

    from patentcpc.cli import app

    linear_model.save(tmp_path / "m")
    out = tmp_path / "p.jsonl"
    res = CliRunner().invoke(app, ["predict-batch", "--model", str(tmp_path / "m"), "--input", str(tiny_jsonl),
                                   "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 24


def test_cls_last_layer_shortcut_matches_full_forward(tiny_models):
    from patentcpc.kinds.transformer.engine import BatchPredictor

    model = tiny_models["modernbert-tiny"]
    on, off = InferenceOptions(batch_size=3, cls_last_layer=True), InferenceOptions(batch_size=3, cls_last_layer=False)
    assert BatchPredictor(model, on).cls_last_layer
    assert not BatchPredictor(model, off).cls_last_layer
    short = predict_logits(model, TEXTS, options=on)
    full = predict_logits(model, TEXTS, options=off)
    np.testing.assert_allclose(short, full, atol=1e-5)


def test_cls_last_layer_needs_a_known_transformers(tiny_models, monkeypatch):
    """The shortcut uses private ModernBERT internals: another transformers major takes the full forward."""
    from patentcpc.kinds.transformer import engine

    monkeypatch.setattr(engine, "CLS_SHORTCUT_TRANSFORMERS", (99, 100))
    model = tiny_models["modernbert-tiny"]
    assert not engine.cls_shortcut_supported()
    assert not engine.BatchPredictor(model, InferenceOptions(cls_last_layer=True)).cls_last_layer


def test_cpu_runs_fp32_without_packing(tiny_models):
    from patentcpc.kinds.transformer.engine import BatchPredictor

    p = BatchPredictor(tiny_models["modernbert-tiny"], InferenceOptions(autocast="bf16"))
    assert p.autocast_dtype is None and not p.padding_free  # GPU-only features stay off on a CPU


def test_training_mode_is_restored(tiny_models):
    model = tiny_models["bert-tiny"]
    model.network.train()
    try:
        predict_logits(model, TEXTS[:2])
        assert model.network.training
    finally:
        model.network.eval()
