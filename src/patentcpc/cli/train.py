"""``patentcpc train``: train any model kind (:func:`patentcpc.registry.train_model`) into a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, out
from patentcpc.cli.options import (
    IdField,
    LabelField,
    Level,
    OnBadRow,
    Split,
    TextFields,
    check_input,
    data_options,
    print_metrics,
    warn,
)
from patentcpc.errors import ConfigError


@app.command()
def train(
    data: Annotated[str | None, typer.Option("--data", help="Training data (any supported format).")] = None,
    output: Annotated[Path, typer.Option("--output", help="Model folder to write.")] = Path("patentcpc-model"),
    model: Annotated[str | None, typer.Option(
        "--model", help="tfidf, scheme (cold start from the IPC scheme), or a transformer: hub id or folder "
                        "(default answerdotai/ModernBERT-base); probe:ID_OR_FOLDER: that encoder frozen, only a "
                        "probe head trained.")] = None,
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
                          "e.g. tfidf,ENCODER,probe:ENCODER (an encoder fine-tuned, and the same encoder frozen with a "
                          "probe head); for --model router: ENCODER,LLM "
                          "(model specs or trained model folders).")] = None,
) -> None:
    """Train a model and save it as a model folder (manifest + weights + resolved config)."""
    from patentcpc.config import TrainConfig, resolve
    from patentcpc.registry import train_model
    from patentcpc.training.checkpoints import check_train_output

    cli: dict = {"data": {k: v for k, v in data_options(text_fields, label_field, id_field, level, on_bad_row,
                                                           split).items() if v is not None}}
    if model is not None:
        cli["model"] = model
    if seed is not None:
        cli["seed"] = seed
    if members is not None:  # into the members of the kind --model names (a kind whose section has members)
        cli[_members_section(model or resolve(TrainConfig, config, cli, set_).model)] = {
            "members": [m.strip() for m in members.split(",") if m.strip()]}
    transformer_cli = {"arch": arch, "tokenizer": tokenizer}
    if any(v is not None for v in transformer_cli.values()):
        cli["transformer"] = {k: v for k, v in transformer_cli.items() if v is not None}
    cfg = resolve(TrainConfig, config, cli, set_)  # the options first (light: no model, no heavy library)
    check_input(data, "--data")  # then a missing file, before any model or heavy library loads
    check_input(eval_data, "--eval-data")
    from patentcpc.registry import get, model_names, select

    named = model_names().get(cfg.model)
    if data is None and (named is None or get(named).needs_data):  # before any model or hub look-up
        raise ConfigError(f"--data is required to train {cfg.model}")
    kind = select(cfg)  # decided once for the run (at most one hub look-up)
    if resume:
        kind.require("resume", str(output))
    check_train_output(output, resume, overwrite, [data, eval_data, config, cfg.model, cfg.transformer.tokenizer])
    if not kind.progress:  # seconds to minutes, no progress bar of its own
        with console.status(f"training {cfg.model} ({kind.name})…"):
            result = train_model(cfg, data, eval_data, output, resume=resume)
    else:
        result = train_model(cfg, data, eval_data, output, resume=resume)
    out.print(f"saved {result.model.kind} model ({len(result.model.labels)} labels) to {output}")
    if result.overlap is not None and result.overlap.any:
        warn(result.overlap.message(str(data), str(eval_data)))
    n_skipped = (getattr(result.model.manifest, "training_data", None) or {}).get("n_skipped")
    if n_skipped:
        console.print(f"[yellow]skipped {n_skipped} bad row(s)[/] of {data} (--on-bad-row skip)", highlight=False)
    if result.metrics:
        print_metrics(result.metrics)
        if getattr(result, "measured_on", None):
            out.print(f"measured on {result.measured_on}; evaluate the model on data it was not tuned on "
                      "(patentcpc evaluate) for an unbiased figure", highlight=False, soft_wrap=True)
    if getattr(result, "phases", None):
        out.print("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items()), highlight=False,
                  soft_wrap=True)


def _members_section(model: str) -> str:
    """The configuration section that takes ``--members`` for ``--model model``: the section of the
    kind it names, when that section has ``members`` (ensemble, router)."""
    import dataclasses

    from patentcpc.config import TrainConfig
    from patentcpc.registry import model_names

    def takes_members(section: str) -> bool:
        f = TrainConfig.__dataclass_fields__.get(section)
        cls = getattr(f, "default_factory", None)
        return dataclasses.is_dataclass(cls) and "members" in {x.name for x in dataclasses.fields(cls)}

    kind = model_names().get(model)
    if kind is None or not takes_members(kind):
        able = sorted({k for k in model_names().values() if takes_members(k)})
        raise ConfigError(f"--members is for --model {' or '.join(able)}, not {model}")
    return kind
