"""Explanations: training patents carrying each assigned code, linear term weights, the service's
``explain: true``."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from patentcpc.config import CalibrationConfig, ExplainConfig, TrainConfig
from patentcpc.data import load_data
from patentcpc.explain import explain_predictions, linear_parts, top_terms
from patentcpc.registry import load_model, train_model
from patentcpc.serving import ServeConfig, create_app
from patentcpc.streaming import predict_texts

QUERY = "Plough with adjustable tines for working the soil"


@pytest.fixture
def explained(tiny_jsonl, tmp_path):
    cfg = TrainConfig(model="tfidf", explain=ExplainConfig(index=True), calibration=CalibrationConfig(cv_folds=2))
    train_model(cfg, str(tiny_jsonl), None, tmp_path / "m")
    return load_model(tmp_path / "m"), load_data(tiny_jsonl)


def test_evidence_names_training_patents_that_carry_the_code(explained):
    m, data = explained
    (res,) = explain_predictions(m, [QUERY], predict_texts(m, [QUERY], top_k=3))
    carried = dict(zip(data.ids, data.labels, strict=True))
    assigned = [p for p in res["predictions"] if p["assigned"]]
    assert assigned and assigned[0]["code"] == "A01B"
    for p in assigned:
        docs = [e for e in p["evidence"] if e["kind"] == "patent"]
        assert docs, p
        for e in docs:
            assert p["code"] in carried[e["id"]] and e["score"] > 0
        scores = [e["score"] for e in docs]
        assert scores == sorted(scores, reverse=True)
    for p in res["predictions"]:
        if not p["assigned"]:
            assert "evidence" not in p


def test_terms_are_tfidf_times_coefficient(explained):
    m, _ = explained
    terms = top_terms(m, QUERY, "A01B", n=3)
    assert terms and {"plough", "tines", "soil"} & {t["term"] for t in terms}
    tfidf, coef, names = linear_parts(m)
    idx, val = tfidf.transform_one(QUERY)
    x = np.zeros(len(names))
    x[idx] = val
    w = coef[m.labels.index("A01B")]
    assert all(t["term"] in QUERY.lower().split() for t in terms)  # the query's words, not their stems
    j = list(names).index(" ".join(tfidf.tokenize(terms[0]["term"])))  # its stem's column
    assert terms[0]["weight"] == pytest.approx(x[j] * w[j], abs=1e-4)
    assert terms[0]["weight"] == pytest.approx(np.max(x * w), abs=1e-4)


def test_without_an_index_only_terms_and_a_note(tiny_jsonl, tmp_path):
    train_model(TrainConfig(model="tfidf", calibration=CalibrationConfig(cv_folds=2)), str(tiny_jsonl), None,
                tmp_path / "plain")
    m = load_model(tmp_path / "plain")
    assert not (tmp_path / "plain" / "explain").exists()
    (res,) = explain_predictions(m, [QUERY], predict_texts(m, [QUERY], top_k=2))
    assert "explain.index=true" in res["explain_note"]
    assert all(e["kind"] == "term" for p in res["predictions"] for e in p.get("evidence", []))


def test_service_explain_true(explained):
    m, _ = explained
    with TestClient(create_app(m, ServeConfig(max_wait_ms=0))) as c:
        plain = c.post("/predict", json={"text": QUERY, "top_k": 2}).json()
        assert "evidence" not in plain["predictions"][0]
        body = c.post("/predict", json={"text": QUERY, "top_k": 2, "explain": True}).json()
        ev = body["predictions"][0]["evidence"]
        assert any(e["kind"] == "patent" for e in ev) and any(e["kind"] == "term" for e in ev)
        assert c.post("/predict", json={"text": QUERY, "explain": "yes"}).status_code == 422
        assert c.get("/health").json()["score_type"] == "probability"
