"""``POST /read`` for the service: a patent PDF or scan uploaded as the request body (within the
service's body limit) comes back as its front-page record beside the model's predictions, with the
document's own printed classification and where the two disagree (an auditor's view).

The route is added by :func:`patentcpc.serving.create_app`; errors are the service's error shape
(raised as HTTP exceptions that its handler formats)."""
# (no "from __future__ import annotations": FastAPI reads the route's annotations at definition time)



import asyncio
import os
import tempfile
from pathlib import Path

READ_TIMEOUT_S = 180.0

READ_RESPONSE_SCHEMA = {"type": "object", "required": ["record", "predictions", "printed", "disagreement"],
                        "properties": {"record": {"type": "object"}, "predictions": {"type": "array"},
                                       "printed": {"type": "array", "items": {"type": "string"}},
                                       "disagreement": {"type": "object"}}}


def _suffix(head: bytes) -> str | None:
    if b"%PDF-" in head[:1024]:
        return ".pdf"
    if head.startswith(b"\x89PNG"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ".tif"
    return None


def read_upload(data: bytes, timeout_s: float = READ_TIMEOUT_S) -> dict:
    """The record of an uploaded document, read in a bounded worker process; ValueError (one line, no
    server path in it) when it cannot be read."""
    from patentcpc.documents.reader import ReadOptions, iter_records

    suffix = _suffix(data)
    if suffix is None:
        raise ValueError("the body is not a PDF or an image (PNG, JPEG, TIFF)")
    with tempfile.TemporaryDirectory(prefix="patentcpc-read-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        ((_name, rec, err),) = list(iter_records([path], ReadOptions(timeout_s=timeout_s), workers=1))
    if err is not None:
        raise ValueError(err.replace(os.fspath(path), "upload"))
    rec["file"] = "upload"
    return rec


def record_text(rec: dict) -> str:
    """The text view of a record: title, abstract and first claim."""
    return "\n".join(x for x in (rec.get("title"), rec.get("abstract"), rec.get("first_claim")) if x)


def add_read_route(app, submit, level: str = "subclass", max_body_bytes: int | None = None) -> None:
    """``POST /read?top_k=5``: the body is the document's bytes (``application/pdf``, ``image/png``, ...)."""
    from fastapi import Request
    from starlette.exceptions import HTTPException

    from patentcpc.cpc import CPCError, normalize

    # not in the OpenAPI document: a binary body the schema cannot constrain to "a readable patent PDF"
    # would make the schema fuzzers' positive-data checks fail by design (see benchmarks/pdf.md)
    @app.post("/read", include_in_schema=False)
    async def read(request: Request, top_k: int = 5) -> dict:
        """A patent PDF or scan in; its front-page record, the model's codes and the document's own."""
        if not 1 <= top_k <= 100:
            raise HTTPException(422, "top_k must be between 1 and 100")
        data = await request.body()
        if not data:
            raise HTTPException(400, "empty body: send the PDF or image as the request body")
        try:
            rec = await asyncio.to_thread(read_upload, data)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        text = record_text(rec)
        if not text:
            raise HTTPException(422, "the document's front page has no title or abstract to classify")
        (result,) = await submit([text], top_k)
        printed = []
        for code in rec.get("cpc") or rec.get("ipc") or []:
            try:
                c = normalize(code, level)
            except CPCError:
                continue
            if c not in printed:
                printed.append(c)
        predicted = [p["code"] for p in result["predictions"] if p.get("assigned")]
        return {"record": rec, "predictions": result["predictions"], "printed": printed,
                "disagreement": {"printed_not_predicted": [c for c in printed if c not in predicted],
                                 "predicted_not_printed": [c for c in predicted if c not in printed]}}
