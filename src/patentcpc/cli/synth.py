"""Synthetic-data commands: ``synth generate``, ``synth audit``, ``synth experiment``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, out
from patentcpc.cli.options import IdField, LabelField, Level, OnBadRow, Split, TextFields, data_config, data_options

synth_app = typer.Typer(help="Synthetic training data: generate, audit, and test whether it helps.",
                        no_args_is_help=True)
app.add_typer(synth_app, name="synth")

Generator = Annotated[str, typer.Option("--generator", help="recombine (no LLM), hf (local causal LM) or openai.")]
Strategy = Annotated[str, typer.Option("--strategy", help="few-shot (real patents of the label as examples) or "
                                                          "label-description (code title + definition).")]
HFModel = Annotated[str | None, typer.Option("--hf-model", help="Local causal LM for --generator hf (folder or id).")]
BaseURL = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://host/v1.")]
ApiModel = Annotated[str | None, typer.Option("--api-model", help="Model name sent to the endpoint.")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="openai: requests in flight.")]
RateLimit = Annotated[float | None, typer.Option("--rate-limit", help="openai: at most this many requests/s.")]
Timeout = Annotated[float, typer.Option("--timeout", help="openai: seconds per request.")]
MaxRetries = Annotated[int, typer.Option("--max-retries", help="openai: retries of 429/5xx/timeouts.")]
Backoff = Annotated[float, typer.Option("--backoff", help="openai: first retry delay (doubles), seconds.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="hf: prompts per generate() call.")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", help="Tokens generated per document.")]
Temperature = Annotated[float, typer.Option("--temperature", help="Sampling temperature.")]
Fields = Annotated[str, typer.Option("--fields", help="What to generate: title[,abstract[,claims]].")]
Shots = Annotated[int, typer.Option("--shots", help="few-shot: real examples per prompt.")]
RemoveLabel = Annotated[bool, typer.Option(
    "--remove-label/--name-label", help="Instruction-level label removal: prompts never name the code or title.")]
MaskLabels = Annotated[bool, typer.Option("--mask-labels", help="Remove the code and its title from outputs.")]


def _load(data, text_fields, label_field, id_field, level, on_bad_row, split):
    from patentcpc.data import load_data

    cfg = data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    return load_data(data, **cfg.load_kwargs()), cfg


def _fields(fields: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in fields.split(",") if f.strip())


def _check_output_file(path: Path, option: str = "--output") -> None:
    """Beyond the output guard every command goes through (patentcpc.cli.outputs: never a folder, never
    one of the inputs): an existing file is replaced only if it is synthetic data patentcpc wrote."""
    from patentcpc.io import OutputError

    if not path.is_file():
        return
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.readline(65536)
    except (OSError, UnicodeDecodeError):
        head = ""
    if not ("source_label" in head and "synthetic" in head):
        raise OutputError(f"{path}: {option} exists and is not a synthetic-data file written by patentcpc; "
                          "not overwriting it")


def _generator(generator, hf_model, base_url, api_model, concurrency, rate_limit, timeout, max_retries, backoff,
               batch_size, max_new_tokens, temperature):
    from patentcpc.synth.generators import make_generator

    return make_generator(generator, hf_model, base_url, api_model, concurrency=concurrency, rate_limit=rate_limit,
                          timeout=timeout, max_retries=max_retries, backoff=backoff, batch_size=batch_size,
                          max_new_tokens=max_new_tokens, max_tokens=max_new_tokens, temperature=temperature)


@synth_app.command("generate")
def generate(
    data: Annotated[str, typer.Option("--data", help="Real training data (labels per document).")],
    output: Annotated[Path, typer.Option("--output", help="Synthetic rows: .csv or .jsonl.")],
    generator: Generator = "recombine", strategy: Strategy = "few-shot",
    target: Annotated[str, typer.Option("--target", help="fill (each label to --k docs), budget or ratio.")] = "fill",
    k: Annotated[int, typer.Option("--k", help="fill: documents per label after filling.")] = 5,
    budget: Annotated[int | None, typer.Option("--budget", help="budget: synthetic documents in all.")] = None,
    ratio: Annotated[float | None, typer.Option("--ratio", help="ratio: synthetic per real document.")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Only these labels (comma-separated).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    fields: Fields = "title,abstract", shots: Shots = 3, remove_label: RemoveLabel = False,
    mask_labels: MaskLabels = False,
    hf_model: HFModel = None, base_url: BaseURL = None, api_model: ApiModel = None, concurrency: Concurrency = 4,
    rate_limit: RateLimit = None, timeout: Timeout = 60.0, max_retries: MaxRetries = 5, backoff: Backoff = 1.0,
    batch_size: BatchSize = 8, max_new_tokens: MaxNewTokens = 200, temperature: Temperature = 0.9,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Write per-label synthetic patents (marked synthetic, with generator, template, seed, source label)."""
    from patentcpc.synth.generators import GenerateOptions, generate_synthetic, write_rows

    _check_output_file(output)
    real, _ = _load(data, text_fields, label_field, id_field, level, on_bad_row, split)
    opts = GenerateOptions(generator=generator, strategy=strategy, target=target, k=k, budget=budget, ratio=ratio,
                           labels=[c.strip() for c in labels.split(",")] if labels else None, seed=seed,
                           fields=_fields(fields), shots=shots, remove_label=remove_label, mask_labels=mask_labels)
    gen = _generator(generator, hf_model, base_url, api_model, concurrency, rate_limit, timeout, max_retries,
                     backoff, batch_size, max_new_tokens, temperature)
    rows, summary = generate_synthetic(real.texts, real.labels, opts, gen)
    write_rows(rows, output)
    summary["output"] = str(output)
    out.print_json(json.dumps(summary))


