"""``patentcpc quickstart``: the cold-start model (trained once on the IPC scheme) on an example."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, out
from patentcpc.cli.predict import print_prediction

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
    from patentcpc.api import load_model, train
    from patentcpc.models.artifact import OLD_LINEAR_WEIGHTS
    from patentcpc.streaming import predict_texts
    from patentcpc.validation import check_text

    check_text(text)
    old_format = (model_dir / OLD_LINEAR_WEIGHTS).exists()  # our own cold-start model in the skops format: retrain it
    if (model_dir / "manifest.json").exists() and not old_format:
        m = load_model(model_dir)
    else:
        if old_format:
            out.print(f"{model_dir} holds a cold-start model in the old skops format (no longer loaded): retraining")
        from patentcpc.io import check_output_dir

        check_output_dir(model_dir, "model", option="--model-dir")
        with console.status("training the cold-start model on the IPC scheme (about a minute)…"):
            m = train(model="scheme", output=model_dir)
        out.print(f"cold-start model saved to {model_dir}")
    out.print(f"[bold]text:[/] {text}", highlight=False)
    (res,) = predict_texts(m, [text], top_k)
    print_prediction(res, m.output_score_type)
