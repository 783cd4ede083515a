"""``patentcpc data stats`` and ``data split``: look at a dataset, split it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import data_app, out
from patentcpc.cli.options import (
    IdField,
    LabelField,
    Level,
    OnBadRow,
    Split,
    TextFields,
    check_input,
    data_config,
    data_options,
    report_skipped,
)


@data_app.command("stats")
def data_stats(
    data: Annotated[str, typer.Option("--data", help="File, save_to_disk folder or hub dataset id.")],
    plots_dir: Annotated[Path | None, typer.Option(
        "--plots-dir", help="Write the two PNG plots into this folder (none are written without it).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Documents, labels, label cardinality, imbalance; top-30 bar chart and log-log rank/frequency plot."""
    from patentcpc.data import compute_stats, load_data
    from patentcpc.plots import plot_rank_frequency, plot_top_labels

    cfg = data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    loaded = load_data(data, **cfg.load_kwargs())
    report_skipped(loaded)
    stats = compute_stats(loaded)
    plots: list[str] = []
    if plots_dir is not None:  # never silently into the current folder
        stem = Path(str(data).rstrip("/")).name.split(".")[0] or "data"
        plots = [str(plot_top_labels(stats.label_counts, plots_dir / f"{stem}_top30_{cfg.level}.png")),
                 str(plot_rank_frequency(stats.label_counts, plots_dir / f"{stem}_rank_frequency_{cfg.level}.png"))]
    summary = {"source": str(data), "text_view": loaded.text_fields, "label_field": loaded.label_field,
               "id_field": loaded.id_field, **stats.summary(), "plots": plots}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    from rich.table import Table

    table = Table(title=f"{data}", show_header=False)
    for key in ("n_docs", "n_labels", "n_label_assignments", "label_cardinality", "label_density",
                "imbalance_ratio", "mean_imbalance_ratio", "top30_share", "mean_text_chars", "median_text_words",
                "n_skipped"):
        v = summary[key]
        table.add_row(key, f"{v:.4g}" if isinstance(v, float) else str(v))
    table.add_row("text view", "+".join(loaded.text_fields))
    table.add_row("label column", str(loaded.label_field))
    table.add_row("id column", loaded.id_field or "(none: row numbers)")
    table.add_row("most frequent", ", ".join(f"{c} ({n})" for c, n in stats.label_counts[:10]))
    out.print(table)
    out.print(f"plots: {', '.join(plots)}" if plots else "plots: none written (add --plots-dir DIR for the PNGs)")


@data_app.command("split")
def data_split(
    data: Annotated[str, typer.Option("--data", help="One labelled file to split.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for train/valid/test .jsonl files.")],
    fractions: Annotated[str, typer.Option(help="Train,valid,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    level: Level = None, on_bad_row: OnBadRow = None, split: Split = None,
) -> None:
    """Deterministic multi-label stratified split (iterative stratification), each part within a
    document of its fraction; every input column is kept (plus `id`, the row number in --data,
    where it has no id column), so a part reads like the input."""
    from patentcpc.data import load_data, split_data
    from patentcpc.errors import ConfigError
    from patentcpc.io import write_jsonl

    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ConfigError(f"--fractions must be numbers like 0.8,0.1,0.1, not '{fractions}'") from None
    if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6 or min(fr) <= 0:
        raise ConfigError(f"--fractions must be three positive numbers that sum to 1, not '{fractions}'")
    from patentcpc.io import atomic_dir, check_output_dir

    check_output_dir(output, "splits", [data])
    cfg = data_config(**data_options(text_fields, label_field, id_field, level, on_bad_row, split))
    check_input(data, "--data")
    loaded = load_data(data, **cfg.load_kwargs(), carry_raw=True)
    report_skipped(loaded)
    counts = {}
    add_id = loaded.id_field is None and "id" not in loaded.raw_columns
    with atomic_dir(output, kind="splits") as tmp:  # all three files appear together
        for name, part in zip(("train", "valid", "test"), split_data(loaded, fr, seed), strict=True):
            counts[name] = write_jsonl((_input_record(r, loaded.raw_columns, add_id) for r in part.dataset),
                                       tmp / f"{name}.jsonl")
    total = sum(counts.values())
    for (name, n), f in zip(counts.items(), fr, strict=True):
        out.print(f"{name}: {n} documents ({100 * n / total:.1f} %, asked {100 * f:g} %) -> {output / f'{name}.jsonl'}",
                  highlight=False)
    if add_id:
        out.print(f"no id column in {data}: 'id' holds its row numbers 1, 2, ...", highlight=False)


def _input_record(row: dict, columns: list[str], add_id: bool) -> dict:
    """The input's own columns of one split row (values JSON can hold; others as text)."""
    rec = {"id": row["id"]} if add_id else {}
    for c in columns:
        v = row[f"_raw.{c}"]
        if not isinstance(v, str | int | float | bool | list | dict | type(None)):
            v = str(v)
        rec[c] = v
    return rec
