"""Options and helpers shared by the command modules: the data-view options, the inference
options, loading a model for a command, printing metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import console, out


def _flag_type_hidden() -> None:
    """typer >= 0.2x shows ``<bool>`` beside every plain flag in ``--help`` (``--version <bool>``):
    a flag takes no value, so show no type."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_patentcpc", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._patentcpc = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


_flag_type_hidden()

TextFields = Annotated[str | None, typer.Option(
    "--text-fields", help="Fields joined into the text view, in order, e.g. title,abstract,claims.")]
LabelField = Annotated[str | None, typer.Option("--label-field", help="Label column (default: auto-detect).")]
IdField = Annotated[str | None, typer.Option("--id-field", help="Id column (default: auto-detect).")]
Level = Annotated[str | None, typer.Option(
    "--level", help="CPC level of the labels: section, class, subclass (default) or group.")]
OnBadRow = Annotated[str | None, typer.Option("--on-bad-row", help="error (default) or skip bad rows.")]
Split = Annotated[str | None, typer.Option("--split", help="Split of a Hugging Face dataset (default train).")]

BatchSize = Annotated[int, typer.Option("--batch-size", help="Most documents per batch.")]
TokenBudget = Annotated[int, typer.Option("--token-budget", help="Most padded tokens per batch (rows x longest).")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model (pays off on long runs).")]
Autocast = Annotated[str, typer.Option("--autocast", help="auto (bf16 on a GPU, fp32 on a CPU), bf16, fp16, off.")]
Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda if available).")]
ModelOption = Annotated[Path, typer.Option(
    "--model", help="Model folder (any kind) or Hugging Face Hub id (owner/name) of one.")]
Onnx = Annotated[Path | None, typer.Option(
    "--onnx", help="Run this exported ONNX file (e.g. MODEL/onnx/model.onnx) with ONNX Runtime instead of PyTorch.")]


def data_options(text_fields, label_field, id_field, level, on_bad_row, split) -> dict:
    return {"text_fields": text_fields, "label_field": label_field, "id_field": id_field, "level": level,
            "on_bad_row": on_bad_row, "hf_split": split}


def data_config(**kw):
    """The :class:`~patentcpc.config.DataConfig` of the options given (None: not given)."""
    from patentcpc.config import DataConfig, from_dict

    return from_dict(DataConfig, {k: v for k, v in kw.items() if v is not None}, "data")


def report_skipped(data) -> None:
    if data.n_skipped:
        console.print(f"[yellow]skipped {data.n_skipped} bad row(s)[/]; first: {data.skipped[0]}",
                      highlight=False)
    if getattr(data, "n_label_warnings", 0):
        warn(f"{data.n_label_warnings} row(s) with gold labels that cannot be parsed were kept, without gold "
             f"labels (prediction does not need them); first: {data.label_warning}")


def note_row_ids(data, output) -> None:
    """Say, where the input has no id column, that the output's ids are row numbers."""
    if getattr(data, "id_field", None) is None:
        from patentcpc.streaming import ROW_ID_COLUMN, output_format

        where = f"the '{ROW_ID_COLUMN}' column" if output_format(output) in ("csv", "tsv") else "'id'"
        out.print(f"no id column in {data.source}: {where} of {output} holds row numbers 1, 2, ... "
                  f"(name an id column with --id-field)", highlight=False, soft_wrap=True)


def check_input(source, option: str = "--input") -> None:
    """Fail at once, before any model or heavy library is loaded, on a data source that cannot
    be read: a missing file, a folder that is not a dataset, an unknown file type."""
    if source is None:
        return
    from patentcpc.data import detect_format
    from patentcpc.errors import DataError

    try:
        detect_format(source)
    except DataError as exc:
        raise DataError(str(source), f"{exc.problem} ({option})") from None


def check_model(model, option: str = "--model") -> None:
    """Fail at once on a model that is neither a local folder nor a string shaped like a hub id
    (``owner/name``): ``models/nope`` says the folder does not exist."""
    import os

    from patentcpc.errors import ModelError
    from patentcpc.hub import is_hub_id

    if model is None or os.path.exists(str(model)) or is_hub_id(str(model)):
        return
    raise ModelError(f"{model}: model folder not found: the folder does not exist ({option})")


def refuse_ignored(reason: str, **given) -> None:
    """Exit 2 naming the first option that was given (not None/False) although the command would
    ignore it, e.g. ``refuse_ignored("with --text", **{"--id-field": id_field})``."""
    from patentcpc.errors import ConfigError

    for name, value in given.items():
        if value is not None and value is not False:
            raise ConfigError(f"{name} has no effect {reason}; leave it out")


def warn(message: str) -> None:
    console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def load_model_on(model: Path, device: str | None, onnx: Path | None):
    """The model folder ``model`` on ``device`` (checked first), or run as its ONNX export ``onnx``."""
    from patentcpc.api import load_model
    from patentcpc.validation import check_device

    device = check_device(device)

    return load_model(model, onnx_file=onnx, **({"device": device} if device else {}))


def print_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table(show_header=True, title="evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, int):
            table.add_row(k, str(v))
    out.print(table)


def load_texts(data: str, text_fields, label_field, id_field, on_bad_row, split):
    """The texts of ``data`` (labels not required), read with the data-view options."""
    from patentcpc.data import load_data

    cfg = data_config(**data_options(text_fields, label_field, id_field, None, on_bad_row, split))
    return load_data(data, **cfg.load_kwargs(), require_labels=False)
