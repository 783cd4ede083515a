"""LLM commands: ``export merged`` (LoRA adapters merged into the base)."""

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
