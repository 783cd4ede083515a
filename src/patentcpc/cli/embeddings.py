"""``patentcpc train-embeddings``: contrastive fine-tuning of an encoder on patent signals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console
from patentcpc.cli.options import IdField, LabelField, Level, OnBadRow, Split, TextFields, check_input, check_model


@app.command("train-embeddings")
def train_embeddings(
    model: Annotated[str, typer.Option("--model", help="Encoder to fine-tune: sentence-transformers or Hugging "
                                                       "Face folder (or hub id).")],
    data: Annotated[str, typer.Option("--data", help="Training patents (file, save_to_disk folder or hub id).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for the fine-tuned embedder.")],
    signal: Annotated[str, typer.Option("--signal", help="Signals, comma-separated: cpc, multiview, citations, "
                                                         "classification (NAME:WEIGHT allowed).")] = "cpc,multiview",
    signal_weights: Annotated[str | None, typer.Option("--signal-weights", help="Sampling weight per signal, "
                                                                                "e.g. 2,1.")] = None,
    citations: Annotated[str | None, typer.Option("--citations", help="Citation pairs: TREC qrels or a "
                                                                      "two-column CSV of patent ids.")] = None,
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the signal data.")] = 1.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs per step (in-batch negatives).")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-5,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens kept per text in training.")] = 256,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps.")] = None,
    hard_negatives: Annotated[bool, typer.Option("--hard-negatives/--no-hard-negatives",
                                                 help="cpc: a same-section, other-subclass negative per pair.")] = True,
    mine_negatives: Annotated[bool, typer.Option("--mine-negatives", help="Mine hard negatives with the base "
                                                                          "model (most similar, no shared label).")]
    = False,
    cached: Annotated[bool | None, typer.Option(
        "--cached/--no-cached", help="CachedMultipleNegativesRankingLoss (GradCache: same gradients, the "
                                     "activations of --set mini_batch_size texts at a time; default: on except "
                                     "on a CUDA GPU).")] = None,
    views: Annotated[str | None, typer.Option("--views", help="multiview fields, e.g. title,abstract,claims "
                                                              "(default: those present).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override an option: key=value (e.g. "
                                                                 "mini_batch_size=8, cpc_loss=cosent).")] = None,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Fine-tune an embedder contrastively (sentence-transformers); the output loads wherever patentcpc
    takes an encoder (embed, index build, search, train --model, benchmark-embeddings)."""
    from patentcpc.config import apply_overrides, from_dict
    from patentcpc.io import check_output_dir
    from patentcpc.retrieval.finetune import (
        FinetuneOptions,
        load_corpus,
        parse_signals,
        read_citation_pairs,
        save_embedder,
        train_embedder,
    )

    check_input(data, "--data")  # inputs, output and options before any model or heavy library loads
    check_model(model)
    if citations is not None and not Path(citations).is_file():
        from patentcpc.errors import DataError

        raise DataError(citations, "file not found (--citations)")
    check_output_dir(output, "encoder", [data, model])  # before the work: never over a user's folder
    given = {"signals": parse_signals(signal, signal_weights), "epochs": epochs, "batch_size": batch_size, "lr": lr,
             "max_length": max_length, "max_steps": max_steps, "hard_negatives": hard_negatives,
             "mine_negatives": mine_negatives, "cached": cached, "views": views, "seed": seed,
             "level": level or "subclass"}
    opts = from_dict(FinetuneOptions, apply_overrides(given, set_), "train-embeddings")
    pairs = read_citation_pairs(citations) if citations else None
    if citations and "citations" not in opts.signals:
        console.print("[yellow]--citations given without the citations signal; ignored[/]")
    corpus = load_corpus(data, text_fields=text_fields.split(",") if text_fields else None, views=opts.views,
                         label_field=label_field, id_field=id_field, level=opts.level,
                         on_bad_row=on_bad_row or "error", split=split or "train")
    mix = ", ".join(f"{k}x{v:g}" for k, v in opts.signals.items())
    console.print(f"{len(corpus)} patents, fields {', '.join(corpus.fields) or '-'}; signals {mix}", highlight=False)
    result = train_embedder(model, corpus, opts, pairs, str(citations), progress=True,
                            say=lambda m: console.print(m, highlight=False, markup=False))
    info = {"source": str(data), "n_patents": len(corpus), "fields": list(corpus.fields),
            "citations": str(citations) if citations else None}
    save_embedder(result, output, model, opts, info)
    counts = ", ".join(f"{k}: {v} examples" for k, v in result.n_examples.items())
    console.print(f"trained {result.steps} steps in {result.seconds:.0f}s ({counts}); wrote {output}", highlight=False)
