"""Core commands: data stats/split, train, evaluate, predict, cpc, quickstart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, data_app, out

# ----------------------------------------------------------------------------- shared options

TextFields = Annotated[str | None, typer.Option(
    "--text-fields", help="Fields joined into the text view, in order, e.g. title,abstract,claims.")]
LabelField = Annotated[str | None, typer.Option("--label-field", help="Label column (default: auto-detect).")]
IdField = Annotated[str | None, typer.Option("--id-field", help="Id column (default: auto-detect).")]
Level = Annotated[str | None, typer.Option(
    "--level", help="CPC level of the labels: section, class, subclass (default) or group.")]
OnBadRow = Annotated[str | None, typer.Option("--on-bad-row", help="error (default) or skip bad rows.")]
Split = Annotated[str | None, typer.Option("--split", help="Split of a Hugging Face dataset (default train).")]


def data_options(text_fields, label_field, id_field, level, on_bad_row, split) -> dict:
    return {"text_fields": text_fields, "label_field": label_field, "id_field": id_field, "level": level,
            "on_bad_row": on_bad_row, "hf_split": split}


def _data_config(**kw):
    from patentcpc.config import DataConfig, from_dict  # noqa: PLC0415

    return from_dict(DataConfig, {k: v for k, v in kw.items() if v is not None}, "data")


def _report_skipped(data) -> None:
    if data.n_skipped:
        console.print(f"[yellow]skipped {data.n_skipped} bad row(s)[/]; first: {data.skipped[0]}",
                      highlight=False)


# ----------------------------------------------------------------------------- data


@data_app.command("stats")
def data_stats(
    data: Annotated[str, typer.Option("--data", help="File, save_to_disk folder or hub dataset id.")],
    plots_dir: Annotated[Path | None, typer.Option(
        "--plots-dir", help="Write the two PNG plots into this folder (none are written without it).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Documents, labels, label cardinality, imbalance; top-30 bar chart and log-log rank/frequency plot."""
    from patentcpc.data import compute_stats, load_data  # noqa: PLC0415
    from patentcpc.plots import plot_rank_frequency, plot_top_labels  # noqa: PLC0415

    cfg = _data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    loaded = load_data(data, **cfg.load_kwargs())
    _report_skipped(loaded)
    stats = compute_stats(loaded)
    plots: list[str] = []
    if plots_dir is not None:  # never silently into the current folder
        stem = Path(str(data).rstrip("/")).name.split(".")[0] or "data"
        plots = [str(plot_top_labels(stats.label_counts, plots_dir / f"{stem}_top30_{cfg.level}.png")),
                 str(plot_rank_frequency(stats.label_counts, plots_dir / f"{stem}_rank_frequency_{cfg.level}.png"))]
    summary = {"source": str(data), "text_view": loaded.text_fields, "label_field": loaded.label_field,
               "id_field": loaded.id_field, **stats.summary(), "plots": plots}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{data}", show_header=False)
    for key in ("n_docs", "n_labels", "n_label_assignments", "label_cardinality", "label_density",
                "imbalance_ratio", "mean_imbalance_ratio", "top30_share", "mean_text_chars", "median_text_words",
                "n_skipped"):
        v = summary[key]
        table.add_row(key, f"{v:.4g}" if isinstance(v, float) else str(v))
    table.add_row("text view", "+".join(loaded.text_fields))
    table.add_row("label column", str(loaded.label_field))
    table.add_row("id column", loaded.id_field or "(none: row numbers)")
    table.add_row("most frequent", ", ".join(f"{c} ({n})" for c, n in stats.label_counts[:10]))
    out.print(table)
    out.print(f"plots: {', '.join(plots)}" if plots else "plots: none written (add --plots-dir DIR for the PNGs)")


