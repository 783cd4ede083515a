"""``patentcpc bench``: throughput of the batch predictor against a naive loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console
from patentcpc.cli.options import Autocast, Compile, Device, TokenBudget


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
    from patentcpc.registry import kind_of_folder, select_model
    from patentcpc.validation import check_device

    device = check_device(device)
    if output is not None:
        from patentcpc.io import check_output_file

        check_output_file(output, [data, model])
    options = dict(arch=arch, model=model, data=data, n_docs=n_docs, batch_size=batch_size, max_batch=max_batch,
                   token_budget=token_budget, repeats=repeats, max_length=max_length, compile=compile,
                   autocast=autocast, device=device, backend=backend)
    if model is not None and arch is None:  # the kind of the folder (its manifest), else of the --arch preset
        kind = kind_of_folder(model)
    else:
        kind = select_model(None, arch)
    run = kind.hook("bench", str(model) if model is not None and arch is None else f"--arch {arch}")
    result = run(options, log=lambda msg: console.print(msg, highlight=False))
    text = json.dumps(result)
    if output is not None:
        from patentcpc.models.artifact import atomic_write_text

        atomic_write_text(output, json.dumps(result, indent=2) + "\n")
    print(text)
