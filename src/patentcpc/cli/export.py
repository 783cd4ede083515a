"""``patentcpc export``: ``export onnx`` (ONNX, int8 optional) and ``export merged`` (or
``export --merge``: a causal_lm model's LoRA adapters merged into its base)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, out

export_app = typer.Typer(help="Export a model for deployment.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_cmd(
    model: Annotated[Path, typer.Option("--model", help="Transformer model folder.")],
    output: Annotated[Path | None, typer.Option("--output", help="ONNX file (default MODEL/onnx/model.onnx).")] = None,
    quantize: Annotated[bool, typer.Option("--quantize", help="Also write an int8 dynamic-quantized copy.")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare ONNX Runtime with PyTorch.")] = True,
) -> None:
    """Export a transformer model to ONNX (optionally int8) for CPU serving with ONNX Runtime."""
    from patentcpc.io import check_output_file
    from patentcpc.registry import kind_of_folder, load_model

    export = kind_of_folder(model).hook("onnx_export", str(model))  # before loading the model
    target = check_output_file(output or Path(model) / "onnx" / "model.onnx",
                               [p for p in Path(model).rglob("*") if "onnx" not in p.relative_to(model).parts])
    m = load_model(model, device="cpu")
    path, difference = export(m, target, opset=opset, quantize=quantize, check=check)
    out.print(f"wrote {path}" + (f" and {path.with_name(path.stem + '.int8.onnx')}" if quantize else ""))
    if difference is not None:
        out.print(f"max |onnx - torch| logit difference: {difference:.2e}")


@export_app.command("merged")
def export_merged(
    model: Annotated[Path, typer.Option("--model", help="A causal_lm model folder with LoRA adapters.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for the merged model (must not exist).")],
) -> None:
    """Merge a causal_lm model's LoRA adapters into its base: OUTPUT/base/ is a plain transformers
    folder; OUTPUT is also a patentcpc model folder (predict/serve load it without peft)."""
    from patentcpc.errors import ConfigError
    from patentcpc.registry import kind_of_folder, load_model

    kind_of_folder(model).require("merge", str(model))  # before loading the model
    if output.exists():
        raise ConfigError(f"{output}: already exists (choose a new folder for the merged model)")
    m = load_model(model, device="cpu")
    m.save_merged(output)
    out.print(f"wrote the merged model to {output} (base/: transformers folder)")


@export_app.callback(invoke_without_command=True)
def export_group(
    ctx: typer.Context,
    merge: Annotated[bool, typer.Option("--merge", help="Same as `export merged`: merge a causal_lm model's "
                                                        "LoRA adapters into its base.")] = False,
    model: Annotated[Path | None, typer.Option("--model", help="With --merge: the causal_lm model folder.")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="With --merge: the new folder.")] = None,
) -> None:
    """Export a model for deployment: `export onnx`, `export merged` (or `export --merge`)."""
    if ctx.invoked_subcommand is not None:
        if merge:
            raise typer.BadParameter("--merge is its own export; do not combine it with a sub-command")
        return
    if not merge or model is None or output is None:
        from patentcpc.errors import ConfigError

        raise ConfigError("export: give a sub-command (onnx, merged), or --merge --model M --output O")
    export_merged(model, output)
