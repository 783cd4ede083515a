"""Schema-driven fuzzing of the HTTP API (issue 33, section 5): schemathesis generates requests,
valid and invalid, from the service's own OpenAPI document for every operation in it and runs all
of its checks: no 5xx; valid requests accepted and invalid ones rejected with a 4xx; every status,
content type, header and body as the document declares (errors included). Bounded: a fixed number
of examples per operation, derandomized. Also: the request schema is exactly what the parser
accepts, and a refused body is read before the 413 (clients that send first see the answer)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis")

import jsonschema  # noqa: E402  (schemathesis depends on it)
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from conftest import TINY_DOCS  # noqa: E402
from patentcpc.data import records_from_texts  # noqa: E402
from patentcpc.kinds.linear.model import LinearCPCModel  # noqa: E402
from patentcpc.retrieval.search import SearchIndex  # noqa: E402
from patentcpc.serving import RequestError, ServeConfig, create_app, parse_request, predict_request_schema  # noqa: E402

_MODEL = LinearCPCModel.fit([t for t, _ in TINY_DOCS] * 2, [[c] for _, c in TINY_DOCS] * 2)


def _conformal_model() -> LinearCPCModel:
    """A model with conformal data: the request schema then takes 'coverage' (else forbids it)."""
    from patentcpc.conformal import set_conformal

    model = LinearCPCModel.fit([t for t, _ in TINY_DOCS] * 2, [[c] for _, c in TINY_DOCS] * 2)
    set_conformal(model, model.scores([t for t, _ in TINY_DOCS]), [[c] for _, c in TINY_DOCS])
    return model


class _StubEmbedder:
    """Deterministic query vectors, so that dense and hybrid search run without a model download."""

    def encode_queries(self, queries):
        rng = np.random.default_rng(len(queries))
        vectors = rng.normal(size=(len(queries), 8)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _index(dense: bool) -> SearchIndex:
    index = SearchIndex.build(records_from_texts([t for t, _ in TINY_DOCS]))
    if dense:  # embeddings and a stand-in encoder: every search mode is served
        vectors = np.random.default_rng(0).normal(size=(len(TINY_DOCS), 8)).astype(np.float32)
        index.embeddings = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        index.meta["model"] = "stub"
        index._embedder = _StubEmbedder()
    return index


# small limits, so that the fuzzer reaches them; a body limit no schema-valid body can reach
CFG = ServeConfig(max_docs=8, max_chars=2000, max_body_bytes=4_000_000, max_wait_ms=0)
APP = create_app(_conformal_model(), CFG, search_index=_index(dense=True))
st_checks.load_all_checks()
ALL_CHECKS = st_checks.CHECKS.get_all()  # every check schemathesis has (``--checks all``)
EXAMPLES = 40
FUZZ_CONFIG = f"""
[generation]
mode = "all"
max-examples = {EXAMPLES}
deterministic = true
"""
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=SchemathesisConfig.from_str(FUZZ_CONFIG))
# the service as ``patentcpc serve`` starts it (default limits: texts longer than a fuzzer can build),
# with a BM25-only index (its /search serves the bm25 mode only)
DEFAULT_APP = create_app(_MODEL, ServeConfig(max_wait_ms=0), search_index=_index(dense=False))
default_schema = schemathesis.openapi.from_asgi("/openapi.json", DEFAULT_APP,
                                                config=SchemathesisConfig.from_str(FUZZ_CONFIG))


def test_the_document_declares_the_error_responses():
    doc = APP.openapi()
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "408", "413", "422", "500"} <= set(responses)
    err = responses["422"]["content"]["application/json"]["schema"]
    assert err["properties"]["error"]["required"] == ["code", "message"]
    for path, item in doc["paths"].items():  # every operation: its errors, in the one shape
        for method, op in item.items():
            for status in ("408", "413", "500"):
                assert status in op["responses"], (path, method, status)
                assert op["responses"][status]["content"]["application/json"]["schema"]["required"] == ["error"]
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"] == [{"required": ["text"]}, {"required": ["documents"]}]
    assert body["properties"]["documents"]["maxItems"] == CFG.max_docs
    assert body["properties"]["text"]["maxLength"] == CFG.max_chars
    assert body["properties"]["coverage"]["exclusiveMaximum"] == 1  # this model has conformal data
    default = DEFAULT_APP.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert default["schema"]["properties"]["coverage"] is False  # that one has none: the key is refused


def _accepted(body: object, cfg: ServeConfig = CFG) -> bool:
    try:
        parse_request(body, cfg)
    except RequestError as exc:
        assert exc.status == 422, (body, exc.status, exc.message)  # a schema violation is a 422, not a 413
        return False
    return True


def _doc(**fields) -> dict:
    return {"documents": [fields]}


@pytest.mark.parametrize("body", [
    {}, {"text": "a", "documents": [{"text": "b"}]}, {"text": "ok"}, {"text": "   "}, {"text": "\u2003\n"},
    {"text": ""}, {"text": None}, {"text": 7}, {"text": "x" * 2000}, {"text": "x" * 2001},
    {"text": "ok", "top_k": 0}, {"text": "ok", "top_k": 50}, {"text": "ok", "top_k": 51}, {"text": "ok", "top_k": 5.0},
    {"text": "ok", "top_k": True}, {"text": "ok", "top_k": None}, {"text": "ok", "explain": None},
    {"text": "ok", "other": 1}, {"documents": []}, {"documents": [{"text": "x"}] * 8},
    {"documents": [{"text": "x"}] * 9}, {"documents": "x"}, {"documents": [1]},
    _doc(text="x"), _doc(text=" "), _doc(text=None, title="T"), _doc(text=None), _doc(title=" ", abstract="A"),
    _doc(title=" "), _doc(foo="x"), _doc(text="x", title=5), _doc(text="x", claims="c" * 2001),
    _doc(title="t", description=None), _doc(text="x", id=None), _doc(text="x", id="i" * 1000),
    _doc(text="x", id="i" * 1001), _doc(text="x", id=2**53 - 1), _doc(text="x", id=-(2**53 - 1)),
    _doc(text="x", id=2**53), _doc(text="x", id=3.0), _doc(text="x", id=3.5), _doc(text="x", id=True),
    _doc(text="x", id=[1]), [1, 2], "text", None,
])
def test_the_request_schema_is_exactly_what_the_service_accepts(body):
    """The published schema and the parser agree on every body: {} and 65 documents are invalid
    in the document as in the service, and breaking a limit is a 422 (a declared 4xx)."""
    doc = APP.openapi()
    request = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    valid = jsonschema.Draft202012Validator(request).is_valid(body)
    assert valid == _accepted(body), (body, valid)


def test_coverage_is_exactly_what_the_schema_says():
    """'coverage' in (0, 1) is served, however close to 0 (was a 500: an index past the table);
    null is a 422 like any non-number; a model without conformal data refuses the key."""
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:
        for coverage in (5e-324, 1e-9, 0.5, 0.999999):
            r = client.post("/predict", json={"text": "a plough", "coverage": coverage})
            assert r.status_code == 200 and r.json()["label_set"]["size"] >= 1, (coverage, r.text)
        assert client.post("/predict", json={"text": "a plough", "coverage": None}).status_code == 422
    with TestClient(DEFAULT_APP) as client:
        assert client.post("/predict", json={"text": "a plough", "coverage": 0.9}).status_code == 422


def test_default_schema_states_long_limits_for_fuzzers():
    """A limit over 8000 characters is no maxLength (a fuzzer could not build the string that
    breaks it and would fail on the schema) but x-max-chars; the default limits are stated."""
    text = predict_request_schema(ServeConfig())["properties"]["text"]
    assert "maxLength" not in text and text["x-max-chars"] == 50_000 and "50000" in text["description"]
    assert _accepted({"text": "x" * 50_000}, ServeConfig()) and not _accepted({"text": "x" * 50_001}, ServeConfig())


# ----------------------------------------------------------------------------- 413 over a real socket


@pytest.fixture(scope="module")
def live_server():
    """``run_server``'s uvicorn set-up (its h11 protocol) on 127.0.0.1, in a thread, body limit 1 MB."""
    import uvicorn

    from patentcpc.serving import _h11_protocol

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cfg = ServeConfig(max_body_bytes=1_000_000, max_wait_ms=0, body_timeout_s=20)
    config = uvicorn.Config(create_app(_MODEL, cfg), host="127.0.0.1", port=port, log_level="error",
                            http=_h11_protocol(cfg.header_timeout_s), lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


BIG = b'{"text": "' + b"a" * (20 * 1024 * 1024) + b'"}'


def _post(port: int, body, **headers) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json", **headers},
                     encode_chunked=not isinstance(body, bytes))
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def test_a_20_mb_body_sent_first_reads_the_413(live_server):
    """Python's http.client sends the whole body before it reads the answer: the service reads
    (and drops) the refused body first, so the client sees the 413, not a connection reset."""
    status, body = _post(live_server, BIG)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    status, body = _post(live_server, json.dumps({"text": "a plough"}).encode())  # still serving
    assert status == 200 and body["predictions"]


