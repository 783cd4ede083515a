"""Inference commands: ``predict-batch`` (streaming), ``bench``, ``serve``, ``export onnx``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, out

export_app = typer.Typer(help="Export a model for deployment.", no_args_is_help=True)
app.add_typer(export_app, name="export")

BatchSize = Annotated[int, typer.Option("--batch-size", help="Most documents per batch.")]
TokenBudget = Annotated[int, typer.Option("--token-budget", help="Most padded tokens per batch (rows x longest).")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model (pays off on long runs).")]
Autocast = Annotated[str, typer.Option("--autocast", help="auto (bf16 on a GPU, fp32 on a CPU), bf16, fp16, off.")]
Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda if available).")]
Onnx = Annotated[Path | None, typer.Option(
    "--onnx", help="Run this exported ONNX file (e.g. MODEL/onnx/model.onnx) with ONNX Runtime instead of PyTorch.")]


def _load(model: Path, device: str | None, onnx: Path | None):
    from patentcpc.api import load_model  # noqa: PLC0415
    from patentcpc.validation import check_device  # noqa: PLC0415

    device = check_device(device)

    return load_model(model, onnx_file=onnx, **({"device": device} if device else {}))


@app.command("predict-batch")
def predict_batch(
    model: Annotated[Path, typer.Option("--model", help="Model folder (any kind).")],
    input: Annotated[str, typer.Option("--input", help="Documents: JSONL, CSV/TSV, Parquet, ... (any size).")],
    output: Annotated[Path, typer.Option(
        "--output", help="Predictions: .csv, .tsv (one row per document), .jsonl or .parquet.")],
    top_k: Annotated[int, typer.Option("--top-k", help="At most this many codes, best first.")] = 5,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Documents in memory at a time.")] = 4096,
    batch_size: BatchSize = 64,
    token_budget: TokenBudget = 16384,
    compile: Compile = False,
    autocast: Autocast = "auto",
    device: Device = None,
    onnx: Onnx = None,
    text_fields: Annotated[str | None, typer.Option("--text-fields", help="Fields joined into the text.")] = None,
    id_field: Annotated[str | None, typer.Option("--id-field", help="Id column (default: auto-detect).")] = None,
    label_field: Annotated[str | None, typer.Option(
        "--label-field", help="Gold label column, carried to the output with hits (default: auto-detect).")] = None,
    on_bad_row: Annotated[str | None, typer.Option("--on-bad-row", help="error (default) or skip.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Stream predictions for a large file: sorted, token-budgeted batches; constant memory."""
    from patentcpc.config import DataConfig, from_dict  # noqa: PLC0415
    from patentcpc.inference import InferenceOptions, output_format, stream_predict  # noqa: PLC0415
    from patentcpc.io import check_output_file  # noqa: PLC0415
    from patentcpc.training import load_for_model  # noqa: PLC0415
    from patentcpc.validation import check_device  # noqa: PLC0415

    check_device(device)
    output_format(output)
    check_output_file(output, [input, model, onnx])
    opts = InferenceOptions(batch_size=batch_size, token_budget=token_budget, compile=compile, autocast=autocast)
    m = _load(model, device, onnx)
    options = {"text_fields": text_fields, "id_field": id_field, "label_field": label_field, "on_bad_row": on_bad_row}
    cfg = from_dict(DataConfig, {k: v for k, v in options.items() if v is not None}, "data")
    docs = load_for_model(input, cfg, m, require_labels=False)
    stats = stream_predict(m, docs, output, top_k, chunk_size, opts, progress=not quiet)
    out.print(f"{stats.n_docs} documents -> {stats.output} ({stats.docs_per_s:.1f} docs/s)")


