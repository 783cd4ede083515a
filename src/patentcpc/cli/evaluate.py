"""``patentcpc evaluate``: the metrics of a model folder on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app
from patentcpc.cli.options import (
    IdField,
    LabelField,
    ModelOption,
    OnBadRow,
    Split,
    TextFields,
    check_input,
    check_model,
    data_config,
    data_options,
    print_metrics,
    report_skipped,
    warn,
)


@app.command()
def evaluate(
    model: ModelOption,
    data: Annotated[str, typer.Option("--data", help="Labelled evaluation data.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write a per-label CSV report here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size for transformer models.")] = 64,
    text_fields: TextFields = None, label_field: LabelField = None, id_field: IdField = None,
    on_bad_row: OnBadRow = None, split: Split = None,
    plots_dir: Annotated[Path | None, typer.Option(
        "--plots-dir", help="Write the top-1 reliability plot (PNG) into this folder.")] = None,
) -> None:
    """Evaluate a model folder: P/R/F1@1,3,5, micro/macro P/R/F1, section/class accuracy@1.

    --json prints one JSON object; a figure that is not defined on the data (AUROC@1 when every
    top-1 code is right, or every one wrong) is null, and "undefined" says why."""
    from patentcpc.api import load_model
    from patentcpc.data import load_for_model
    from patentcpc.metrics import binarize, evaluate_scores, per_label_report

    check_input(data, "--data")
    if report is not None:
        from patentcpc.io import check_output_file

        check_output_file(report, [data, model], "--report")
    check_model(model)
    m = load_model(model)
    cfg = data_config(**data_options(text_fields, label_field, id_field, m.manifest.label_level, on_bad_row,
                                      split))
    ev = load_for_model(data, cfg, m)
    report_skipped(ev)
    from patentcpc.overlap import training_overlap

    overlap, _why_not = training_overlap(m, ev)
    if overlap is not None and overlap.any:
        warn(overlap.message(str(m.manifest.training_data.get("source")), str(data)))
    scores = m.predict_scores(ev.texts, batch_size=batch_size, progress=not as_json)
    metrics = evaluate_scores(scores, ev.labels, m.labels, m.thresholds)
    metrics = {"model": str(model), "data": str(data), **metrics, "n_skipped": ev.n_skipped}
    from patentcpc.conformal import evaluate_sets

    metrics.update(evaluate_sets(m, scores, ev.labels))  # conformal label sets, where the model has a table
    metrics.update(m.evaluation_report())  # kind-specific figures (a router: the share it routed)
    if overlap is not None:
        metrics["overlap_with_training"] = overlap.to_dict()
    if plots_dir is not None:
        from patentcpc.calibration import reliability_bins, top1_confidence
        from patentcpc.plots import plot_reliability

        conf, hit = top1_confidence(scores, ev.labels, m.labels)
        stem = Path(str(data).rstrip("/")).name.split(".")[0] or "data"
        metrics["plots"] = [str(plot_reliability(reliability_bins(conf, hit), plots_dir / f"{stem}_reliability.png",
                                                 metrics.get("ece@1")))]
    if report is not None:
        import csv

        from patentcpc.cpc import title
        from patentcpc.models.artifact import atomic_write_text

        rows = per_label_report(binarize(scores, m.thresholds), ev.labels, m.labels)
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[*rows[0].keys(), "title"] if rows else ["label"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "title": title(r["label"]) or ""})
        atomic_write_text(report, buf.getvalue())
    if as_json:
        print(json.dumps(json_safe_metrics(metrics), allow_nan=False))
    else:
        print_metrics(metrics)


UNDEFINED_WHY = {
    "auroc@1": "AUROC@1 needs both right and wrong top-1 codes on this data; here all are one or the other",
    "ece@1": "no documents to measure calibration on",
}


def json_safe_metrics(metrics: dict) -> dict:
    """``metrics`` with every non-finite number (NaN, inf: not JSON) replaced by null, and an
    ``undefined`` entry saying, for each, why it is not defined on this data."""
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    undefined = {k: UNDEFINED_WHY.get(k, "not defined on this data (a division by zero: no documents or no "
                                          "labels of the kind it counts)")
                 for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    safe = clean(metrics)
    if undefined:
        safe["undefined"] = undefined
    return safe
