"""Prediction records and prediction files, for every model kind: the applications' side of
prediction (the CLI, the service, the distributed batch), above the models.

Read top to bottom:

* :func:`format_predictions`, :func:`predict_texts`: a score matrix as JSON-ready records, the
  output of the one ranking rule (:func:`patentcpc.predictions.rank`) with each code's title and
  hierarchy path;
* :func:`stream_predict`: a file of any size, chunk by chunk (constant memory), CSV, TSV, JSONL or
  Parquet out (by the output's extension), gold labels and hits carried when the input has labels.

How a kind computes its scores (the transformer's batching engine,
:mod:`patentcpc.kinds.transformer.engine`) is the model's own business: this module asks
``model.predict_scores`` and passes the :class:`~patentcpc.inference_options.InferenceOptions` on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patentcpc.cpc import hierarchy_path
from patentcpc.errors import ConfigError
from patentcpc.inference_options import InferenceOptions
from patentcpc.io import write_jsonl

if TYPE_CHECKING:  # any model kind: this module imports none
    from patentcpc.models.base import CPCModel

# ----------------------------------------------------------------------------- formatting


def format_predictions(model: CPCModel, scores: np.ndarray, top_k: int = 5,
                       coverage: float | None = None) -> list[dict]:
    """For each row of ``scores``: at most ``top_k`` codes, best first, each with its score (a
    calibrated probability for a calibrated model) and ``assigned`` (score at or above the
    label's tuned threshold; the best code too unless it scores below the model's
    ``abstain_below``). ``labels`` lists the assigned codes; when it is empty, ``note`` says
    "no code assigned"; ``above_threshold`` is the same flag under its older name. ``coverage``
    (e.g. 0.9): each record also has ``label_set``, the conformal set at that coverage
    (:mod:`patentcpc.conformal`: ``codes`` and ``scores`` best first, ``size``, ``unsure``,
    ``coverage``)."""
    if top_k < 1:
        raise ConfigError("top_k must be >= 1")
    from patentcpc.predictions import NO_CODE, rank

    scores = np.asarray(scores)
    # the one ranking rule (predictions.rank): the top k, best first (ties to the lower column),
    # assigned as predictions.assigned_mask says (thresholds; the best code unless below abstain_below)
    ranked = rank(scores, model.labels, model.thresholds, top_k,
                  abstain_below=getattr(model, "abstain_below", 0.0)) if len(scores) else []
    out = []
    for row in ranked:
        preds = [{"code": p.code, "score": round(p.score, 6), "assigned": p.assigned, "above_threshold": p.assigned,
                  "title": p.title, "path": hierarchy_path(p.code)} for p in row]
        rec = {"labels": [p["code"] for p in preds if p["assigned"]], "predictions": preds}
        if not rec["labels"]:
            rec["note"] = f"{NO_CODE}: no code scores high enough (best {preds[0]['score']:.3f})" if preds else NO_CODE
        out.append(rec)
    if coverage is not None:
        from patentcpc.conformal import label_sets

        for rec, s in zip(out, label_sets(model, scores, coverage), strict=True):
            rec["label_set"] = {**s.to_dict(), "scores": list(s.scores)}
    return out


LEGEND = ("score: the model's probability that the code applies; assigned (✓): probability at or above "
          "the code's threshold tuned on validation data (the best code too, unless it scores below the "
          "model's tuned minimum: then no code is assigned); "
          "at most --top-k codes, best first")


def predict_texts(model: CPCModel, texts: Sequence[str], top_k: int = 5, batch_size: int = 64,
                  coverage: float | None = None) -> list[dict]:
    """Predictions for raw texts (see :func:`format_predictions`)."""
    return format_predictions(model, model.scores(list(texts), batch_size=batch_size), top_k, coverage)


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="doc", desc="predicting", file=sys.stderr, smoothing=0.1)


# ----------------------------------------------------------------------------- streaming

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
                  ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
LIST_SEPARATOR = ";"
TITLE_SEPARATOR = " | "  # code titles hold commas and semicolons
ROW_ID_COLUMN = "row"  # the id column's name where the input has none: ids are row numbers 1, 2, ...
SNIPPET_COLUMN = "snippet"  # the title column's name where the input has none: the text's start
SNIPPET_CHARS = 80


@dataclass
class StreamStats:
    n_docs: int
    seconds: float
    output: str

    @property
    def docs_per_s(self) -> float:
        return self.n_docs / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"n_docs": self.n_docs, "seconds": round(self.seconds, 3),
                "docs_per_s": round(self.docs_per_s, 2), "output": self.output}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"{path}: output must end in .csv, .tsv, .jsonl or .parquet")
    return OUTPUT_FORMATS[suffix]


def _parquet_schema(with_gold: bool = False):
    import pyarrow as pa

    node = pa.struct([("code", pa.string()), ("title", pa.string())])
    pred = pa.struct([("code", pa.string()), ("score", pa.float64()), ("assigned", pa.bool_()),
                      ("above_threshold", pa.bool_()), ("title", pa.string()), ("path", pa.list_(node))])
    fields = [("id", pa.string()), ("title", pa.string()), ("labels", pa.list_(pa.string())),
              ("predictions", pa.list_(pred))]
    if with_gold:
        fields += [("gold", pa.list_(pa.string())), ("hits", pa.list_(pa.string())),
                   ("assigned_hits", pa.list_(pa.string()))]
    return pa.schema(fields)


def _write_parquet(chunks: Iterator[list[dict]], path: Path, with_gold: bool = False) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from patentcpc.io import atomic_path

    schema = _parquet_schema(with_gold)
    n = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for records in chunks:
            writer.write_table(pa.Table.from_pylist(records, schema=schema))
            n += len(records)
    return n


def table_columns(id_name: str = "id", title_name: str = "title", with_gold: bool = False) -> list[str]:
    """The CSV/TSV header (see :func:`table_row`)."""
    return [id_name, title_name, "codes", "titles", "scores", "assigned"] + (
        ["gold", "hits", "assigned_hits"] if with_gold else [])


def table_row(rec: dict, id_name: str = "id", with_gold: bool = False, title_name: str = "title") -> dict[str, str]:
    """One prediction record as a flat CSV/TSV row: ``id_name`` (the input's id column, or
    :data:`ROW_ID_COLUMN` with row numbers 1, 2, ... where it has none), ``title_name`` (the
    input's title, or the text's first characters under :data:`SNIPPET_COLUMN`), ``codes`` and
    ``scores`` (``;``-separated, best first, in the same order), ``titles`` (the codes' titles,
    `` | ``-separated, same order), ``assigned`` (the codes at or above their threshold) and, with
    gold labels, ``gold``, ``hits`` (the gold codes among the top-k ``codes``: the hits of P@k and
    R@k in :mod:`patentcpc.metrics`) and ``assigned_hits`` (the gold codes among ``assigned``)."""
    preds = rec["predictions"]
    row = {id_name: rec["id"], title_name: rec.get("title") or "",
           "codes": LIST_SEPARATOR.join(p["code"] for p in preds),
           "titles": TITLE_SEPARATOR.join((p.get("title") or "").replace("|", "/") for p in preds),
           "scores": LIST_SEPARATOR.join(f"{p['score']:.4f}" for p in preds),
           "assigned": LIST_SEPARATOR.join(rec["labels"])}
    if with_gold:
        row["gold"] = LIST_SEPARATOR.join(rec.get("gold", []))
        row["hits"] = LIST_SEPARATOR.join(rec.get("hits", []))
        row["assigned_hits"] = LIST_SEPARATOR.join(rec.get("assigned_hits", []))
    return row


def snippet(text: str, n: int = SNIPPET_CHARS) -> str:
    """The first ``n`` characters of ``text`` on one line (an ellipsis where cut)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else flat[: n - 1].rstrip() + "…"