@app.command()
def bench(
    arch: Annotated[str | None, typer.Option("--arch", help="Random-init preset: modernbert-tiny|small|base, "
                                                           "bert-base.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="A trained transformer model folder.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Documents (any format); default synthetic.")] = None,
    n_docs: Annotated[int | None, typer.Option("--n-docs", help="Use this many documents (cycled).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="The naive loop's fixed batch size.")] = 32,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most documents per predictor batch.")] = 128,
    token_budget: TokenBudget = 16384,
    repeats: Annotated[int, typer.Option("--repeats", help="Alternating repetitions of each path.")] = 3,
    max_length: Annotated[int, typer.Option("--max-length", help="Truncation length (--arch).")] = 512,
    compile: Compile = False,
    autocast: Autocast = "auto",
    device: Device = None,
    backend: Annotated[str, typer.Option("--backend", help="Predictor runtime: torch, onnx or onnx-int8 "
                                                         "(ONNX Runtime on the CPU).")] = "torch",
    output: Annotated[Path | None, typer.Option("--output", help="Also write the JSON here.")] = None,
) -> None:
    """Samples/s and tokens/s of the batch predictor vs a naive loop; prints one JSON object."""
    from patentcpc.bench import BenchConfig, run_bench  # noqa: PLC0415
    from patentcpc.validation import check_device  # noqa: PLC0415

    device = check_device(device)
    if output is not None:
        from patentcpc.io import check_output_file  # noqa: PLC0415

        check_output_file(output, [data, model])
    cfg = BenchConfig(arch=arch, model=model, data=data, n_docs=n_docs, batch_size=batch_size, max_batch=max_batch,
                      token_budget=token_budget, repeats=repeats, max_length=max_length, compile=compile,
                      autocast=autocast, device=device, backend=backend)
    result = run_bench(cfg, log=lambda msg: console.print(msg, highlight=False))
    text = json.dumps(result)
    if output is not None:
        from patentcpc.models.artifact import atomic_write_text  # noqa: PLC0415

        atomic_write_text(output, json.dumps(result, indent=2) + "\n")
    print(text)


@app.command()
def serve(
    model: Annotated[Path, typer.Option("--model", help="Model folder (any kind).")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_batch_docs: Annotated[int, typer.Option("--max-batch-docs", help="Micro-batch size cap.")] = 64,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="Wait this long to fill a batch.")] = 5.0,
    max_docs: Annotated[int, typer.Option("--max-docs", help="Most documents per request.")] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Most characters per document.")] = 50_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body.")] = 4_000_000,
    device: Device = None,
    onnx: Onnx = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    header_timeout: Annotated[float, typer.Option("--header-timeout", help="Seconds a client has to send the "
                                                                           "request headers (else 408).")] = 10.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", help="Seconds a client has to send the "
                                                                       "request body (else 408).")] = 30.0,
    graceful_timeout: Annotated[float, typer.Option("--graceful-timeout", help="On SIGTERM, seconds to finish "
                                                                               "the requests in flight.")] = 30.0,
) -> None:
    """HTTP service: a web page at /, POST /predict, GET /health, GET /labels, OpenAPI docs at /docs."""
    from patentcpc.serving import ServeConfig, run_server  # noqa: PLC0415
    from patentcpc.validation import check_device, check_port  # noqa: PLC0415

    check_port(port)
    check_device(device)
    cfg = ServeConfig(max_batch_docs=max_batch_docs, max_wait_ms=max_wait_ms, max_docs=max_docs,
                      max_chars=max_chars, max_body_bytes=max_body_bytes, header_timeout_s=header_timeout,
                      body_timeout_s=body_timeout, graceful_timeout_s=graceful_timeout)
    m = _load(model, device, onnx)
    run_server(m, cfg, host=host, port=port, log_level=log_level)


@export_app.command("onnx")
def export_onnx_cmd(
    model: Annotated[Path, typer.Option("--model", help="Transformer model folder.")],
    output: Annotated[Path | None, typer.Option("--output", help="ONNX file (default MODEL/onnx/model.onnx).")] = None,
    quantize: Annotated[bool, typer.Option("--quantize", help="Also write an int8 dynamic-quantized copy.")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare ONNX Runtime with PyTorch.")] = True,
) -> None:
    """Export a transformer model to ONNX (optionally int8) for CPU serving with ONNX Runtime."""
    from patentcpc.export import export_onnx, parity  # noqa: PLC0415
    from patentcpc.io import check_output_file  # noqa: PLC0415
    from patentcpc.models import load_model  # noqa: PLC0415

    target = check_output_file(output or Path(model) / "onnx" / "model.onnx",
                               [p for p in Path(model).rglob("*") if "onnx" not in p.relative_to(model).parts])
    m = load_model(model, device="cpu")
    path = export_onnx(m, target, opset=opset, quantize=quantize)
    out.print(f"wrote {path}" + (f" and {path.with_name(path.stem + '.int8.onnx')}" if quantize else ""))
    if check:
        out.print(f"max |onnx - torch| logit difference: {parity(m, path):.2e}")
