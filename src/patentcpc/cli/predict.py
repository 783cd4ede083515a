"""``patentcpc predict`` (one text, or a file) and ``predict-batch`` (streaming, any size)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, out
from patentcpc.cli.options import (
    Autocast,
    BatchSize,
    Compile,
    Device,
    IdField,
    ModelOption,
    OnBadRow,
    Onnx,
    Split,
    TextFields,
    TokenBudget,
    check_input,
    check_model,
    data_config,
    data_options,
    load_model_on,
    note_row_ids,
    refuse_ignored,
    report_skipped,
)


@app.command()
def predict(
    model: ModelOption,
    text: Annotated[str | None, typer.Option("--text", help="One document's text.")] = None,
    input: Annotated[str | None, typer.Option("--input", help="File of documents (any supported format).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", help="Write the predictions here: .csv, .tsv, .jsonl or .parquet (by the extension); "
                         "needed with --input.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="At most this many codes, best first.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Batch size for transformer models.")] = 64,
    text_fields: TextFields = None, id_field: IdField = None, on_bad_row: OnBadRow = None, split: Split = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="For each assigned code: nearest training patents carrying it (models trained with "
                          "--set explain.index=true) and, for linear models, the terms that weighed most.")] = False,
    label_field: Annotated[str | None, typer.Option(
        "--label-field", help="Gold label column of --input, carried to the output with hits "
                              "(default: auto-detect).")] = None,
    coverage: Annotated[float | None, typer.Option(
        "--coverage", help="Also the conformal label set of each document: the smallest set of codes holding "
                           "one of its gold codes with this probability (e.g. 0.9), its size, and 'unsure' when "
                           "it is large (--input: a .jsonl output).")] = None,
) -> None:
    """Predict CPC codes: code, score, title and hierarchy path (labels above threshold plus the top k).

    With --text, a table on the screen (and --output FILE writes it too); with --input, one output
    row per document; gold labels in the input go to the output with hits (gold codes among the
    top k) and assigned_hits (gold codes among the assigned)."""
    from patentcpc.errors import ConfigError

    # every option checked before the model loads; an option the command would ignore is refused
    if (text is None) == (input is None):
        raise ConfigError("give either --text or --input")
    if top_k < 1:
        raise ConfigError("--top-k must be >= 1")
    if coverage is not None:
        from patentcpc.conformal import check_coverage

        check_coverage(coverage, "--coverage")
        if output is not None and Path(output).suffix.lower() != ".jsonl":
            raise ConfigError("--coverage writes its label sets to a .jsonl --output")
    if text is not None:
        from patentcpc.validation import check_text

        if not check_text(text).strip():
            raise ConfigError("--text is empty")
        refuse_ignored("with --text (they describe an --input file)", **{
            "--text-fields": text_fields, "--id-field": id_field, "--label-field": label_field,
            "--on-bad-row": on_bad_row, "--split": split})
        if explain and output is not None:
            raise ConfigError("--explain prints its evidence on the screen; it is not written to --output: "
                              "leave one of them out")
    else:
        if explain:
            raise ConfigError("--explain works with --text (one document)")
        if output is None:
            raise ConfigError("--input needs --output (a .csv, .tsv, .jsonl or .parquet file)")
        check_input(input, "--input")
    if output is not None:
        from patentcpc.io import check_output_file
        from patentcpc.streaming import output_format

        output_format(output)
        check_output_file(output, [input, model])
    check_model(model)
    from patentcpc.api import load_model
    from patentcpc.data import load_for_model
    from patentcpc.inference_options import InferenceOptions
    from patentcpc.streaming import predict_texts, stream_predict

    m = load_model(model)
    if coverage is not None:
        from patentcpc.conformal import model_table

        model_table(m)  # one line for a model trained without a conformal table
    if text is not None:
        (res,) = predict_texts(m, [text], top_k, batch_size, coverage)
        if explain:
            from patentcpc.explain import explain_predictions

            explain_predictions(m, [text], [res])
        print_prediction(res, m.output_score_type)
        if output is not None:
            from patentcpc.data import records_from_texts

            stats = stream_predict(m, records_from_texts([text]), output, top_k,
                                   options=InferenceOptions(batch_size=batch_size), coverage=coverage)
            out.print(f"wrote the prediction to {stats.output}", highlight=False)
        return
    cfg = data_config(**data_options(text_fields, label_field, id_field, m.manifest.label_level, on_bad_row,
                                      split))
    docs = load_for_model(input, cfg, m, require_labels=False, carry_title=True)
    report_skipped(docs)
    note_row_ids(docs, output)
    stats = stream_predict(m, docs, output, top_k, options=InferenceOptions(batch_size=batch_size), progress=True,
                           coverage=coverage)
    out.print(f"wrote {stats.n_docs} predictions to {output} ({stats.docs_per_s:.1f} docs/s)")


@app.command("predict-batch")
def predict_batch(
    model: ModelOption,
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
    """Stream predictions for a large file: sorted, token-budgeted batches; constant memory.

    CSV/TSV: one row per document with the input's id and title columns (row numbers / a text
    snippet where it has none), codes, their titles, scores, assigned and, with gold labels, hits
    (gold codes among the top k, as the metrics count them) and assigned_hits."""
    from patentcpc.config import DataConfig, from_dict
    from patentcpc.data import load_for_model
    from patentcpc.errors import ConfigError
    from patentcpc.inference_options import InferenceOptions
    from patentcpc.io import check_output_file
    from patentcpc.streaming import output_format, stream_predict
    from patentcpc.validation import check_device

    if top_k < 1:
        raise ConfigError("--top-k must be >= 1")
    if chunk_size < 1:
        raise ConfigError("--chunk-size must be >= 1")
    check_device(device)
    output_format(output)
    check_output_file(output, [input, model, onnx])
    check_input(input, "--input")
    check_model(model)
    kind = _manifest_kind(model)
    if kind is not None:  # an option the model's kind would ignore is refused, in the registry's words
        for capability, options in (("inference_options", {
                "--compile": compile, "--autocast": autocast if autocast != "auto" else None, "--onnx": onnx,
                "--token-budget": token_budget if token_budget != 16384 else None}), ("device", {"--device": device})):
            given = [name for name, value in options.items() if value is not None and value is not False]
            if given:
                kind.require(capability, given[0])
    if onnx is not None and not onnx.is_file():
        raise ConfigError(f"{onnx}: no such ONNX file (--onnx)")
    opts = InferenceOptions(batch_size=batch_size, token_budget=token_budget, compile=compile, autocast=autocast)
    options = {"text_fields": text_fields, "id_field": id_field, "label_field": label_field, "on_bad_row": on_bad_row}
    cfg = from_dict(DataConfig, {k: v for k, v in options.items() if v is not None}, "data")
    m = load_model_on(model, device, onnx)
    docs = load_for_model(input, cfg, m, require_labels=False, carry_title=True)
    report_skipped(docs)
    note_row_ids(docs, output)
    stats = stream_predict(m, docs, output, top_k, chunk_size, opts, progress=not quiet)
    out.print(f"{stats.n_docs} documents -> {stats.output} ({stats.docs_per_s:.1f} docs/s)")


def _manifest_kind(model: Path):
    """The registered kind (:class:`patentcpc.registry.Kind`) of a local model folder, from its
    manifest (:func:`patentcpc.registry.kind_of_folder`); None for a hub id (no folder here)."""
    from patentcpc.registry import kind_of_folder

    return kind_of_folder(model) if (Path(model) / "manifest.json").is_file() else None


def print_prediction(res: dict, score_type: str = "probability") -> None:
    from rich.table import Table

    from patentcpc.cpc import shorten
    from patentcpc.streaming import LEGEND

    table = Table(title="CPC prediction")
    for col in ("code", "probability" if score_type == "probability" else "score", "assigned", "title", "path"):
        table.add_column(col)
    for p in res["predictions"]:
        path = " > ".join(x["code"] for x in p["path"])
        table.add_row(p["code"], f"{p['score']:.3f}", "✓" if p["assigned"] else "",
                      shorten(p["title"] or "—", 80), path)
    out.print(table)
    if res.get("note"):
        out.print(f"[bold]{res['note']}[/]", highlight=False)
    legend = LEGEND if score_type == "probability" else LEGEND.replace(
        "the model's probability", f"the model's raw {score_type} (not calibrated)").replace(
        "assigned (✓): probability at or above", "assigned (✓): score at or above")
    out.print(legend, highlight=False, soft_wrap=True)
    evidence = [(p["code"], p["evidence"]) for p in res["predictions"] if p.get("evidence") is not None]
    for code, ev in evidence:
        docs = [e for e in ev if e.get("kind") == "patent"]
        terms = [e for e in ev if e.get("kind") == "term"]
        out.print(f"[bold]{code}[/] evidence:", highlight=False)
        for e in docs:
            out.print(f"  training patent {shorten(e['text'], 110)} (bm25 {e['score']:.2f})", highlight=False,
                      soft_wrap=True)
        if terms:
            out.print("  terms: " + ", ".join(f"{e['term']} ({e['weight']:.3f})" for e in terms), highlight=False,
                      soft_wrap=True)
    if res.get("label_set"):
        s = res["label_set"]
        out.print(f"label set at coverage {s['coverage']:g}: {s['size']} code{'s' if s['size'] != 1 else ''} "
                  f"({', '.join(s['codes'])})" + (" [bold]unsure[/]: the model cannot narrow it down"
                                                  if s["unsure"] else ""), highlight=False, soft_wrap=True)
    if res.get("explain_note"):
        out.print(f"[dim]{res['explain_note']}[/]", highlight=False, soft_wrap=True)
