"""LLM commands: ``export merged`` (LoRA adapters merged into the base), also spelled
``export --merge --model M --output O``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import out
from patentcpc.cli.serving import export_app


@export_app.command("merged")
def export_merged(
    model: Annotated[Path, typer.Option("--model", help="A causal_lm model folder with LoRA adapters.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for the merged model (must not exist).")],
) -> None:
    """Merge a causal_lm model's LoRA adapters into its base: OUTPUT/base/ is a plain transformers
    folder; OUTPUT is also a patentcpc model folder (predict/serve load it without peft)."""
    from patentcpc.errors import ConfigError, ModelError  # noqa: PLC0415
    from patentcpc.models import load_model  # noqa: PLC0415

    if output.exists():
        raise ConfigError(f"{output}: already exists (choose a new folder for the merged model)")
    m = load_model(model, device="cpu")
    if getattr(m, "kind", "") != "causal_lm":
        raise ModelError(f"{model}: export merged needs a causal_lm model, not '{m.kind}'")
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
        from patentcpc.errors import ConfigError  # noqa: PLC0415

        raise ConfigError("export: give a sub-command (onnx, merged), or --merge --model M --output O")
    export_merged(model, output)