def _write_table(records: Iterator[dict], path: Path, delimiter: str, id_name: str, with_gold: bool,
                 title_name: str = "title") -> int:
    """CSV/TSV, one row per document, written atomically."""
    import csv

    from patentcpc.io import atomic_open

    columns = table_columns(id_name, title_name, with_gold)
    n = 0
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, delimiter=delimiter)
        writer.writeheader()
        for rec in records:
            writer.writerow(table_row(rec, id_name, with_gold, title_name))
            n += 1
    return n


def has_gold(data) -> bool:
    """Whether ``data`` (a PatentData) came with a label column: its labels go to the output."""
    return getattr(data, "label_field", None) is not None


def iter_prediction_chunks(model: CPCModel, data, top_k: int = 5, chunk_size: int = 4096,
                           options: InferenceOptions | None = None,
                           progress: Callable[[int], None] | None = None,
                           coverage: float | None = None) -> Iterator[list[dict]]:
    """Lists of ``{"id", "title", "labels", "predictions"}``, one per chunk of ``data`` (a
    PatentData): only one chunk of texts, token ids and scores is in memory at a time. ``title``
    is the input's title column where ``data`` carries one (``load_data(carry_title=True)``),
    else the text's first characters. When ``data`` has gold labels, each record also has
    ``gold``, ``hits`` (the gold codes among the top-k predictions, as the metrics count them) and
    ``assigned_hits`` (the gold codes among the assigned ``labels``)."""
    opts = options or InferenceOptions()
    gold = has_gold(data)
    for batch in data.dataset.iter(batch_size=chunk_size):
        texts = batch["text"]
        scores = model.predict_scores(texts, options=opts)
        results = format_predictions(model, scores, top_k, coverage)
        titles = batch["_title"] if "_title" in batch else [snippet(t) for t in texts]
        records = [{"id": str(doc_id), "title": doc_title, **res}
                   for doc_id, doc_title, res in zip(batch["id"], titles, results, strict=True)]
        if gold:
            for rec, labels in zip(records, batch["labels"], strict=True):
                top = {p["code"] for p in rec["predictions"]}
                rec["gold"] = list(labels)
                rec["hits"] = [code for code in labels if code in top]
                rec["assigned_hits"] = [code for code in labels if code in rec["labels"]]
        yield records
        if progress is not None:
            progress(len(texts))