@synth_app.command("audit")
def audit(
    data: Annotated[str, typer.Option("--data", help="Real training data.")],
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Rows from `synth generate` (.csv/.jsonl).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for audit.md, audit.json, audit.png.")],
    eval_data: Annotated[str | None, typer.Option("--eval-data", help="Evaluation data (duplicates checked).")] = None,
    filtered: Annotated[Path | None, typer.Option(
        "--filtered", help="Also write the rows that pass duplicate filtering here (.csv/.jsonl).")] = None,
    embedder: Annotated[str, typer.Option("--embedder", help="lsa:DIM or an encoder folder (fidelity).")] = "lsa:128",
    near_threshold: Annotated[float, typer.Option("--near-threshold", help="MinHash Jaccard of a near "
                                                                           "duplicate.")] = 0.8,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Leakage, exact/near duplicates vs real train/eval, fidelity (MMD) and diversity, with plots."""
    from patentcpc.data import load_data
    from patentcpc.synth.audit import AuditOptions, audit_rows, write_report
    from patentcpc.synth.generators import read_rows, write_rows

    if filtered is not None:
        _check_output_file(filtered, "--filtered")
    real, cfg = _load(data, text_fields, label_field, id_field, level, on_bad_row, split)
    ev = load_data(eval_data, **cfg.load_kwargs()) if eval_data else None
    rows = read_rows(synthetic)
    with console.status("auditing…"):
        report, kept = audit_rows(rows, real.texts, real.labels, ev.texts if ev else None,
                                  AuditOptions(near_threshold=near_threshold, embedder=embedder))
    paths = write_report(report, output)
    if filtered is not None:
        paths.append(write_rows(kept, filtered))
    summary = {k: report[k] for k in ("n_synthetic", "n_kept", "duplicates")}
    summary["mmd2_overall"] = report["fidelity"]["mmd2_overall"]
    summary["files"] = [str(p) for p in paths]
    out.print_json(json.dumps(summary))


@synth_app.command("experiment")
def experiment(
    data: Annotated[str, typer.Option("--data", help="Real training data.")],
    eval_data: Annotated[str, typer.Option("--eval-data", help="Evaluation data (the same for every arm).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for results.{md,json,png} and audit/.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="tfidf (default), or a transformer (hub id or folder).")] = None,
    arch: Annotated[str | None, typer.Option(
        "--arch", help="Random-init transformer preset instead of --model (modernbert-tiny, bert-tiny, ...).")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer for --arch models.")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds (each: its own synthetic pool and training).")] = 3,
    real_shares: Annotated[str, typer.Option(
        "--real-shares", help="Real share of each real+synthetic mix (comma-separated).")] = "0.5,0.3,0.2",
    rare_max: Annotated[int, typer.Option("--rare-max", help="Rare label: at most this many real docs.")] = 5,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="Keep near duplicates of real texts.")] = False,
    config: Annotated[str | None, typer.Option("--config", help="YAML training config.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a training config value.")] = None,
    generator: Generator = "recombine", strategy: Strategy = "few-shot",
    fields: Fields = "title,abstract", shots: Shots = 3, remove_label: RemoveLabel = False,
    mask_labels: MaskLabels = False,
    hf_model: HFModel = None, base_url: BaseURL = None, api_model: ApiModel = None, concurrency: Concurrency = 4,
    rate_limit: RateLimit = None, timeout: Timeout = 60.0, max_retries: MaxRetries = 5, backoff: Backoff = 1.0,
    batch_size: BatchSize = 8, max_new_tokens: MaxNewTokens = 200, temperature: Temperature = 0.9,
    embedder: Annotated[str, typer.Option("--embedder", help="Fidelity embeddings: lsa:DIM or a folder.")] = "lsa:128",
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Real-only vs duplicate-to-match vs focal vs real+synthetic mixes over seeds; prints {"arms": [...]}."""
    from patentcpc.errors import ConfigError
    from patentcpc.synth.audit import AuditOptions
    from patentcpc.synth.experiment import ExperimentOptions, run_experiment
    from patentcpc.synth.generators import GenerateOptions

    try:
        shares = tuple(float(x) for x in real_shares.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--real-shares must be numbers, not '{real_shares}'") from None
    cfg = data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    opts = ExperimentOptions(
        model=model if model or arch else "tfidf", arch=arch, tokenizer=tokenizer,
        seeds=seeds, real_shares=shares, rare_max=rare_max, filter_duplicates=not no_filter,
        config_file=config, overrides=list(set_ or []),
        generate=GenerateOptions(generator=generator, strategy=strategy, fields=_fields(fields), shots=shots,
                                 remove_label=remove_label, mask_labels=mask_labels),
        audit=AuditOptions(embedder=embedder))
    gen = _generator(generator, hf_model, base_url, api_model, concurrency, rate_limit, timeout, max_retries,
                     backoff, batch_size, max_new_tokens, temperature)
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):  # stdout is the one JSON object (the HF Trainer prints its logs)
        res = run_experiment(data, eval_data, opts, output, gen, cfg.load_kwargs(),
                             progress=lambda s: console.print(s, highlight=False))
    keys = ("f1@1", "micro_f1", "macro_f1", "rare_f1", "ndcg@10")
    arms = [{"name": a["name"], **{k: a[k] for k in keys}, **{f"{k}_std": a[f"{k}_std"] for k in keys},
             **({f"gain_{k}": a.get(f"gain_{k}") for k in keys} if "gain_reference" in a else {}),
             **({"gain_reference": a["gain_reference"]} if "gain_reference" in a else {}),
             **({"loss": a["loss"]} if "loss" in a else {})} for a in res["arms"]]
    console.print(f"wrote {output}/results.md, results.json, results.png and audit/", highlight=False)
    for s in res["skipped_arms"]:
        console.print(f"skipped arm {s['name']}: {s['reason']}", highlight=False)
    print(json.dumps({"arms": arms, "skipped_arms": res["skipped_arms"],
                      "fidelity_gain_correlation": res["fidelity_gain_correlation"]}))
