"""The HTTP service: FastAPI over any patentcpc model, with micro-batching.

``POST /predict`` takes ``{"text": "..."}`` or ``{"documents": [{"text": ...} | {"title": ...,
"abstract": ...}, ...]}``; ``GET /health``; ``GET /labels``; a web page at ``/`` (paste a text or
upload a CSV, see the codes, download a CSV); OpenAPI docs at ``/docs`` (Swagger UI shipped in the
package: no CDN).

Concurrent requests are queued and a single worker takes what is waiting (after waiting
``max_wait_ms`` for more, adding requests until ``max_batch_docs`` documents are reached) and
scores it in one model call on a worker thread, so the event loop stays free and the model sees
full batches.

One request cannot break the others: every text is checked before it joins a batch (valid Unicode,
and read by the model's tokenizer where the model has one: 422 otherwise), and when a batch still
fails its requests are scored again one by one, so only the bad one fails (500, without the
exception's text, which goes to the log).

Limits: body size (counted while the body streams in, 413; the refused body is read first, so a
client that sends it whole before reading gets the answer); documents per request and characters
per text field 422 (they are in the request schema); malformed or too deeply nested JSON 400; empty
or missing text 422; a body that does not arrive within ``body_timeout_s`` 408; with
:func:`run_server`, request headers that do not arrive within ``header_timeout_s`` 408 and the
connection is closed. SIGTERM stops accepting
connections, finishes the requests in flight (up to ``graceful_timeout_s``), then exits.

Every error, 4xx or 5xx, FastAPI's own included, is ``{"error": {"code": ..., "message": ...,
"details": ...}}``.

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures at run time.)
"""

import asyncio
import copy
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from patentcpc.errors import ConfigError, ModelError
from patentcpc.models.base import CPCModel

DOC_FIELDS = ("title", "abstract", "claims", "description")
MAX_SAFE_INT = 2**53 - 1  # integer ids beyond this lose precision in JavaScript clients
STATIC_DIR = Path(__file__).parent / "static"
logger = logging.getLogger("patentcpc.serving")


@dataclass
class ServeConfig:
    """Service limits, micro-batching and timeouts (seconds)."""

    max_batch_docs: int = 64
    max_wait_ms: float = 5.0
    max_docs: int = 64
    max_chars: int = 50_000
    max_body_bytes: int = 4_000_000
    max_top_k: int = 50
    max_id_chars: int = 1_000
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    graceful_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_batch_docs", "max_docs", "max_chars", "max_body_bytes", "max_top_k", "max_id_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms must be >= 0, not {self.max_wait_ms}")
        for name in ("body_timeout_s", "header_timeout_s", "keep_alive_s", "graceful_timeout_s"):
            if not 0 < getattr(self, name) < 86_400:
                raise ConfigError(f"{name} must be > 0 seconds (and under a day), not {getattr(self, name)}")


# ----------------------------------------------------------------------------- errors

ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
               500: "internal_error", 503: "unavailable"}