@data_app.command("split")
def data_split(
    data: Annotated[str, typer.Option("--data", help="One labelled file to split.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for train/valid/test .jsonl files.")],
    fractions: Annotated[str, typer.Option(help="Train,valid,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Deterministic multi-label stratified split (iterative stratification)."""
    from patentcpc.data import load_data, split_data  # noqa: PLC0415
    from patentcpc.errors import ConfigError  # noqa: PLC0415
    from patentcpc.inference import write_jsonl  # noqa: PLC0415

    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ConfigError(f"--fractions must be numbers like 0.8,0.1,0.1, not '{fractions}'") from None
    if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"--fractions must be three numbers that sum to 1, not '{fractions}'")
    from patentcpc.io import atomic_dir, check_output_dir  # noqa: PLC0415

    check_output_dir(output, "splits", [data])
    cfg = _data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    loaded = load_data(data, **cfg.load_kwargs())
    _report_skipped(loaded)
    counts = {}
    with atomic_dir(output, kind="splits") as tmp:  # all three files appear together
        for name, part in zip(("train", "valid", "test"), split_data(loaded, fr, seed), strict=True):
            counts[name] = write_jsonl(({"id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])}
                                        for r in part.dataset), tmp / f"{name}.jsonl")
    for name, n in counts.items():
        out.print(f"{name}: {n} documents -> {output / f'{name}.jsonl'}")


# ----------------------------------------------------------------------------- train / evaluate / predict


@app.command()
def train(
    data: Annotated[str | None, typer.Option("--data", help="Training data (any supported format).")] = None,
    output: Annotated[Path, typer.Option("--output", help="Model folder to write.")] = Path("patentcpc-model"),
    model: Annotated[str | None, typer.Option(
        "--model", help="tfidf, scheme (cold start from the IPC scheme), or a transformer: hub id or folder "
                        "(default answerdotai/ModernBERT-base).")] = None,
    eval_data: Annotated[str | None, typer.Option("--eval-data", help="Validation/evaluation data.")] = None,
    config: Annotated[str | None, typer.Option("--config", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: key.sub=value.")] = None,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
    arch: Annotated[str | None, typer.Option(
        "--arch", help="Random-init transformer preset (modernbert-tiny|small|base, bert-base).")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer for --arch models.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --output.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the model folder at --output (the old model stays usable until the new one "
                            "is complete).")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    members: Annotated[str | None, typer.Option(
        "--members", help="For --model ensemble: comma-separated member specs (what --model accepts), "
                          "e.g. tfidf,sentence-transformers/all-MiniLM-L6-v2; for --model router: ENCODER,LLM "
                          "(model specs or trained model folders).")] = None,
) -> None:
    """Train a model and save it as a model folder (manifest + weights + resolved config)."""
    from patentcpc.config import TrainConfig, resolve  # noqa: PLC0415
    from patentcpc.training import train_model  # noqa: PLC0415

    cli: dict = {"data": {k: v for k, v in data_options(text_fields, label_field, id_field, level, on_bad_row,
                                                           split).items() if v is not None}}
    if model is not None:
        cli["model"] = model
    if seed is not None:
        cli["seed"] = seed
    if members is not None:
        if model == "router":
            cli["router"] = {"members": members}
        else:
            cli["ensemble"] = {"members": [m.strip() for m in members.split(",") if m.strip()]}
    transformer_cli = {"arch": arch, "tokenizer": tokenizer}
    if any(v is not None for v in transformer_cli.values()):
        cli["transformer"] = {k: v for k, v in transformer_cli.items() if v is not None}
    cfg = resolve(TrainConfig, config, cli, set_)
    from patentcpc.training import training_kind  # noqa: PLC0415

    kind = {"linear": "linear", "scheme": "linear"}.get(training_kind(cfg), training_kind(cfg))
    _check_train_output(output, kind, resume, overwrite,
                        [data, eval_data, config, cfg.model, cfg.transformer.tokenizer])
    if kind == "linear":  # seconds to minutes, no progress bar of its own
        with console.status(f"training {cfg.model} (linear)…"):
            result = train_model(cfg, data, eval_data, output, resume=resume)
    else:
        result = train_model(cfg, data, eval_data, output, resume=resume)
    out.print(f"saved {result.model.kind} model ({len(result.model.labels)} labels) to {output}")
    if result.overlap is not None and result.overlap.any:
        _warn(result.overlap.message(str(data), str(eval_data)))
    n_skipped = (getattr(result.model.manifest, "training_data", None) or {}).get("n_skipped")
    if n_skipped:
        console.print(f"[yellow]skipped {n_skipped} bad row(s)[/] of {data} (--on-bad-row skip)", highlight=False)
    if result.metrics:
        _print_metrics(result.metrics)


def _warn(message: str) -> None:
    console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _check_train_output(output: Path, kind: str, resume: bool, overwrite: bool, inputs: list) -> None:
    from patentcpc.errors import ConfigError  # noqa: PLC0415
    from patentcpc.io import check_model_output  # noqa: PLC0415

    if resume and overwrite:
        raise ConfigError("--resume continues the model at --output and --overwrite replaces it: give one")
    if resume and kind != "transformer":
        raise ConfigError(f"--resume continues a transformer run; a {kind} model trains in one go "
                          "(use --overwrite to replace the model at --output)")
    check_model_output(output, inputs, resume=resume, overwrite=overwrite)
    if resume and (output / "manifest.json").exists():
        from patentcpc.training.checkpoints import CHECKPOINTS, last_checkpoint  # noqa: PLC0415

        if last_checkpoint(output / CHECKPOINTS) is None:
            raise ConfigError(f"{output}: a finished model without checkpoints: nothing to --resume "
                              "(use --overwrite to replace it)")


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(show_header=True, title="evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, int):
            table.add_row(k, str(v))
    out.print(table)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model folder.")],
    data: Annotated[str, typer.Option("--data", help="Labelled evaluation data.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write a per-label CSV report here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size for transformer models.")] = 64,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    on_bad_row: OnBadRow = None, split: Split = None,
    plots_dir: Annotated[Path | None, typer.Option(
        "--plots-dir", help="Write the top-1 reliability plot (PNG) into this folder.")] = None,
) -> None:
    """Evaluate a model folder: P/R/F1@1,3,5, micro/macro P/R/F1, section/class accuracy@1."""
    from patentcpc.api import load_model  # noqa: PLC0415
    from patentcpc.metrics import binarize, evaluate_scores, per_label_report  # noqa: PLC0415
    from patentcpc.training import load_for_model  # noqa: PLC0415

    if report is not None:
        from patentcpc.io import check_output_file  # noqa: PLC0415

        check_output_file(report, [data, model], "--report")
    m = load_model(model)
    cfg = _data_config(**data_options(text_fields, label_field, id_field, m.manifest.label_level, on_bad_row,
                                      split))
    ev = load_for_model(data, cfg, m)
    _report_skipped(ev)
    from patentcpc.overlap import training_overlap  # noqa: PLC0415

    overlap, _why_not = training_overlap(m, ev)
    if overlap is not None and overlap.any:
        _warn(overlap.message(str(m.manifest.training_data.get("source")), str(data)))
    scores = m.predict_scores(ev.texts, batch_size=batch_size, progress=not as_json)
    metrics = evaluate_scores(scores, ev.labels, m.labels, m.thresholds)
    metrics = {"model": str(model), "data": str(data), **metrics, "n_skipped": ev.n_skipped}
    if hasattr(m, "routing_report"):  # router models: share of documents sent to the second member
        metrics.update(m.routing_report())
    if overlap is not None:
        metrics["overlap_with_training"] = overlap.to_dict()
    if plots_dir is not None:
        from patentcpc.calibration import reliability_bins, top1_confidence  # noqa: PLC0415
        from patentcpc.plots import plot_reliability  # noqa: PLC0415

        conf, hit = top1_confidence(scores, ev.labels, m.labels)
        stem = Path(str(data).rstrip("/")).name.split(".")[0] or "data"
        metrics["plots"] = [str(plot_reliability(reliability_bins(conf, hit), plots_dir / f"{stem}_reliability.png",
                                                 metrics.get("ece@1")))]
    if report is not None:
        import csv  # noqa: PLC0415

        from patentcpc.cpc import title  # noqa: PLC0415
        from patentcpc.models.artifact import atomic_write_text  # noqa: PLC0415

        rows = per_label_report(binarize(scores, m.thresholds), ev.labels, m.labels)
        import io  # noqa: PLC0415

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[*rows[0].keys(), "title"] if rows else ["label"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "title": title(r["label"]) or ""})
        atomic_write_text(report, buf.getvalue())
    if as_json:
        print(json.dumps(metrics))
    else:
        _print_metrics(metrics)


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", help="Model folder.")],
    text: Annotated[str | None, typer.Option("--text", help="One document's text.")] = None,
    input: Annotated[str | None, typer.Option("--input", help="File of documents (any supported format).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", help="Output for --input: .csv, .tsv, .jsonl or .parquet (by the extension).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="At most this many codes, best first.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Batch size for transformer models.")] = 64,
    text_fields: TextFields = None, id_field: IdField = None, on_bad_row: OnBadRow = None, split: Split = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="For each assigned code: nearest training patents carrying it (models trained with "
                          "--set explain.index=true) and, for linear models, the terms that weighed most.")] = False,
    label_field: Annotated[str | None, typer.Option(
        "--label-field", help="Gold label column of --input, carried to the output with hits "
                              "(default: auto-detect).")] = None,
) -> None:
    """Predict CPC codes: code, score, title and hierarchy path (labels above threshold plus the top k).

    With --input, one output row per document; gold labels in the input go to the output with hits."""
    from patentcpc.api import load_model  # noqa: PLC0415
    from patentcpc.errors import ConfigError  # noqa: PLC0415
    from patentcpc.inference import predict_texts  # noqa: PLC0415
    from patentcpc.training import load_for_model  # noqa: PLC0415

    if (text is None) == (input is None):
        raise ConfigError("give either --text or --input")
    if top_k < 1:
        raise ConfigError("--top-k must be >= 1")
    if text is not None:
        from patentcpc.validation import check_text  # noqa: PLC0415

        if not check_text(text).strip():
            raise ConfigError("--text is empty")
    if output is not None:
        from patentcpc.io import check_output_file  # noqa: PLC0415

        check_output_file(output, [input, model])
    m = load_model(model)
    if text is not None:
        (res,) = predict_texts(m, [text], top_k, batch_size)
        if explain:
            from patentcpc.explain import explain_predictions  # noqa: PLC0415

            explain_predictions(m, [text], [res])
        _print_prediction(res, m.output_score_type)
        return
    if explain:
        raise ConfigError("--explain works with --text (one document)")
    if output is None:
        raise ConfigError("--input needs --output (a .csv, .tsv, .jsonl or .parquet file)")
    from patentcpc.inference import InferenceOptions, output_format, stream_predict  # noqa: PLC0415

    output_format(output)
    cfg = _data_config(**data_options(text_fields, label_field, id_field, m.manifest.label_level, on_bad_row,
                                      split))
    docs = load_for_model(input, cfg, m, require_labels=False)
    _report_skipped(docs)
    stats = stream_predict(m, docs, output, top_k, options=InferenceOptions(batch_size=batch_size), progress=True)
    out.print(f"wrote {stats.n_docs} predictions to {output} ({stats.docs_per_s:.1f} docs/s)")


def _print_prediction(res: dict, score_type: str = "probability") -> None:
    from rich.table import Table  # noqa: PLC0415

    from patentcpc.cpc import shorten  # noqa: PLC0415
    from patentcpc.inference import LEGEND  # noqa: PLC0415

    table = Table(title="CPC prediction")
    for col in ("code", "probability" if score_type == "probability" else "score", "assigned", "title", "path"):
        table.add_column(col)
    for p in res["predictions"]:
        path = " > ".join(x["code"] for x in p["path"])
        table.add_row(p["code"], f"{p['score']:.3f}", "✓" if p["assigned"] else "",
                      shorten(p["title"] or "—", 80), path)
    out.print(table)
    legend = LEGEND if score_type == "probability" else LEGEND.replace(
        "the model's probability", f"the model's raw {score_type} (not calibrated)")
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
    if res.get("explain_note"):
        out.print(f"[dim]{res['explain_note']}[/]", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- cpc / quickstart


@app.command()
def cpc(codes: Annotated[list[str], typer.Argument(
        help="CPC symbols in any published form; one argument may hold a list: 'H04L,H04W', "
             "'G06F 16/00; H04L 9/32'.")]) -> None:
    """Parse CPC symbols and show their full hierarchy with titles (and where a title is the IPC's)."""
    import textwrap  # noqa: PLC0415

    from patentcpc.cpc import (  # noqa: PLC0415
        dot_ancestors,
        full_ancestors,
        parse_symbol_list,
        title,
        title_note,
        title_source,
    )

    symbols = [sym for arg in codes for sym in parse_symbol_list(arg)]
    width = max(40, min(out.width, 120))
    for sym in dict.fromkeys(symbols):
        out.print(f"[bold]{sym}[/] ({sym.depth})", highlight=False)
        chain = full_ancestors(str(sym))
        for depth, code in enumerate(chain):
            text = title(code)
            source = title_source(code)
            if text is None:
                text = f"({title_note(code)})"
            elif source == "IPC" and code[0] != "Y":
                text += " (IPC title)"
            prefix = f"  {'  ' * depth}{code:<{max(12 - 2 * depth, 1)}} "
            lines = textwrap.wrap(text, width=max(20, width - len(prefix)), break_long_words=False,
                                  break_on_hyphens=False) or [""]
            out.print(prefix + lines[0], highlight=False, soft_wrap=True)
            for line in lines[1:]:
                out.print(" " * len(prefix) + line, highlight=False, soft_wrap=True)
        if sym.depth == "group" and sym.subgroup not in (None, "00") and dot_ancestors(str(sym)) is None:
            note = ("(the dot-level subgroups between the main group and this subgroup are not in the IPC "
                    "scheme data; set PATENTCPC_SCHEME to a CPC title list for them)")
            for line in textwrap.wrap(note, width=width - 2):
                out.print("  " + line, highlight=False, soft_wrap=True)


EXAMPLE_ABSTRACT = (
    "A method for transmitting data packets in a wireless communication network, wherein a base station "
    "allocates radio resources to a user equipment based on channel quality reports and encrypts the "
    "payload with a session key negotiated during authentication."
)
DEFAULT_QUICKSTART_DIR = Path("patentcpc-models") / "scheme-subclass"


@app.command()
def quickstart(
    text: Annotated[str, typer.Option("--text", help="Text to classify.")] = EXAMPLE_ABSTRACT,
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Where the cold-start model is kept.")]
    = DEFAULT_QUICKSTART_DIR,
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
) -> None:
    """Train the cold-start model on the IPC scheme's own text (once) and classify an example abstract."""
    from patentcpc.api import load_model, train  # noqa: PLC0415
    from patentcpc.inference import predict_texts  # noqa: PLC0415
    from patentcpc.models.linear import OLD_WEIGHTS  # noqa: PLC0415
    from patentcpc.validation import check_text  # noqa: PLC0415

    check_text(text)
    old_format = (model_dir / OLD_WEIGHTS).exists()  # our own cold-start model in the skops format: retrain it
    if (model_dir / "manifest.json").exists() and not old_format:
        m = load_model(model_dir)
    else:
        if old_format:
            out.print(f"{model_dir} holds a cold-start model in the old skops format (no longer loaded): retraining")
        from patentcpc.io import check_output_dir  # noqa: PLC0415

        check_output_dir(model_dir, "model", option="--model-dir")
        with console.status("training the cold-start model on the IPC scheme (about a minute)…"):
            m = train(model="scheme", output=model_dir)
        out.print(f"cold-start model saved to {model_dir}")
    out.print(f"[bold]text:[/] {text}", highlight=False)
    (res,) = predict_texts(m, [text], top_k)
    _print_prediction(res, m.output_score_type)
