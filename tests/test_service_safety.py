"""The service isolates requests and fails like a well-kept service (issue 11, item 8): a text the
model cannot read fails alone; a failing batch is retried request by request; deep or oversized
JSON is a 4xx; no 5xx echoes exception text; one error shape everywhere; stalled clients get 408;
SIGTERM finishes the requests in flight. The real-server tests run ``patentcpc serve`` on
127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import TINY_DOCS
from patentcpc.serving import BodyLimit, ServeConfig, create_app

SRC = Path(__file__).resolve().parents[1] / "src"


def _concurrent(app, bodies: list[bytes]) -> tuple[list[httpx.Response], dict]:
    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            rs = await asyncio.gather(*(c.post("/predict", content=b, headers={"content-type": "application/json"})
                                        for b in bodies))
            return rs, (await c.get("/health")).json()

    return asyncio.run(main())


def _error(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    return body["error"]


# ----------------------------------------------------------------------------- isolation


def test_lone_surrogate_fails_alone_in_a_batch_of_32(transformer_model):
    app = create_app(transformer_model, ServeConfig(max_wait_ms=100, max_batch_docs=64))
    good = [json.dumps({"text": f"{t} {i}"}).encode() for i, (t, _) in enumerate((TINY_DOCS * 3)[:31])]
    bad = b'{"text": "Plough \\ud800 tines"}'
    rs, health = _concurrent(app, good[:15] + [bad] + good[15:])
    statuses = [r.status_code for r in rs]
    assert statuses[15] == 422 and "Unicode" in _error(rs[15])["message"]
    assert statuses[:15] + statuses[16:] == [200] * 31
    assert health["documents"] == 31 and health["batches"] < 31  # the others were still batched
    bad_doc = b'{"documents": [{"text": "ok"}, {"title": "x\\udfff"}]}'
    r = _concurrent(app, [bad_doc])[0][0]
    assert r.status_code == 422 and "documents[1]" in _error(r)["message"]


def test_text_the_tokenizer_refuses_fails_alone(transformer_model):
    """The check runs the model's own tokenizer: whatever it cannot read is a 422 for that request."""
    from patentcpc.serving import TextChecker

    checker = TextChecker(transformer_model)
    checker.check_sync(["fine text", "more"])
    with pytest.raises(Exception) as info:
        checker.check_sync(["fine", "bad \ud800"], ["a", "b"])
    assert getattr(info.value, "status", None) == 422 and info.value.message.startswith("b:")
    assert checker._tok is not transformer_model.tokenizer  # a private copy (tokenizers are not thread-safe)


def test_failing_batch_is_retried_request_by_request(linear_model):
    class Picky:
        labels = linear_model.labels
        thresholds = linear_model.thresholds
        manifest = linear_model.manifest
        kind = "linear"

        def scores(self, texts):
            if any("poison" in t for t in texts):
                raise RuntimeError("secret internal detail")
            return linear_model.scores(texts)

    app = create_app(Picky(), ServeConfig(max_wait_ms=100))
    bodies = [json.dumps({"text": f"{t} {i}"}).encode() for i, (t, _) in enumerate((TINY_DOCS * 3)[:31])]
    rs, health = _concurrent(app, bodies[:7] + [b'{"text": "poison pill"}'] + bodies[7:])
    statuses = [r.status_code for r in rs]
    assert statuses[7] == 500 and statuses[:7] + statuses[8:] == [200] * 31
    assert _error(rs[7])["code"] == "internal_error" and "secret" not in rs[7].text
    assert app.state.batcher.n_retries >= 1 and health["documents"] == 31


# ----------------------------------------------------------------------------- bodies and errors