def test_a_20_mb_chunked_body_reads_the_413(live_server):
    def chunks():
        for i in range(0, len(BIG), 1 << 20):
            yield BIG[i : i + (1 << 20)]

    status, body = _post(live_server, chunks())
    assert status == 413 and body["error"]["code"] == "payload_too_large"


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(checks=ALL_CHECKS)


@default_schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_with_default_limits_conforms_to_its_schema(case):
    case.call_and_validate(checks=ALL_CHECKS)


def test_every_operation_is_fuzzed():
    """The fuzz tests above cover every operation of the document (nothing left out)."""
    doc = APP.openapi()
    operations = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    assert {("/predict", "POST"), ("/health", "GET"), ("/labels", "GET"), ("/search", "POST")} <= operations
    for tested, app in ((schema, APP), (default_schema, DEFAULT_APP)):
        fuzzed = {(op.path, op.method.upper()) for op in (r.ok() for r in tested.get_all_operations())}
        assert fuzzed == {(path, method.upper()) for path, item in app.openapi()["paths"].items() for method in item}


def test_search_schema_follows_the_index():
    """A BM25-only index publishes (and serves) the bm25 mode only; a query of stop words is a
    search with no match, not a 500."""
    from fastapi.testclient import TestClient

    dense = APP.openapi()["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    sparse = DEFAULT_APP.openapi()["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert dense["properties"]["mode"]["enum"] == ["bm25", "dense", "hybrid"]
    assert sparse["properties"]["mode"]["enum"] == ["bm25"]
    with TestClient(DEFAULT_APP) as client:
        r = client.post("/search", json={"query": "the"})
        assert r.status_code == 200 and all(hit["score"] == 0 for hit in r.json()["results"])
        for body in ({"query": "plough", "mode": "hybrid"}, {"query": "plough", "mode": {}},
                     {"query": "plough", "k": 101}, {"query": "   "}, {"query": "q" * 8001}):
            r = client.post("/search", json=body)
            assert r.status_code == 422 and r.json()["error"]["message"], (body, r.text)
        assert client.post("/search", json={"query": "plough", "k": 2.0}).status_code == 200