def error_body(status: int, message: str, code: str | None = None, details: object = None) -> dict:
    """The one error shape of the service: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message, "details": details}}


class RequestError(Exception):
    """A bad request: HTTP ``status``, a one-line message, a machine-readable ``code`` and optional
    ``details`` (JSON-serializable)."""

    def __init__(self, status: int, message: str, code: str | None = None, details: object = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ERROR_CODES.get(status, "error")
        self.details = details

    def body(self) -> dict:
        return error_body(self.status, self.message, self.code, self.details)


# ----------------------------------------------------------------------------- request parsing


def parse_json(raw: bytes) -> object:
    """The JSON value of a request body, or :class:`RequestError` 400 (malformed, not UTF-8, nested
    too deeply)."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply", "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON: {str(exc)[:200]}", "invalid_json") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _as_int(value: object) -> int | None:
    """An integer, also from an integral float (JSON Schema's "integer" takes 5.0); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _check_unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(422, f"{where}: not valid Unicode (a lone surrogate at character {exc.start})",
                           "invalid_text") from None


def document_text(doc: dict, index: int, max_chars: int, fields: list[str] | None = None,
                  where: str | None = None) -> str:
    """The text of one request document: ``text``, else its title/abstract/... fields joined by a
    newline (in the order of the model's text view where it names them)."""
    where = where or f"documents[{index}]"
    if not isinstance(doc, dict):
        raise RequestError(422, f"{where} must be an object with 'text' or 'title'/'abstract'")
    for name in ("text", *DOC_FIELDS):  # every text field the schema declares, used or not
        value = doc.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RequestError(422, f"{where}.{name} must be a string")
        if len(value) > max_chars:
            raise RequestError(422, f"{where}.{name}: {len(value)} characters, more than the limit {max_chars}",
                               "limit_exceeded")
    if doc.get("text") is not None:
        parts = [doc["text"]]
    else:
        order = [f for f in (fields or []) if f in DOC_FIELDS] or list(DOC_FIELDS)
        order += [f for f in DOC_FIELDS if f not in order]
        parts = [doc[f] for f in order if doc.get(f) is not None]
        if not parts:
            raise RequestError(422, f"{where} has no 'text' and none of {', '.join(DOC_FIELDS)}")
    text = "\n".join(p.strip() for p in parts if p.strip())
    if not text:
        raise RequestError(422, f"{where}: text is empty")
    _check_unicode(text, where)
    return text


def _document_id(doc: dict, index: int, cfg: ServeConfig):
    value = doc.get("id")
    if value is None:
        return None
    if not isinstance(value, str):
        number = _as_int(value)
        if number is None:
            raise RequestError(422, f"documents[{index}].id must be a string or an integer")
        if abs(number) > MAX_SAFE_INT:
            raise RequestError(422, f"documents[{index}].id: integers must be within +-(2^53 - 1) (send a string)")
        return number
    if len(value) > cfg.max_id_chars:
        raise RequestError(422, f"documents[{index}].id: more than {cfg.max_id_chars} characters", "limit_exceeded")
    _check_unicode(value, f"documents[{index}].id")
    return value


def parse_request(body: object, cfg: ServeConfig, fields: list[str] | None = None) -> tuple[list[str], list, int]:
    """(texts, ids, top_k) of a /predict body, or :class:`RequestError`."""
    if not isinstance(body, dict):
        raise RequestError(422, "body must be a JSON object with 'text' or 'documents'")
    top_k = _as_int(body.get("top_k", 5))
    if top_k is None or not 1 <= top_k <= cfg.max_top_k:
        raise RequestError(422, f"top_k must be an integer from 1 to {cfg.max_top_k}")
    if not isinstance(body.get("explain", False), bool):
        raise RequestError(422, "'explain' must be true or false")
    if ("text" in body) == ("documents" in body):
        raise RequestError(422, "give exactly one of 'text' and 'documents'")
    if "text" in body:
        if not isinstance(body["text"], str):
            raise RequestError(422, "'text' must be a string")
        return [document_text({"text": body["text"]}, 0, cfg.max_chars, where="text")], [None], top_k
    docs = body["documents"]
    if not isinstance(docs, list) or not docs:
        raise RequestError(422, "'documents' must be a non-empty list")
    if len(docs) > cfg.max_docs:
        raise RequestError(422, f"{len(docs)} documents, more than the limit {cfg.max_docs} per request",
                           "limit_exceeded")
    texts = [document_text(d, i, cfg.max_chars, fields) for i, d in enumerate(docs)]
    return texts, [_document_id(d, i, cfg) for i, d in enumerate(docs)], top_k


class TextChecker:
    """Runs the model's tokenizer (a private copy, on its own thread) over a request's texts before
    they join a batch, so a text the model cannot read fails alone with 422. Models without a
    ``tokenizer`` attribute get the Unicode check of :func:`document_text` only."""

    def __init__(self, model: CPCModel):
        tok = getattr(model, "tokenizer", None)
        self._max_length = int(getattr(model, "max_length", 512) or 512)
        self._tok = None
        if callable(tok):
            try:
                self._tok = copy.deepcopy(tok)  # tokenizers are not safe to share across threads
            except Exception:  # noqa: BLE001  (no copy: skip the check; the batch fallback still isolates)
                logger.warning("could not copy the model's tokenizer; texts are checked for Unicode only")
        self._executor: ThreadPoolExecutor | None = None

    def _encode(self, texts: list[str]) -> None:
        self._tok(texts, truncation=True, max_length=self._max_length, padding=False)

    def check_sync(self, texts: list[str], where: list[str] | None = None) -> None:
        if self._tok is None:
            return
        try:
            self._encode(texts)
            return
        # the loop below finds the text at fault
        except Exception:  # noqa: BLE001  # nosec B110
            pass
        for i, text in enumerate(texts):
            try:
                self._encode([text])
            except Exception as exc:  # noqa: BLE001
                label = where[i] if where else f"documents[{i}]"
                logger.info("%s: tokenizer refused the text: %s: %s", label, type(exc).__name__, exc)
                raise RequestError(422, f"{label}: the model's tokenizer cannot read this text",
                                   "invalid_text") from None

    async def check(self, texts: list[str], where: list[str] | None = None) -> None:
        if self._tok is None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, "patentcpc-check")
        await asyncio.get_running_loop().run_in_executor(self._executor, self.check_sync, texts, where)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


