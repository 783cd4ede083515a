"""``patentcpc pretrain``: masked-language-model domain pretraining of an encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, out
from patentcpc.cli.options import IdField, LabelField, OnBadRow, Split, TextFields, load_texts


@app.command()
def pretrain(
    data: Annotated[str, typer.Option("--data", help="Patent texts (any supported format; labels not needed).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for the pretrained model.")],
    model: Annotated[str | None, typer.Option("--model", help="Encoder to continue (hub id or folder).")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Random-init preset instead of --model.")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer (default: the model's).")] = None,
    max_length: Annotated[int, typer.Option("--max-length")] = 512,
    mlm_probability: Annotated[float | None, typer.Option(
        "--mlm-probability", help="Masking rate (default 0.3 for ModernBERT, else 0.15).")] = None,
    lr: Annotated[float, typer.Option("--lr")] = 5e-5,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    grad_accum: Annotated[int, typer.Option("--grad-accum")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Masked-language-model pretraining on patent text; the output folder is a valid train --model."""
    from patentcpc.io import check_output_dir
    from patentcpc.pretraining import PretrainConfig
    from patentcpc.pretraining import pretrain as run

    check_output_dir(output, "encoder", [data, model, tokenizer])
    cfg = PretrainConfig(model=model, arch=arch, tokenizer=tokenizer, max_length=max_length,
                         mlm_probability=mlm_probability, lr=lr, epochs=epochs, max_steps=max_steps,
                         batch_size=batch_size, grad_accum=grad_accum, seed=seed)
    texts = load_texts(data, text_fields, label_field, id_field, on_bad_row, split)
    summary = run(cfg, texts, output)
    out.print(json.dumps(summary))