def stream_predict(model: CPCModel, data, output: str | os.PathLike, top_k: int = 5, chunk_size: int = 4096,
                   options: InferenceOptions | None = None, progress: bool = False,
                   coverage: float | None = None) -> StreamStats:
    """Predict every document of ``data`` (a PatentData, e.g. from
    :func:`patentcpc.data.load_for_model`, memory-mapped Arrow) and write ``output``
    atomically, chunk by chunk, showing docs/s when ``progress``. The format follows the extension:
    ``.jsonl`` and ``.parquet`` hold every prediction with its title and path; ``.csv`` and ``.tsv``
    one row per document (see :func:`table_row`), the id and title under the input's own column
    names (``row`` with row numbers where the input has no id column, ``snippet`` where it has no
    title)."""
    if top_k < 1:
        raise ConfigError("top_k must be >= 1")
    if chunk_size < 1:
        raise ConfigError("chunk_size must be >= 1")
    fmt = output_format(output)
    if coverage is not None and fmt != "jsonl":
        raise ConfigError(f"{output}: label sets (coverage) are written to a .jsonl output")
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = _progress_bar(len(data), progress)
    t0 = time.perf_counter()
    try:
        chunks = iter_prediction_chunks(model, data, top_k, chunk_size, options, bar.update if bar else None,
                                        coverage)
        gold = has_gold(data)
        if fmt == "parquet":
            n = _write_parquet(chunks, path, gold)
        elif fmt in ("csv", "tsv"):
            id_name = getattr(data, "id_field", None) or ROW_ID_COLUMN
            title_name = getattr(data, "title_field", None) or SNIPPET_COLUMN
            if title_name == id_name:
                title_name = SNIPPET_COLUMN
            n = _write_table((rec for chunk in chunks for rec in chunk), path, "\t" if fmt == "tsv" else ",",
                             id_name, gold, title_name)
        else:
            n = write_jsonl((rec for chunk in chunks for rec in chunk), path)
    finally:
        if bar is not None:
            bar.close()
    return StreamStats(n, time.perf_counter() - t0, str(path))
