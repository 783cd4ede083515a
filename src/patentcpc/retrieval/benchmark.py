"""A multi-task embedding benchmark: retrieval, classification and clustering per model and text view.

For each model spec (see :mod:`patentcpc.retrieval.embeddings`) and text view, the documents are
embedded once and scored on

* retrieval with label-overlap qrels (or a user's TREC qrels): dense, hybrid with BM25, and BM25
  itself (one row per view, model ``bm25``): nDCG@10, MAP@100, Recall@100;
* classification: cross-validated kNN voting and linear probe, and zero-shot from the IPC scheme
  (f1@1, f1@3, ...);
* clustering: k-means ARI / NMI against CPC section and subclass.

Embeddings are cached under ``<output_dir>/cache`` (keyed by model, view and data fingerprint), so
re-running with one more model only embeds that model.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patentcpc.errors import ConfigError
from patentcpc.retrieval.evaluation import KNNOptions

log = logging.getLogger(__name__)

COLUMNS = ("model", "view", "ndcg@10", "map@100", "recall@100", "hybrid_ndcg@10", "rrf_ndcg@10",
           "knn_f1@1", "knn_f1@3", "probe_f1@1", "zeroshot_f1@1", "zeroshot_f1@3",
           "ari_section", "nmi_section", "ari_subclass", "nmi_subclass", "embed_seconds",
           "dim", "precision", "bytes_per_vector")


@dataclass
class BenchmarkOptions:
    """What the benchmark runs.

    Args:
        views: text views, each fields joined by ``+`` (default: title, abstract, claims and their
            combinations present in the data).
        folds: cross-validation folds of the classifiers.
        knn: kNN voting options.
        probe: also cross-validate a linear probe (slower).
        zero_shot: ``centroid`` (subclass + main-group titles), ``title`` (subclass titles) or ``off``.
        hybrid_alpha: weight of the dense score in the min-max hybrid.
        seed: folds, k-means and random-init seeds.
        batch_size: embedding batch size.
        compression: extra retrieval rows per model for smaller vectors: ``DIM:PRECISION`` items
            (``256:int8``, ``128:float32``, ``binary``: full dimension), each scored with float32
            queries against the truncated / quantized documents, with its bytes per vector.
    """

    views: list[str] | None = None
    folds: int = 5
    knn: KNNOptions = field(default_factory=KNNOptions)
    probe: bool = True
    zero_shot: str = "centroid"
    hybrid_alpha: float = 0.7
    seed: int = 0
    batch_size: int = 32
    compression: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.compression, str):
            self.compression = [c.strip() for c in self.compression.split(",") if c.strip()]
        for item in self.compression or []:
            parse_compression(item)
        if isinstance(self.views, str):
            self.views = [v.strip() for v in self.views.split(",") if v.strip()]
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, not {self.folds}")
        if self.zero_shot not in ("centroid", "title", "off"):
            raise ConfigError(f"zero_shot must be centroid, title or off, not '{self.zero_shot}'")
        if not 0.0 <= self.hybrid_alpha <= 1.0:
            raise ConfigError(f"hybrid_alpha must be between 0 and 1, not {self.hybrid_alpha}")


def parse_compression(item: str) -> tuple[int | None, str]:
    """``"256:int8"`` -> (256, "int8"); ``"int8"`` -> (None, "int8"); ``"128"`` -> (128, "float32")."""
    from patentcpc.retrieval.quantize import PRECISIONS

    dim_s, _, prec = item.strip().partition(":")
    if not prec and dim_s in PRECISIONS:
        dim_s, prec = "", dim_s
    prec = prec or "float32"
    if prec not in PRECISIONS:
        raise ConfigError(f"compression '{item}': precision must be one of {', '.join(PRECISIONS)}")
    try:
        dim = int(dim_s) if dim_s else None
    except ValueError:
        raise ConfigError(f"compression '{item}': use DIM:PRECISION, e.g. 256:int8") from None
    if dim is not None and dim < 1:
        raise ConfigError(f"compression '{item}': the dimension must be >= 1")
    return dim, prec


def compression_rows(spec: str, view: str, vectors: np.ndarray, ids: Sequence[str], qrels: dict,
                     compression: Sequence[str]) -> list[dict]:
    """Retrieval quality of truncated / quantized document vectors (float32 queries), with their size."""
    from patentcpc.retrieval.evaluation import evaluate_retrieval
    from patentcpc.retrieval.quantize import bytes_per_vector, compress, truncate

    rows = []
    for item in compression:
        dim, prec = parse_compression(item)
        docs, _, _ = compress(vectors, dim, prec)
        queries = truncate(vectors, dim)
        d = int(queries.shape[1])
        scores = (queries @ docs.T).astype(np.float64)
        rows.append({"model": f"{spec}@{d}d-{prec}", "view": view, "dim": d, "precision": prec,
                     "bytes_per_vector": bytes_per_vector(d, prec), **evaluate_retrieval(scores, ids, ids, qrels)})
    return rows


def default_views(columns: Sequence[str]) -> list[str]:
    """title, abstract, claims alone and title+abstract(+claims): whichever the data has."""
    have = [f for f in ("title", "abstract", "claims") if f in columns]
    views = list(have)
    if len(have) > 1:
        views.append("+".join(have[:2]))
    if len(have) > 2:
        views.append("+".join(have))
    return views or ["text"]


def _cache_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _cached(cache: Path | None, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    from patentcpc.retrieval.embeddings import load_embeddings, save_embeddings

    path = cache / f"{key}.npz" if cache else None
    if path is not None and path.exists():
        return load_embeddings(path)[1]
    vectors = compute()
    if path is not None:
        save_embeddings(path, [str(i) for i in range(len(vectors))], vectors, {"key": key})
    return vectors


def run_benchmark(models: Sequence[str], data_source: str, options: BenchmarkOptions | None = None,
                  output_dir: str | os.PathLike | None = None, qrels_path: str | None = None,
                  data_kwargs: dict | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """One result row per (model, view), plus a ``bm25`` row per view. See the module docstring."""
    from patentcpc.data import load_data, read_raw
    from patentcpc.metrics import evaluate_scores
    from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder
    from patentcpc.retrieval.evaluation import (
        clustering_scores,
        cross_validate_classifiers,
        evaluate_retrieval,
        label_embeddings,
        label_overlap_qrels,
        read_trec_qrels,
        scheme_label_texts,
        zero_shot_scores,
    )
    from patentcpc.retrieval.search import bm25_scores, build_bm25, fuse

    opts = options or BenchmarkOptions()
    say = progress or (lambda msg: log.info(msg))
    if not models:
        raise ConfigError("give at least one model")
    data_kwargs = {k: v for k, v in (data_kwargs or {}).items() if k != "text_fields"}
    views = opts.views or default_views(read_raw(data_source, data_kwargs.get("split", "train")).column_names)
    cache = Path(output_dir) / "cache" if output_dir else None
    user_qrels = read_trec_qrels(qrels_path) if qrels_path else None
    label_texts = scheme_label_texts() if opts.zero_shot != "off" else None
    embedders: dict[str, object] = {}
    label_vecs: dict[str, tuple[list[str], np.ndarray]] = {}
    rows: list[dict] = []
    for view in views:
        data = load_data(data_source, text_fields=view.split("+"), **data_kwargs)
        texts, labels, ids = data.texts, data.labels, data.ids
        fp = data.fingerprint()
        qrels = user_qrels or label_overlap_qrels(ids, labels, data.level)
        say(f"[{view}] BM25")
        sparse = bm25_scores(build_bm25(texts), texts)
        bm = evaluate_retrieval(sparse, ids, ids, qrels)
        rows.append({"model": "bm25", "view": view, **bm})
        for spec in models:
            if spec not in embedders:
                embedders[spec] = load_embedder(spec, EmbedOptions(batch_size=opts.batch_size, seed=opts.seed))
            emb = embedders[spec]
            say(f"[{view}] embedding with {_short(spec)}")
            t0 = time.perf_counter()
            if emb.needs_fit:  # corpus-fitted (lsa): fit per view, no cache
                vectors = emb.fit(texts).encode(texts)
            else:
                vectors = _cached(cache, _cache_key(spec, view, fp, str(opts.seed)), lambda e=emb, t=texts: e.encode(t))
            row: dict = {"model": spec, "view": view, "embed_seconds": time.perf_counter() - t0,
                         "dim": int(vectors.shape[1]), "precision": "float32",
                         "bytes_per_vector": 4 * int(vectors.shape[1])}
            dense = (vectors @ vectors.T).astype(np.float64)
            row.update(evaluate_retrieval(dense, ids, ids, qrels))
            row["hybrid_ndcg@10"] = evaluate_retrieval(fuse(sparse, dense, "minmax", opts.hybrid_alpha), ids, ids,
                                                       qrels, metrics=("ndcg@10",))["ndcg@10"]
            row["rrf_ndcg@10"] = evaluate_retrieval(fuse(sparse, dense, "rrf"), ids, ids, qrels,
                                                    metrics=("ndcg@10",))["ndcg@10"]
            say(f"[{view}] {_short(spec)}: classification")
            cv = cross_validate_classifiers(vectors, labels, opts.folds, opts.seed, opts.knn, probe=opts.probe)
            row["knn_f1@1"], row["knn_f1@3"] = cv["knn"]["f1@1"], cv["knn"]["f1@3"]
            if opts.probe:
                row["probe_f1@1"] = cv["probe"]["f1@1"]
            if label_texts is not None:
                key = spec if not emb.needs_fit else f"{spec}|{view}"  # lsa: the vocabulary of this view
                if key not in label_vecs:
                    mode = opts.zero_shot
                    n = sum(map(len, label_texts.values())) if mode == "centroid" else len(label_texts)
                    say(f"{_short(spec)}: embedding {n} IPC scheme titles for zero-shot")
                    ckey = _cache_key(spec, "scheme", mode, str(opts.seed))
                    codes = sorted(label_texts)
                    if emb.needs_fit:
                        label_vecs[key] = label_embeddings(emb, label_texts, mode)
                    else:
                        label_vecs[key] = (codes, _cached(cache, ckey,
                                                          lambda e=emb, m=mode: label_embeddings(e, label_texts, m)[1]))
                codes, lv = label_vecs[key]
                zs = evaluate_scores(zero_shot_scores(vectors, lv), labels, codes)
                row["zeroshot_f1@1"], row["zeroshot_f1@3"] = zs["f1@1"], zs["f1@3"]
            row.update(clustering_scores(vectors, labels, opts.seed))
            rows.append(row)
            if opts.compression:
                rows.extend(compression_rows(spec, view, vectors, ids, qrels, opts.compression))
    return rows


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """The rows as CSV (columns :data:`COLUMNS`, blanks where a task did not apply), atomically."""
    from patentcpc.io import atomic_open

    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def plot_benchmark(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Grouped bars: nDCG@10, kNN f1@1, zero-shot f1@1 and NMI (subclass) per model and view."""
    from patentcpc.plots import _plt, _save

    plt = _plt()
    metrics = [m for m in ("ndcg@10", "hybrid_ndcg@10", "knn_f1@1", "probe_f1@1", "zeroshot_f1@1", "nmi_subclass")
               if any(m in r for r in rows)]
    names = [f"{_short(r['model'])}\n{r['view']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(rows) + 2), 4.5))
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(rows))
    for i, m in enumerate(metrics):
        ax.bar(x + i * width - 0.4 + width / 2, [r.get(m, 0.0) or 0.0 for r in rows], width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title("Embedding benchmark (bm25 rows: retrieval only)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _short(spec: str) -> str:
    spec, at, suffix = spec.rpartition("@") if "@" in Path(spec).name else (spec, "", "")
    name = Path(spec).parent.name if Path(spec).name == "model" else Path(spec).name or spec
    return f"{name}{at}{suffix}"


def format_table(rows: Sequence[dict]) -> list[list[str]]:
    """Header + one string row per result (for printing)."""
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    out = [cols]
    for r in rows:
        out.append([_short(str(r.get(c, ""))) if c == "model" else
                    (f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, ""))) for c in cols])
    return out
