"""The HTTP service: FastAPI over any patentcpc model, with micro-batching.

``POST /predict`` takes ``{"text": "..."}`` or ``{"documents": [{"text": ...} | {"title": ...,
"abstract": ...}, ...]}``; ``GET /health``; ``GET /labels``; OpenAPI docs at ``/docs``.

Concurrent requests are queued and a single worker takes what is waiting (after waiting
``max_wait_ms`` for more, adding requests until ``max_batch_docs`` documents are reached) and
scores it in one model call on a worker thread, so the event loop stays free and the model sees
full batches. Limits on body size, documents per request and characters per document answer 413;
malformed JSON 400; empty or missing text 422. Errors are ``{"error": "..."}``.

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures at run time.)
"""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from patentcpc.errors import ConfigError
from patentcpc.models.base import CPCModel

DOC_FIELDS = ("title", "abstract", "claims", "description")


@dataclass
class ServeConfig:
    """Service limits and micro-batching."""

    max_batch_docs: int = 64
    max_wait_ms: float = 5.0
    max_docs: int = 64
    max_chars: int = 50_000
    max_body_bytes: int = 4_000_000
    max_top_k: int = 50

    def __post_init__(self) -> None:
        for name in ("max_batch_docs", "max_docs", "max_chars", "max_body_bytes", "max_top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, not {self.max_wait_ms}")


