"""``patentcpc tokenizer train``: a patent tokenizer (WordPiece or BPE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, out
from patentcpc.cli.options import IdField, LabelField, OnBadRow, Split, TextFields, load_texts

tokenizer_app = typer.Typer(help="Train a patent tokenizer (WordPiece or BPE).", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def tokenizer_train(
    data: Annotated[str, typer.Option("--data", help="Patent texts (any supported format).")],
    output: Annotated[Path, typer.Option("--output", help="Tokenizer folder to write.")],
    vocab_size: Annotated[int, typer.Option("--vocab-size")] = 32_000,
    kind: Annotated[str, typer.Option("--kind", help="wordpiece (BERT style) or bpe (byte-level).")] = "wordpiece",
    min_frequency: Annotated[int, typer.Option("--min-frequency")] = 2,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Train a patent vocabulary (usable as --tokenizer of a random-init --arch model)."""
    from patentcpc.io import check_output_dir
    from patentcpc.tokenization import tokenizer_stats, train_tokenizer

    check_output_dir(output, "tokenizer", [data])
    texts = load_texts(data, text_fields, label_field, id_field, on_bad_row, split)
    tok = train_tokenizer(texts, output, vocab_size, kind, min_frequency)
    sample = texts.texts[:1000]
    out.print(json.dumps({"output": str(output), "kind": kind, **tokenizer_stats(tok, sample)}))