# ----------------------------------------------------------------------------- micro-batching


@dataclass
class _Job:
    texts: list[str]
    top_k: int
    future: asyncio.Future
    coverage: float | None = None  # conformal label sets at this coverage (patentcpc.conformal)


@dataclass
class MicroBatcher:
    """Collects concurrent jobs and scores them together on one worker thread. When a batch fails,
    its jobs are scored again one by one: only the job at fault gets the exception."""

    model: CPCModel
    max_batch_docs: int = 64
    max_wait_ms: float = 5.0
    n_batches: int = 0
    n_docs: int = 0
    n_retries: int = 0
    _queue: asyncio.Queue | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    async def submit(self, texts: list[str], top_k: int, coverage: float | None = None) -> list[dict]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, "patentcpc-model")
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, top_k, fut, coverage))
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
            jobs = [j for j in jobs if not j.future.done()]  # (a client that went away)
            if not jobs:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._score_isolated, jobs)
            except Exception as exc:  # noqa: BLE001  (reported to every waiting request)
                results = [exc] * len(jobs)
            for job, res in zip(jobs, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(res, BaseException):
                    job.future.set_exception(res)
                else:
                    job.future.set_result(res)

    def _score_isolated(self, jobs: list[_Job]) -> list:
        """Results (or the exception) of each job: the batch in one call, else job by job."""
        try:
            return self._score(jobs)
        except Exception as exc:  # noqa: BLE001
            if len(jobs) == 1:
                return [exc]
        self.n_retries += 1
        out: list = []
        for job in jobs:
            try:
                out.extend(self._score([job]))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    def _score(self, jobs: list[_Job]) -> list[list[dict]]:
        from patentcpc.streaming import format_predictions

        texts = [t for job in jobs for t in job.texts]
        scores = self.model.scores(texts)
        self.n_batches += 1
        self.n_docs += len(texts)
        out, start = [], 0
        for job in jobs:
            out.append(format_predictions(self.model, scores[start : start + len(job.texts)], job.top_k,
                                          job.coverage))
            start += len(job.texts)
        return out

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


# ----------------------------------------------------------------------------- ASGI middleware


DRAIN_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` (declared in Content-Length, or counted as it
    streams in) gets 413; a body that has not fully arrived ``timeout_s`` after the request started
    gets 408. Both close the connection.

    Before the 413 the rest of the refused body is read and dropped (up to ``drain_bytes`` more,
    within the body deadline): a client that sends its whole body before reading the answer
    (Python's ``http.client``, ``requests``) then reads the 413 instead of a connection reset. A
    client that waits for ``100 Continue`` gets the 413 at once, and a body declared larger than
    ``max_bytes + drain_bytes`` is not read."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 30.0, drain_bytes: int = DRAIN_BYTES):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.drain_bytes = drain_bytes

    @staticmethod
    async def _drain(receive, deadline: float, budget: int) -> None:
        """Read and drop the rest of a body: until its end, ``budget`` bytes, the deadline or a disconnect."""
        got = 0
        while got <= budget:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            got += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = RequestError(413, f"request body larger than the limit of {self.max_bytes} bytes")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        deadline = time.monotonic() + self.timeout_s
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            expects_continue = headers.get(b"expect", b"").strip().lower() == b"100-continue"
            if not expects_continue and int(declared) <= self.max_bytes + self.drain_bytes:
                await self._drain(receive, deadline, int(declared))
            return await send_error(send, too_big, close=True)
        seen = 0
        complete = False
        started = False

        async def limited_receive():
            nonlocal seen, complete
            if complete:  # the body is in: waits for a disconnect are the app's business
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                raise _BodyError(RequestError(
                    408, f"the request body did not arrive within {self.timeout_s:g} s")) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise _BodyError(too_big)
            else:
                complete = True
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            return await self.app(scope, limited_receive, tracking_send)
        except _BodyError as exc:
            if started:  # too late for an error response
                raise
            if exc.error.status == 413 and not complete:
                await self._drain(receive, deadline, self.drain_bytes)
            return await send_error(send, exc.error, close=True)


class _BodyError(Exception):
    def __init__(self, error: RequestError):
        super().__init__(error.message)
        self.error = error


async def send_error(send, error: RequestError, close: bool = False) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- OpenAPI schemas

SCHEMA_MAX_LENGTH = 8000
_NOT_BLANK = "\\S"  # a character that is not white space (str.strip's white space: Python's \s)


def predict_request_schema(cfg: "ServeConfig", conformal: bool = True) -> dict:
    """The JSON Schema of a ``POST /predict`` body, exactly what :func:`parse_request` accepts: one
    of ``text`` and ``documents`` (``oneOf``), every text field a string of at most ``max_chars``
    characters (null: absent, in documents), a document's text (``text``, else its title/abstract/
    claims/description) not blank, at most ``max_docs`` documents, ids of at most ``max_id_chars``
    characters or integers within +-(2^53 - 1), ``top_k`` from 1 to ``max_top_k``. Limits broken
    are 422; only the body's size in bytes (413) is outside the schema.

    A limit over :data:`SCHEMA_MAX_LENGTH` characters is stated as ``x-max-chars`` (and in the
    description) instead of ``maxLength``: schema-driven fuzzers cannot build a longer string
    (Hypothesis, under schemathesis, stops at 8 KiB), so they would fail on the schema itself."""

    def limit(n: int) -> dict:
        return {"maxLength": n} if n <= SCHEMA_MAX_LENGTH else {"x-max-chars": n}

    field = {"type": ["string", "null"], **limit(cfg.max_chars),
             "description": f"At most {cfg.max_chars} characters (null: absent)."}
    filled = {"type": "string", "pattern": _NOT_BLANK}
    document = {
        "type": "object",
        "properties": {
            "id": {"anyOf": [{"type": "string", **limit(cfg.max_id_chars)},
                             {"type": "integer", "minimum": -MAX_SAFE_INT, "maximum": MAX_SAFE_INT},
                             {"type": "null"}],
                   "description": "Echoed back with the document's predictions."},
            "text": {**field, "description": f"The whole text (else the fields below are joined); at most "
                                             f"{cfg.max_chars} characters."},
            **{f: dict(field) for f in DOC_FIELDS}},
        # a text that is not blank, else (no text) at least one field that is not blank
        "anyOf": [{"required": ["text"], "properties": {"text": filled}},
                  {"properties": {"text": {"type": "null"}},
                   "anyOf": [{"required": [f], "properties": {f: filled}} for f in DOC_FIELDS]}]}
    return {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, **limit(cfg.max_chars), "pattern": _NOT_BLANK,
                     "description": f"One document (or use 'documents'); at most {cfg.max_chars} characters."},
            "documents": {"type": "array", "items": document, "minItems": 1, "maxItems": cfg.max_docs},
            "top_k": {"type": "integer", "default": 5, "minimum": 1, "maximum": cfg.max_top_k},
            "explain": {"type": "boolean", "default": False,
                        "description": "Add evidence to each assigned code: nearest training patents carrying "
                                       "it (models trained with explain.index=true) and, for linear models, terms."},
            # (a model without conformal data takes no coverage: the schema false forbids the key)
            "coverage": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                         "description": "Add each document's conformal label set ('label_set'): the smallest set "
                                        "of codes holding one of its gold codes with this probability, e.g. 0.9 "
                                        "(models trained with conformal data)."} if conformal else False},
        "oneOf": [{"required": ["text"]}, {"required": ["documents"]}]}
PREDICT_EXAMPLE = {"documents": [{"id": "1", "title": "Plough", "abstract": "A plough with adjustable tines."}],
                   "top_k": 5}
ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}
_NODE = {"type": "object", "required": ["code", "title"],
         "properties": {"code": {"type": "string"}, "title": {"type": ["string", "null"]}}}
_PREDICTION = {"type": "object", "required": ["code", "score", "above_threshold", "title", "path"], "properties": {
    "code": {"type": "string"}, "score": {"type": "number"}, "above_threshold": {"type": "boolean"},
    "assigned": {"type": "boolean"}, "title": {"type": ["string", "null"]},
    "path": {"type": "array", "items": _NODE}, "evidence": {"type": "array", "items": {"type": "object"}}}}
_RESULT_PROPS = {"labels": {"type": "array", "items": {"type": "string"}},
                 "predictions": {"type": "array", "items": _PREDICTION},
                 "note": {"type": "string", "description": "present when no code is assigned (every code scores "
                                                           "below its threshold and the best below the model's "
                                                           "minimum): 'no code assigned: ...'"},
                 "label_set": {"type": "object", "description": "with 'coverage': the conformal label set",
                               "properties": {"codes": {"type": "array", "items": {"type": "string"}},
                                              "scores": {"type": "array", "items": {"type": "number"}},
                                              "size": {"type": "integer"}, "unsure": {"type": "boolean"},
                                              "coverage": {"type": "number"}}}}
PREDICT_RESPONSE_SCHEMA = {"anyOf": [
    {"type": "object", "required": ["labels", "predictions"], "properties": _RESULT_PROPS},
    {"type": "object", "required": ["documents"], "properties": {"documents": {"type": "array", "items": {
        "type": "object", "required": ["labels", "predictions"],
        "properties": {"id": {"anyOf": [{"type": "string"}, {"type": "integer"}]}, **_RESULT_PROPS}}}}},
]}
HEALTH_SCHEMA = {"type": "object", "required": ["status", "model_kind", "n_labels"], "properties": {
    "status": {"type": "string"}, "model_kind": {"type": "string"}, "n_labels": {"type": "integer"},
    "label_level": {"type": ["string", "null"]}, "score_type": {"type": ["string", "null"]},
    "uptime_s": {"type": "number"}, "queue_depth": {"type": "integer"}, "batches": {"type": "integer"},
    "documents": {"type": "integer"}, "limits": {"type": "object"},
    "conformal": {"type": "boolean", "description": "whether 'coverage' (conformal label sets) is available"}}}
LABELS_SCHEMA = {"type": "object", "required": ["labels"], "properties": {
    "label_level": {"type": ["string", "null"]}, "labels": {"type": "array", "items": _NODE}}}


def _json_response(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error_responses(*statuses: int, max_body_bytes: int | None = None) -> dict:
    """Declared error responses, each with the one error shape."""
    too_big = "Request body larger than the limit" + (f" ({max_body_bytes} bytes)" if max_body_bytes else "")
    text = {400: "Malformed JSON (not JSON, not UTF-8, nested too deeply)", 408: "The body did not arrive in time",
            413: too_big, 422: "Invalid request: not what the request schema allows (limits included)",
            500: "The model failed on this request (details in the service log)"}
    return {s: _json_response(ERROR_SCHEMA, text.get(s, "Error")) for s in statuses}


# ----------------------------------------------------------------------------- the app


def create_app(model: CPCModel, cfg: ServeConfig | None = None, search_index=None):
    """The FastAPI application serving ``model`` (and, given a loaded
    :class:`~patentcpc.retrieval.search.SearchIndex` ``search_index``, ``POST /search`` over it)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.exceptions import HTTPException
    from starlette.staticfiles import StaticFiles

    from patentcpc import __version__
    from patentcpc.cpc import title

    cfg = cfg or ServeConfig()
    batcher = MicroBatcher(model, cfg.max_batch_docs, cfg.max_wait_ms)
    checker = TextChecker(model)
    fields = list(model.manifest.text_view.get("fields") or [])
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        batcher.close()
        checker.close()

    app = FastAPI(title="patentcpc", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Assign CPC codes to patent text. POST /predict with {\"text\": ...} or "
                              "{\"documents\": [{\"text\": ...} | {\"title\": ..., \"abstract\": ...}]}. "
                              "Errors: {\"error\": {\"code\", \"message\", \"details\"}}.")
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else ERROR_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        details = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse(error_body(422, "invalid request", details=details), status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception):
        logger.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body(500, "internal error (see the service log)"), status_code=500)

    # any request may get 408/413 (the body limit applies to every path) and 500
    common = _error_responses(408, 413, 500, max_body_bytes=cfg.max_body_bytes)

    @app.get("/health", responses={200: _json_response(HEALTH_SCHEMA, "Service status"), **common})
    async def health() -> dict:
        """Status, model, counters and the request limits."""
        score_type = getattr(model, "output_score_type", None) or model.manifest.score_type  # probability if calibrated
        return {"status": "ok", "model_kind": model.kind, "n_labels": len(model.labels),
                "label_level": model.manifest.label_level, "score_type": score_type,
                "uptime_s": round(time.time() - started, 1), "queue_depth": batcher.queue_depth,
                "batches": batcher.n_batches, "documents": batcher.n_docs,
                "conformal": isinstance(model.manifest.extra, dict) and "conformal" in model.manifest.extra,
                "limits": {"max_docs": cfg.max_docs, "max_chars": cfg.max_chars, "max_top_k": cfg.max_top_k,
                           "max_body_bytes": cfg.max_body_bytes}}

    @app.get("/labels", responses={200: _json_response(LABELS_SCHEMA, "The label vocabulary with titles"), **common})
    async def labels() -> dict:
        """The model's labels with their titles."""
        return {"label_level": model.manifest.label_level,
                "labels": [{"code": c, "title": title(c)} for c in model.labels]}

    try:  # whether 'coverage' can be served: the schema says so exactly
        from patentcpc.conformal import model_table

        has_conformal = bool(model_table(model))
    except (ConfigError, ModelError):
        has_conformal = False

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": predict_request_schema(cfg, has_conformal), "example": PREDICT_EXAMPLE}}}},
        responses={200: _json_response(PREDICT_RESPONSE_SCHEMA, "Ranked CPC codes"),
                   **_error_responses(400, 408, 413, 422, 500, max_body_bytes=cfg.max_body_bytes)})
    async def predict(request: Request) -> dict:
        """Ranked CPC codes (labels above threshold plus the top k) for one text or a list of documents."""
        body = parse_json(await request.body())
        texts, ids, top_k = parse_request(body, cfg, fields)
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            raise RequestError(422, "'explain' must be true or false")
        coverage = body.get("coverage")
        if "coverage" in body:  # (null too: the schema takes a number only)
            from patentcpc.conformal import check_coverage, model_table

            try:
                if coverage is None:
                    raise ConfigError("'coverage' must be a number between 0 and 1 (exclusive), e.g. 0.9, not null")
                check_coverage(coverage, "'coverage'")
                model_table(model)
            except (ConfigError, ModelError) as exc:
                raise RequestError(422, str(exc)) from None
        await checker.check(texts, ["text"] if "text" in body else None)
        try:
            results = await batcher.submit(texts, top_k, coverage)
            if explain:
                from patentcpc.explain import explain_predictions

                results = await asyncio.to_thread(explain_predictions, model, texts, results)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001  (logged here; the client gets no exception text)
            logger.error("the model failed on a request of %d document(s)", len(texts), exc_info=exc)
            raise RequestError(500, "the model failed on this request (see the service log)") from None
        if "text" in body:
            return results[0]
        return {"documents": [{"id": i, **r} if i is not None else r for i, r in zip(ids, results, strict=True)]}

    # the web page and the docs: every asset from the package, none from a CDN
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                       "base-uri 'none'; frame-ancestors 'none'",
            "Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title="patentcpc API",
            swagger_js_url=f"{root}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})

    if search_index is not None:
        add_search_route(app, search_index, cfg.max_body_bytes)
    from patentcpc.documents.service import add_read_route  # (PDF upload: issue 31)

    add_read_route(app, batcher.submit, model.manifest.label_level, cfg.max_body_bytes)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s)
    return app


SEARCH_MAX_K = 100
SEARCH_MAX_QUERY_CHARS = 8000  # (within what schema fuzzers can build: see predict_request_schema)
SEARCH_MODES = ("bm25", "dense", "hybrid")
SEARCH_FUSIONS = ("minmax", "zscore", "rrf")


def search_request_schema(modes: tuple[str, ...] = SEARCH_MODES) -> dict:
    """The JSON Schema of a ``POST /search`` body, exactly what the route accepts; ``modes``: those
    the index can serve (``bm25`` only without embeddings)."""
    return {"type": "object", "required": ["query"], "additionalProperties": False, "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": SEARCH_MAX_QUERY_CHARS, "pattern": _NOT_BLANK},
        "k": {"type": "integer", "minimum": 1, "maximum": SEARCH_MAX_K, "default": 10},
        "mode": {"enum": list(modes), "default": "hybrid" if "hybrid" in modes else modes[0]},
        "fusion": {"enum": list(SEARCH_FUSIONS), "default": "minmax"},
        "alpha": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.7}}}


SEARCH_SCHEMA = search_request_schema()
SEARCH_RESPONSE_SCHEMA = {"type": "object", "required": ["query", "mode", "score", "results"], "properties": {
    "query": {"type": "string"}, "mode": {"type": "string"}, "score": {"type": "string"},
    "seconds": {"type": "number"}, "results": {"type": "array", "items": {
        "type": "object", "required": ["rank", "id", "title", "score", "cpc"], "properties": {
            "rank": {"type": "integer"}, "id": {"type": "string"}, "title": {"type": "string"},
            "score": {"type": "number"}, "cpc": {"type": "array", "items": {"type": "string"}}}}}}}


def add_search_route(app, index, max_body_bytes: int | None = None) -> None:
    """``POST /search`` over a loaded index: the index (and its encoder) stay in memory, so a query
    costs one query embedding and one pass over the document vectors (no reloading)."""
    import threading

    from fastapi import Request

    from patentcpc.errors import PatentCPCError
    from patentcpc.retrieval.search import SearchOptions, hits_as_dicts, score_legend

    lock = threading.Lock()  # one query at a time through the encoder
    default_mode = "hybrid" if index.embeddings is not None else "bm25"
    modes = SEARCH_MODES if index.embeddings is not None else ("bm25",)
    request_schema = search_request_schema(modes)

    def run(query: str, opts: SearchOptions) -> list:
        with lock:
            return index.search(query, opts)

    @app.post("/search", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": request_schema,
                             "example": {"query": "wireless handover between radio cells", "k": 5}}}}},
        responses={200: _json_response(SEARCH_RESPONSE_SCHEMA, "The best documents, best first"),
                   **_error_responses(400, 408, 413, 422, 500, max_body_bytes=max_body_bytes)})
    async def search(request: Request) -> dict:
        """Search the index the service was started with (``patentcpc serve --index``)."""
        body = parse_json(await request.body())
        if not isinstance(body, dict):
            raise RequestError(422, "the body must be a JSON object with 'query'")
        unknown = sorted(set(body) - set(request_schema["properties"]))
        if unknown:
            raise RequestError(422, f"unknown field '{unknown[0]}'")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RequestError(422, "'query' must be a non-empty string")
        if len(query) > SEARCH_MAX_QUERY_CHARS:
            raise RequestError(422, f"'query': {len(query)} characters, more than the limit {SEARCH_MAX_QUERY_CHARS}",
                               "limit_exceeded")
        k = _as_int(body.get("k", 10))
        if k is None or not 1 <= k <= SEARCH_MAX_K:
            raise RequestError(422, f"'k' must be an integer from 1 to {SEARCH_MAX_K}")
        mode = body.get("mode", default_mode)
        if not isinstance(mode, str) or mode not in modes:
            raise RequestError(422, f"'mode' must be one of {', '.join(modes)}"
                               + ("" if index.embeddings is not None else " (this index has BM25 only)"))
        fusion = body.get("fusion", "minmax")
        if not isinstance(fusion, str) or fusion not in SEARCH_FUSIONS:
            raise RequestError(422, f"'fusion' must be one of {', '.join(SEARCH_FUSIONS)}")
        alpha = body.get("alpha", 0.7)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise RequestError(422, "'alpha' must be a number from 0 to 1")
        try:
            opts = SearchOptions(k=k, mode=mode, fusion=fusion, alpha=float(alpha))
        except PatentCPCError as exc:
            raise RequestError(422, str(exc)) from None
        if opts.mode != "bm25" and index.embeddings is None:
            raise RequestError(422, f"mode '{opts.mode}' needs an index built with --model; this one has BM25 only")
        t0 = time.perf_counter()
        try:
            hits = await asyncio.to_thread(run, query, opts)
        except PatentCPCError as exc:
            raise RequestError(422, str(exc)) from None
        legend = score_legend(opts.mode, opts.fusion, opts.alpha, opts.rrf_k)
        return {"query": query, "mode": opts.mode, "score": legend, "seconds": round(time.perf_counter() - t0, 4),
                "results": hits_as_dicts(hits)}


# ----------------------------------------------------------------------------- the server


def _h11_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol with a deadline for the request line and headers: a client that sends
    part of them and stalls gets 408 and the connection is closed (uvicorn alone waits forever)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = json.dumps(error_body(408, f"the request headers did not arrive within {header_timeout_s:g} s")).encode()
    response = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer = None

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the headers are in
                self._cancel_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # the next request on this connection

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE \
                    and not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    return HeaderTimeoutH11Protocol


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


def check_log_level(level: str) -> str:
    """``level`` in lower case if uvicorn knows it, else a :class:`ConfigError` (before any work)."""
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return level.lower()


def check_listen(host: str, port: int) -> None:
    """A :class:`ConfigError` unless the service can listen on ``host:port`` (the name resolves and
    the address is free), checked as uvicorn binds (``SO_REUSEADDR``), so the user gets one line
    instead of uvicorn's start-up log and exit code 3."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise ConfigError(f"--host {host}: not an address to listen on ({getattr(exc, 'strerror', None) or exc})"
                          ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ConfigError(f"{host}:{port}: cannot listen there ({exc.strerror or exc})") from None


def run_server(model: CPCModel, cfg: ServeConfig | None = None, host: str = "127.0.0.1", port: int = 8000,
               log_level: str = "info", search_index=None) -> None:
    """Serve ``model`` with uvicorn until SIGINT/SIGTERM; in-flight requests are finished first
    (up to ``cfg.graceful_timeout_s``)."""
    import uvicorn

    cfg = cfg or ServeConfig()
    log_level = check_log_level(log_level)
    config = uvicorn.Config(create_app(model, cfg, search_index), host=host, port=port, log_level=log_level,
                            http=_h11_protocol(cfg.header_timeout_s),
                            timeout_keep_alive=max(1, round(cfg.keep_alive_s)),
                            timeout_graceful_shutdown=max(1, round(cfg.graceful_timeout_s)))
    uvicorn.Server(config).run()