class RequestError(Exception):
    """A bad request: HTTP ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def document_text(doc: dict, index: int, max_chars: int, fields: list[str] | None = None) -> str:
    """The text of one request document: ``text``, else its title/abstract/... fields joined by a
    newline (in the order of the model's text view where it names them)."""
    if not isinstance(doc, dict):
        raise RequestError(422, f"documents[{index}] must be an object with 'text' or 'title'/'abstract'")
    if doc.get("text") is not None:
        parts = [doc["text"]]
    else:
        order = [f for f in (fields or []) if f in DOC_FIELDS] or list(DOC_FIELDS)
        order += [f for f in DOC_FIELDS if f not in order]
        parts = [doc[f] for f in order if doc.get(f) is not None]
        if not parts:
            raise RequestError(422, f"documents[{index}] has no 'text' and none of {', '.join(DOC_FIELDS)}")
    if not all(isinstance(p, str) for p in parts):
        raise RequestError(422, f"documents[{index}]: text fields must be strings")
    text = "\n".join(p.strip() for p in parts if p.strip())
    if not text:
        raise RequestError(422, f"documents[{index}]: text is empty")
    if len(text) > max_chars:
        raise RequestError(413, f"documents[{index}]: {len(text)} characters, more than the limit {max_chars}")
    return text


def parse_request(body: object, cfg: ServeConfig, fields: list[str] | None = None) -> tuple[list[str], list, int]:
    """(texts, ids, top_k) of a /predict body, or :class:`RequestError`."""
    if not isinstance(body, dict):
        raise RequestError(422, "body must be a JSON object with 'text' or 'documents'")
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= cfg.max_top_k:
        raise RequestError(422, f"top_k must be an integer from 1 to {cfg.max_top_k}")
    if ("text" in body) == ("documents" in body):
        raise RequestError(422, "give exactly one of 'text' and 'documents'")
    if "text" in body:
        if not isinstance(body["text"], str):
            raise RequestError(422, "'text' must be a string")
        return [document_text({"text": body["text"]}, 0, cfg.max_chars)], [None], top_k
    docs = body["documents"]
    if not isinstance(docs, list) or not docs:
        raise RequestError(422, "'documents' must be a non-empty list")
    if len(docs) > cfg.max_docs:
        raise RequestError(413, f"{len(docs)} documents, more than the limit {cfg.max_docs} per request")
    texts = [document_text(d, i, cfg.max_chars, fields) for i, d in enumerate(docs)]
    return texts, [d.get("id") for d in docs], top_k


@dataclass
class _Job:
    texts: list[str]
    top_k: int
    future: asyncio.Future


@dataclass
class MicroBatcher:
    """Collects concurrent jobs and scores them together on one worker thread."""

    model: CPCModel
    max_batch_docs: int = 64
    max_wait_ms: float = 5.0
    n_batches: int = 0
    n_docs: int = 0
    _queue: asyncio.Queue | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    async def submit(self, texts: list[str], top_k: int) -> list[dict]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, "patentcpc-model")
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, top_k, fut))
        return await fut

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            n = len(jobs[0].texts)
            if n < self.max_batch_docs and self.max_wait_ms > 0:
                await asyncio.sleep(self.max_wait_ms / 1000)  # let concurrent requests join
            while n < self.max_batch_docs and not self._queue.empty():  # (no wait_for: it can drop items)
                job = self._queue.get_nowait()
                jobs.append(job)
                n += len(job.texts)
            try:
                results = await loop.run_in_executor(self._executor, self._score, jobs)
            except Exception as exc:  # noqa: BLE001  (reported to every waiting request)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, res in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(res)

    def _score(self, jobs: list[_Job]) -> list[list[dict]]:
        from patentcpc.inference import format_predictions  # noqa: PLC0415

        texts = [t for job in jobs for t in job.texts]
        scores = self.model.scores(texts)
        self.n_batches += 1
        self.n_docs += len(texts)
        out, start = [], 0
        for job in jobs:
            out.append(format_predictions(self.model, scores[start : start + len(job.texts)], job.top_k))
            start += len(job.texts)
        return out

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` (declared or streamed) gets 413."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = f"request body larger than the limit of {self.max_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_json(send, 413, {"error": too_big})
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestError(413, too_big)
            return message

        try:
            return await self.app(scope, limited_receive, send)
        except RequestError as exc:
            return await _send_json(send, exc.status, {"error": exc.message})


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_DOC_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string"}, "text": {"type": "string"},
    **{f: {"type": "string"} for f in DOC_FIELDS}}}
PREDICT_SCHEMA = {"type": "object", "properties": {
    "text": {"type": "string", "description": "One document (or use 'documents')."},
    "documents": {"type": "array", "items": _DOC_SCHEMA},
    "top_k": {"type": "integer", "default": 5, "minimum": 1}}}
PREDICT_EXAMPLE = {"documents": [{"id": "1", "title": "Plough", "abstract": "A plough with adjustable tines."}],
                   "top_k": 5}


def create_app(model: CPCModel, cfg: ServeConfig | None = None):
    """The FastAPI application serving ``model``."""
    from contextlib import asynccontextmanager  # noqa: PLC0415

    from fastapi import FastAPI, Request  # noqa: PLC0415
    from fastapi.responses import JSONResponse  # noqa: PLC0415

    from patentcpc import __version__  # noqa: PLC0415
    from patentcpc.cpc import title  # noqa: PLC0415

    cfg = cfg or ServeConfig()
    batcher = MicroBatcher(model, cfg.max_batch_docs, cfg.max_wait_ms)
    fields = list(model.manifest.text_view.get("fields") or [])
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        batcher.close()

    app = FastAPI(title="patentcpc", version=__version__, lifespan=lifespan,
                  description="Assign CPC codes to patent text. POST /predict with {\"text\": ...} or "
                              "{\"documents\": [{\"text\": ...} | {\"title\": ..., \"abstract\": ...}]}.")
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {str(exc)[:200]}"}, status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model_kind": model.kind, "n_labels": len(model.labels),
                "label_level": model.manifest.label_level, "uptime_s": round(time.time() - started, 1),
                "queue_depth": batcher.queue_depth, "batches": batcher.n_batches, "documents": batcher.n_docs}

    @app.get("/labels")
    async def labels() -> dict:
        return {"label_level": model.manifest.label_level,
                "labels": [{"code": c, "title": title(c)} for c in model.labels]}

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PREDICT_SCHEMA, "example": PREDICT_EXAMPLE}}}})
    async def predict(request: Request) -> dict:
        """Ranked CPC codes (labels above threshold plus the top k) for one text or a list of documents."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"malformed JSON: {exc}") from None
        texts, ids, top_k = parse_request(body, cfg, fields)
        results = await batcher.submit(texts, top_k)
        if "text" in body:
            return results[0]
        return {"documents": [{"id": i, **r} if i is not None else r for i, r in zip(ids, results, strict=True)]}

    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    return app