@pytest.fixture(scope="module")
def client(linear_model):
    app = create_app(linear_model, ServeConfig(max_docs=4, max_chars=500, max_body_bytes=300_000, max_wait_ms=0))

    @app.get("/_typed")
    async def typed(n: int) -> dict:
        return {"n": n}

    @app.get("/_crash")
    async def crash() -> dict:
        raise RuntimeError("password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("payload", "status", "code"), [
    (b"[" * 200_000, 400, "invalid_json"),
    (b'{"documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "invalid_json"),
    (b'{"documents": [' + b"[" * 500 + b"]" * 500 + b"]}", 422, "invalid_request"),
    (b'{"text": "a", "top_k": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
    (b'{"text": "a", "top_k": 1e999}', 422, "invalid_request"),
    (b"\xff\xfe{}", 400, "invalid_json"),
    (b'{"documents": [{"id": {"x": 1}, "text": "a"}]}', 422, "invalid_request"),
    (b'{"documents": [{"id": "\\ud800", "text": "a"}]}', 422, "invalid_text"),
    (b'{"documents": [{"id": ' + b"9" * 30 + b', "text": "a"}]}', 422, "invalid_request"),
])
def test_hostile_json_is_a_4xx(client, payload, status, code):
    r = client.post("/predict", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert _error(r)["code"] == code
    assert client.post("/predict", json={"text": "Harrow for soil clods"}).status_code == 200


def test_one_error_shape_for_framework_errors(client):
    r = client.get("/nowhere")
    assert r.status_code == 404 and _error(r)["code"] == "not_found"
    r = client.get("/predict")
    assert r.status_code == 405 and _error(r)["code"] == "method_not_allowed" and "POST" in r.headers["allow"]
    r = client.get("/_typed", params={"n": "many"})
    err = _error(r)
    assert r.status_code == 422 and err["details"][0]["loc"] == ["query", "n"]
    r = client.get("/_crash")
    assert r.status_code == 500 and _error(r)["code"] == "internal_error" and "hunter2" not in r.text
    r = client.get("/static/nothing.js")
    assert r.status_code == 404 and _error(r)["code"] == "not_found"


def _asgi_call(app, scope_headers, chunks, stall=False):
    """Drive an ASGI app by hand: the body arrives in ``chunks``; ``stall``: then nothing more."""
    sent: list[dict] = []

    async def main():
        queue = list(chunks)

        async def receive():
            if queue:
                body = queue.pop(0)
                return {"type": "http.request", "body": body, "more_body": bool(queue) or stall}
            await asyncio.sleep(3600 if stall else 0)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
                 "headers": scope_headers, "http_version": "1.1", "scheme": "http", "root_path": "",
                 "server": ("test", 80), "client": ("test", 1)}
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


def test_body_limit_counts_streamed_bytes_not_the_declared_length(linear_model):
    app = create_app(linear_model, ServeConfig(max_body_bytes=1000, max_wait_ms=0))
    # the client declares 10 bytes and sends 20 000: the count while reading stops it
    status, headers, body = _asgi_call(app, [(b"content-length", b"10"), (b"content-type", b"application/json")],
                                       [b" " * 500] * 40)
    assert status == 413 and body["error"]["code"] == "payload_too_large" and headers[b"connection"] == b"close"


def test_stalled_body_gets_408(linear_model):
    app = create_app(linear_model, ServeConfig(body_timeout_s=0.3, max_wait_ms=0))
    t0 = time.monotonic()
    status, _, body = _asgi_call(app, [(b"content-type", b"application/json")], [b'{"text": "half'], stall=True)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert time.monotonic() - t0 < 5


def test_body_limit_middleware_passes_other_scopes():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodyLimit(inner, 10)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


# ----------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "patentcpc", "serve", "--model", str(model_dir), "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start within 60 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, linear_model) -> Path:
    path = tmp_path_factory.mktemp("served") / "model"
    linear_model.save(path)
    return path


def _raw(url: str, data: bytes, wait_s: float) -> tuple[bytes, float]:
    """Send ``data`` and stall; what the server answers and how long until it closed."""
    host, port = url.removeprefix("http://").split(":")
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            got += chunk
    return got, time.monotonic() - t0


@pytest.mark.slow
def test_real_server_stalled_clients_and_graceful_sigterm(model_dir):
    proc, url = _start_server(model_dir, "--header-timeout", "1", "--body-timeout", "1", "--max-wait-ms", "1500",
                              "--graceful-timeout", "20")
    try:
        # half the headers, then nothing: 408 and the connection closed, the service still answers
        got, took = _raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le", 8)
        assert got.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in got and took < 6, (got, took)
        # headers complete, half the body
        got, took = _raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 100\r\n\r\n{\"text\": \"ha", 8)
        assert b" 408 " in got.split(b"\r\n", 1)[0] and b'"request_timeout"' in got and took < 6, (got, took)
        assert httpx.get(url + "/health", timeout=5).status_code == 200

        # SIGTERM while a request is in flight (it waits 1.5 s in the batcher): it is answered, then the
        # server exits
        async def in_flight():
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                task = asyncio.create_task(c.post("/predict", json={"text": "Plough tines for tractors"}))
                await asyncio.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                return await task

        r = asyncio.run(in_flight())
        assert r.status_code == 200 and r.json()["predictions"][0]["code"] == "A01B"
        assert proc.wait(20) in (0, -signal.SIGTERM)  # (uvicorn re-raises the signal once it has drained)
        with pytest.raises(httpx.HTTPError):  # and it is gone
            httpx.get(url + "/health", timeout=2)
    finally:
        _stop(proc)
