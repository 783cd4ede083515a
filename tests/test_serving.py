"""The HTTP service: predictions for text and documents, bad requests answered 4xx while the
service stays healthy, micro-batching of concurrent requests, linear and transformer models."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import TINY_DOCS
from patentcpc.serving import MicroBatcher, ServeConfig, create_app, parse_request

CFG = ServeConfig(max_docs=4, max_chars=500, max_body_bytes=4000, max_wait_ms=20)


@pytest.fixture(scope="module")
def client(linear_model):
    with TestClient(create_app(linear_model, CFG)) as c:
        yield c


def test_health_labels_and_docs(client, linear_model):
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    labels = client.get("/labels").json()["labels"]
    assert [x["code"] for x in labels] == linear_model.labels
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_predict_text_and_documents(client, linear_model):
    r = client.post("/predict", json={"text": "Semiconductor transistor gate oxide on silicon", "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) >= 2 and body["predictions"][0]["code"] in linear_model.labels
    assert body["predictions"][0]["code"] == "H01L"
    r = client.post("/predict", json={"documents": [
        {"id": "a", "text": "Plough tines for tractors in agriculture"},
        {"title": "Mobile handover", "abstract": "Handover between wireless cells of a radio network"}]})
    assert r.status_code == 200, r.text
    docs = r.json()["documents"]
    assert docs[0]["id"] == "a" and len(docs) == 2 and "id" not in docs[1]
    assert docs[0]["predictions"][0]["code"] == "A01B"


@pytest.mark.parametrize(("payload", "status", "words"), [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 422, "JSON object"),
    (json.dumps({"text": "   "}).encode(), 422, "empty"),
    (json.dumps({"text": 42}).encode(), 422, "string"),
    (json.dumps({}).encode(), 422, "exactly one"),
    (json.dumps({"text": "a", "documents": [{"text": "b"}]}).encode(), 422, "exactly one"),
    (json.dumps({"documents": []}).encode(), 422, "non-empty"),
    (json.dumps({"documents": [{"text": "x"}] * 5}).encode(), 422, "limit 4"),  # the schema's maxItems
    (json.dumps({"documents": [{"foo": "x"}]}).encode(), 422, "no 'text'"),
    (json.dumps({"text": "y" * 501}).encode(), 422, "characters"),  # the schema's maxLength
    (json.dumps({"text": "ok", "top_k": 0}).encode(), 422, "top_k"),
    (json.dumps({"text": "z " * 3000}).encode(), 413, "bytes"),
])
def test_bad_requests_get_4xx_and_service_stays_up(client, payload, status, words):
    r = client.post("/predict", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] and err["code"] and "details" in err
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/predict", json={"text": "Harrow for soil clods"}).status_code == 200


def test_streamed_body_over_limit_gets_413(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/health").status_code == 200


def test_concurrent_requests_are_micro_batched(transformer_model):
    app = create_app(transformer_model, ServeConfig(max_wait_ms=50, max_batch_docs=64))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            texts = [f"{t} {i}" for i, (t, _) in enumerate(TINY_DOCS * 3)]
            rs = await asyncio.gather(*(c.post("/predict", json={"text": t}) for t in texts))
            health = (await c.get("/health")).json()
        return texts, rs, health

    texts, rs, health = asyncio.run(main())
    assert all(r.status_code == 200 for r in rs)
    assert health["documents"] == len(texts)
    assert health["batches"] < len(texts)  # requests shared model calls
    # each answer is the answer for its own text
    single = transformer_model.scores([texts[5]])[0]
    assert rs[5].json()["predictions"][0]["score"] == pytest.approx(float(single.max()), abs=1e-5)


def test_document_fields_follow_model_text_view(linear_model):
    texts, ids, top_k = parse_request({"documents": [{"abstract": "B", "title": "A"}], "top_k": 3}, ServeConfig())
    assert texts == ["A\nB"] and ids == [None] and top_k == 3


def test_model_errors_reach_the_request_not_the_loop():
    class Broken:
        labels = ["A01B"]

        def scores(self, texts):
            raise RuntimeError("boom")

    async def main():
        b = MicroBatcher(Broken())
        with pytest.raises(RuntimeError):
            await b.submit(["x"], 1)
        with pytest.raises(RuntimeError):  # the worker is still alive
            await b.submit(["y"], 1)
        b.close()

    asyncio.run(main())


def test_model_failure_is_a_500_and_the_service_stays_up(linear_model):
    class Flaky:
        labels = linear_model.labels
        thresholds = linear_model.thresholds
        manifest = linear_model.manifest
        kind = "linear"

        def scores(self, texts):
            if any("boom" in t for t in texts):
                raise RuntimeError("boom")
            return linear_model.scores(texts)

    with TestClient(create_app(Flaky(), ServeConfig(max_wait_ms=0)), raise_server_exceptions=False) as c:
        r = c.post("/predict", json={"text": "boom"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "boom" not in r.text  # no exception text to the client
        assert c.get("/health").json()["status"] == "ok"
        assert c.post("/predict", json={"text": "Plough tines"}).status_code == 200
