"""``patentcpc serve``: the FastAPI service with micro-batching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app
from patentcpc.cli.options import Device, Onnx, load_model_on


@app.command()
def serve(
    model: Annotated[Path, typer.Option("--model", help="Model folder (any kind) or Hugging Face Hub id "
                                                        "(owner/name) of one.")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_batch_docs: Annotated[int, typer.Option("--max-batch-docs", help="Micro-batch size cap.")] = 64,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="Wait this long to fill a batch.")] = 5.0,
    max_docs: Annotated[int, typer.Option("--max-docs", help="Most documents per request.")] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Most characters per document.")] = 50_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body.")] = 4_000_000,
    device: Device = None,
    onnx: Onnx = None,
    index: Annotated[Path | None, typer.Option(
        "--index", help="Also serve POST /search over this index folder ('patentcpc index build'), "
                        "loaded once with its encoder.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    header_timeout: Annotated[float, typer.Option("--header-timeout", help="Seconds a client has to send the "
                                                                           "request headers (else 408).")] = 10.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", help="Seconds a client has to send the "
                                                                       "request body (else 408).")] = 30.0,
    graceful_timeout: Annotated[float, typer.Option("--graceful-timeout", help="On SIGTERM, seconds to finish "
                                                                               "the requests in flight.")] = 30.0,
) -> None:
    """HTTP service: a web page at /, POST /predict, GET /health, GET /labels, OpenAPI docs at /docs
    (and POST /search with --index)."""
    from patentcpc.serving import ServeConfig, check_listen, check_log_level, run_server
    from patentcpc.validation import check_device, check_port

    check_port(port)
    check_device(device)
    check_log_level(log_level)
    check_listen(host, port)  # before the model loads: a bad --host or a busy port is one line, exit 2
    cfg = ServeConfig(max_batch_docs=max_batch_docs, max_wait_ms=max_wait_ms, max_docs=max_docs,
                      max_chars=max_chars, max_body_bytes=max_body_bytes, header_timeout_s=header_timeout,
                      body_timeout_s=body_timeout, graceful_timeout_s=graceful_timeout)
    if index is not None and not (index / "index.json").exists():
        from patentcpc.errors import DataError

        raise DataError(index, "not a search index (no index.json); build one with 'patentcpc index build' (--index)")
    m = load_model_on(model, device, onnx)
    idx = None
    if index is not None:
        from patentcpc.retrieval.search import SearchIndex

        idx = SearchIndex.load(index).warm()
    from patentcpc.cli import show_held_messages

    show_held_messages()  # the service's own log (warnings, errors) goes out as it happens
    run_server(m, cfg, host=host, port=port, log_level=log_level, search_index=idx)
