"""Patent search: BM25 (``bm25s``), dense exact inner product (FAISS when installed) and hybrids.

Hybrid search combines the two score lists of every query over the whole collection, either by
interpolation of normalized scores, ``alpha * dense + (1 - alpha) * bm25`` with ``minmax`` or
``zscore`` normalization, or by reciprocal rank fusion (``rrf``: sum of ``1 / (rrf_k + rank)``).

An index folder holds::

    index.json        model spec, embedding options, text view, ids, titles and CPC codes
    embeddings.npy    the document vectors as the user picked them (absent for a BM25-only index):
                      float32, int8 codes (+ embedding_ranges.npy, the int8 calibration) or packed
                      binary codes (uint8); optionally truncated (``--truncate-dim``)
    bm25/             the bm25s index (NumPy arrays and JSON, no pickle)

It is built in a temporary folder and moved into place, so a crash never leaves half an index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from patentcpc.bm25 import bm25_scores, bm25_tokenize, build_bm25  # noqa: F401  (re-exported)
from patentcpc.errors import ConfigError, DataError, ModelError
from patentcpc.folder_files import (
    MiB,
    check_bm25_folder,
    check_folder_tree,
    check_npy,
    limit,
    load_npy,
    read_folder_json,
)

MODES = ("bm25", "dense", "hybrid")
FUSIONS = ("rrf", "minmax", "zscore")
INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.npy"
RANGES_FILE = "embedding_ranges.npy"
BM25_DIR = "bm25"
MAX_DIM = 1 << 16  # embedding dimensions read from an index (the largest models use a few thousand)


@dataclass
class SearchOptions:
    """How a query is scored.

    Args:
        k: results returned.
        mode: ``bm25``, ``dense`` or ``hybrid``.
        fusion: for hybrid: ``rrf`` (reciprocal rank fusion), ``minmax`` or ``zscore`` interpolation.
        alpha: weight of the dense score in interpolation (1 - alpha for BM25).
        rrf_k: the constant of reciprocal rank fusion.
    """

    k: int = 10
    mode: str = "hybrid"
    fusion: str = "rrf"
    alpha: float = 0.5
    rrf_k: int = 60

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, not {self.k}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, not '{self.fusion}'")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be between 0 and 1, not {self.alpha}")
        if self.rrf_k < 0:
            raise ConfigError(f"rrf_k must be >= 0, not {self.rrf_k}")


# --------------------------------------------------------------------------- BM25


# --------------------------------------------------------------------------- fusion


def normalize_scores(scores: np.ndarray, method: str) -> np.ndarray:
    """Row-wise ``minmax`` (to [0, 1]) or ``zscore`` normalization; a constant row becomes 0."""
    s = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
        return np.where(hi > lo, (s - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    if method == "zscore":
        mu, sd = s.mean(axis=1, keepdims=True), s.std(axis=1, keepdims=True)
        return np.where(sd > 0, (s - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    raise ConfigError(f"normalization must be minmax or zscore, not '{method}'")


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every entry of each row (best = 1; ties by column order)."""
    order = np.argsort(-np.asarray(scores), axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(1, order.shape[1] + 1)[None, :].repeat(order.shape[0], 0), axis=1)
    return out


def fuse(bm25: np.ndarray, dense: np.ndarray, fusion: str = "rrf", alpha: float = 0.5, rrf_k: int = 60) -> np.ndarray:
    """Hybrid scores of two (queries x documents) score matrices."""
    if fusion == "rrf":
        return 1.0 / (rrf_k + ranks(bm25)) + 1.0 / (rrf_k + ranks(dense))
    return alpha * normalize_scores(dense, fusion) + (1 - alpha) * normalize_scores(bm25, fusion)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the k best entries of each row, best first."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


def dense_top_k(doc_vectors: np.ndarray, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum-inner-product search: FAISS ``IndexFlatIP`` when installed, else NumPy."""
    try:
        import faiss
    except ImportError:
        return top_k(query_vectors @ doc_vectors.T, k)
    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    scores, idx = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(k, len(doc_vectors)))
    return idx, scores


# --------------------------------------------------------------------------- the index


@dataclass
class Hit:
    rank: int
    id: str
    title: str
    score: float
    cpc: list[str]


def display_titles(data) -> list[str]:
    """A title per record: the first line of the text when the view starts with the title, else the
    source's ``title`` column where it has one, else the first 100 characters of the text."""
    texts = data.texts
    if data.text_fields and data.text_fields[0].lower() == "title":
        return [t.split("\n", 1)[0] for t in texts]
    try:
        from patentcpc.data import load_data

        titled = load_data(data.source, text_fields=["title"], id_field=data.id_field, require_labels=False,
                           label_field=data.label_field, on_bad_row="skip", level=data.level)
        by_id = dict(zip(titled.ids, titled.texts, strict=True))
    except (DataError, OSError):
        by_id = {}
    return [by_id.get(i) or t[:100] for i, t in zip(data.ids, texts, strict=True)]


@dataclass
class SearchIndex:
    """Documents (ids, titles, CPC codes) with a BM25 index and, when built with a model, embeddings."""

    ids: list[str]
    titles: list[str]
    labels: list[list[str]]
    bm25: object
    embeddings: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    _embedder: object = field(default=None, repr=False)
    codes: np.ndarray | None = field(default=None, repr=False)
    ranges: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, data, model: str | None = None, embed_options=None, progress: bool = False,
              precision: str = "float32") -> SearchIndex:
        """Index a :class:`~patentcpc.data.PatentData`: BM25 always, embeddings when ``model`` is given,
        stored in ``precision`` (float32, int8 or binary; see :mod:`patentcpc.retrieval.quantize`)."""
        from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder
        from patentcpc.retrieval.quantize import bytes_per_vector, check_precision, dequantize, quantize

        texts = data.texts
        meta = {"source": data.source, "text_fields": list(data.text_fields), "n_docs": len(texts), "model": model}
        embeddings = embedder = codes = ranges = None
        check_precision(precision)
        if model:
            opts = embed_options or EmbedOptions()
            embedder = load_embedder(model, opts)
            if embedder.needs_fit:
                raise ModelError(f"'{model}' must be fitted on the corpus and cannot embed queries from a saved "
                                 "index; use a transformer model")
            embeddings = embedder.encode(texts, progress=progress)
            dim = int(embeddings.shape[1])
            if precision != "float32":
                codes, ranges = quantize(embeddings, precision)
                embeddings = dequantize(codes, precision, ranges, dim)
            meta["embedding"] = {**embedder.describe(), "batch_size": opts.batch_size, "seed": opts.seed,
                                 "truncate_dim": opts.truncate_dim, "precision": precision, "dim": dim,
                                 "bytes_per_vector": bytes_per_vector(dim, precision)}
        return cls(list(data.ids), display_titles(data), [list(x) for x in data.labels], build_bm25(texts),
                   embeddings, meta, embedder, codes, ranges)

    # ----------------------------------------------------------------- persistence
    def save(self, folder: str | os.PathLike) -> Path:
        from patentcpc.io import atomic_dir

        folder = Path(folder)
        with atomic_dir(folder, kind="index") as tmp:
            self.bm25.save(str(tmp / BM25_DIR), show_progress=False)
            if self.codes is not None:
                np.save(tmp / EMBEDDINGS_FILE, self.codes, allow_pickle=False)
                if self.ranges is not None:
                    np.save(tmp / RANGES_FILE, np.asarray(self.ranges, dtype=np.float32), allow_pickle=False)
            elif self.embeddings is not None:
                np.save(tmp / EMBEDDINGS_FILE, np.asarray(self.embeddings, dtype=np.float32), allow_pickle=False)
            doc = {"format": 1, "meta": self.meta, "ids": self.ids, "titles": self.titles, "labels": self.labels}
            (tmp / INDEX_FILE).write_text(json.dumps(doc), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SearchIndex:
        import bm25s

        folder = Path(folder)
        if not os.path.lexists(folder / INDEX_FILE):
            raise DataError(folder, f"not a search index (no {INDEX_FILE}); build one with 'patentcpc index build'")
        # someone else's folder: no link out of it, no special or oversized file, no pickle
        where = {"error": DataError, "what": "the index folder"}
        check_folder_tree(folder, **where)
        n_docs = check_bm25_folder(folder / BM25_DIR, **where)
        doc = read_folder_json(folder, INDEX_FILE, min(limit("text"), MiB + n_docs * 64 * 1024), **where)
        try:
            ids, titles, labels, meta = doc["ids"], doc["titles"], doc["labels"], doc["meta"]
            info = meta.get("embedding") or {}
            precision = info.get("precision") or "float32"
            ok = (isinstance(ids, list) and isinstance(titles, list) and isinstance(labels, list)
                  and len(ids) == len(titles) == len(labels) == n_docs and isinstance(info, dict))
        except (KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise DataError(folder / INDEX_FILE, f"needs meta, and ids, titles and labels for the {n_docs} "
                                                 "documents of the bm25 index")
        try:
            bm25 = bm25s.BM25.load(str(folder / BM25_DIR), allow_pickle=False)
        except MemoryError:
            raise DataError(folder / BM25_DIR, "too large to load into this process's memory") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(folder / BM25_DIR, f"broken bm25 index ({str(exc).splitlines()[0][:200]})") from None
        embeddings = codes = ranges = None
        if os.path.lexists(folder / EMBEDDINGS_FILE):
            _, shape, _ = check_npy(folder, EMBEDDINGS_FILE, **where)
            width = shape[-1] if shape else 0
            if precision == "binary":  # packed bits: the float32 copy is 8 times as wide (at most)
                dim = info.get("dim")
                width = min(dim, 8 * width) if type(dim) is int and dim > 0 else 8 * width
            if not meta.get("model"):
                raise DataError(folder / EMBEDDINGS_FILE, f"{INDEX_FILE} names no embedding model: an index "
                                                          "built without --model has no embeddings")
            if (len(shape) != 2 or shape[0] != n_docs or not 1 <= width <= MAX_DIM
                    or 4 * shape[0] * width > limit("array")):
                raise DataError(folder / EMBEDDINGS_FILE, f"shape {shape} does not fit the {n_docs} documents "
                                                          f"of the index (at most {MAX_DIM} dimensions, within "
                                                          "the array limit)")
            # float32 vectors are used as stored: memory-mapped (page cache, not a copy in memory)
            embeddings = load_npy(folder, EMBEDDINGS_FILE, mmap=precision == "float32", **where)
        try:
            if embeddings is not None and precision != "float32":
                from patentcpc.retrieval.quantize import dequantize

                codes = embeddings
                ranges = load_npy(folder, RANGES_FILE, **where) if precision == "int8" else None
                embeddings = dequantize(codes, precision, ranges, info.get("dim"))
        except MemoryError:
            raise DataError(folder / EMBEDDINGS_FILE, "too large to load into this process's memory") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(folder, f"broken search index ({str(exc).splitlines()[0]})") from None
        try:  # the parts must fit together (a query would fail with an IndexError or TypeError)
            _check_index(doc, bm25, embeddings, codes, ranges, precision)
        except _BrokenIndex as exc:
            raise DataError(folder, f"broken search index ({exc})") from None
        return cls(ids, titles, labels, bm25, embeddings, meta, None, codes, ranges)

    # ----------------------------------------------------------------- querying
    def warm(self) -> SearchIndex:
        """Load the query encoder now (an index with embeddings), so that the first query costs
        what every later one does: a loaded index answers each query without reloading anything."""
        if self.embeddings is not None and self.meta.get("model"):
            self.embedder().encode_queries(["warm-up"])
        return self

    def embedder(self):
        from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder

        if self._embedder is None:
            info = self.meta.get("embedding") or {}
            if not self.meta.get("model"):
                raise ModelError("this index has no embeddings (built without --model): use --mode bm25")
            opts = EmbedOptions(pooling=info.get("pooling"), normalize=info.get("normalize", True),
                                max_length=info.get("max_length"), seed=info.get("seed", 0),
                                truncate_dim=info.get("truncate_dim"))
            self._embedder = load_embedder(self.meta["model"], opts)
        return self._embedder

    def scores(self, queries: Sequence[str], options: SearchOptions | None = None) -> np.ndarray:
        """Scores of every document for every query (queries x documents) in ``options.mode``."""
        opts = options or SearchOptions()
        if opts.mode != "bm25" and self.embeddings is None:
            raise ModelError(f"--mode {opts.mode} needs an index built with --model; this one has BM25 only")
        dense = self.embedder().encode_queries(list(queries)) @ self.embeddings.T if opts.mode != "bm25" else None
        if opts.mode == "dense":
            return dense.astype(np.float64)
        sparse = bm25_scores(self.bm25, queries)
        return sparse if opts.mode == "bm25" else fuse(sparse, dense, opts.fusion, opts.alpha, opts.rrf_k)

    def search(self, query: str, options: SearchOptions | None = None) -> list[Hit]:
        """The ``options.k`` best documents for ``query``."""
        opts = options or SearchOptions()
        if not query.strip():
            raise ConfigError("the query is empty")
        if opts.mode == "dense":
            if self.embeddings is None:
                raise ModelError("--mode dense needs an index built with --model; this one has BM25 only")
            idx, sc = dense_top_k(self.embeddings, self.embedder().encode_queries([query]), opts.k)
        else:
            idx, sc = top_k(self.scores([query], opts), opts.k)
        return [Hit(r + 1, self.ids[j], self.titles[j], float(s), self.labels[j])
                for r, (j, s) in enumerate(zip(idx[0], sc[0], strict=True))]


class _BrokenIndex(Exception):
    """An index folder whose parts do not fit together (the message says which)."""


def _check_index(doc: object, bm25, embeddings: np.ndarray | None, codes: np.ndarray | None,
                 ranges: np.ndarray | None, precision: str) -> None:
    """Refuse an index whose files disagree: ``index.json``'s lists (types, one entry a document),
    the BM25 matrix (document count, CSC structure, term ids) and the embeddings (one row a
    document, the stored precision and dimension), so a broken index fails on loading with one
    message instead of an IndexError or TypeError in a query."""
    from patentcpc.retrieval.quantize import PRECISIONS

    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict):
        raise _BrokenIndex(f"{INDEX_FILE} is not an object with 'meta'")
    lists = {k: doc.get(k) for k in ("ids", "titles", "labels")}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise _BrokenIndex(f"{INDEX_FILE}: '{key}' is not a list")
    n = len(lists["ids"])
    for key, value in lists.items():
        if len(value) != n:
            raise _BrokenIndex(f"{INDEX_FILE}: {len(value)} {key} for {n} ids")
    if not all(isinstance(i, str) for i in lists["ids"]) or not all(isinstance(t, str) for t in lists["titles"]):
        raise _BrokenIndex(f"{INDEX_FILE}: ids and titles must be strings")
    if not all(isinstance(x, list) and all(isinstance(c, str) for c in x) for x in lists["labels"]):
        raise _BrokenIndex(f"{INDEX_FILE}: labels must be lists of CPC codes")
    info = doc["meta"].get("embedding") or {}
    if not isinstance(info, dict):
        raise _BrokenIndex(f"{INDEX_FILE}: meta.embedding is not an object")
    scores = getattr(bm25, "scores", None)
    if not isinstance(scores, dict):
        raise _BrokenIndex(f"{BM25_DIR}/ holds no BM25 matrix")
    data, indices, indptr = (np.asarray(scores.get(k)) for k in ("data", "indices", "indptr"))
    if scores.get("num_docs") != n:
        raise _BrokenIndex(f"{BM25_DIR}/ indexes {scores.get('num_docs')} documents, {INDEX_FILE} lists {n}")
    if (indptr.ndim != 1 or len(indptr) < 1 or data.ndim != 1 or indices.ndim != 1 or len(data) != len(indices)
            or not np.issubdtype(indptr.dtype, np.integer) or not np.issubdtype(indices.dtype, np.integer)
            or not np.issubdtype(data.dtype, np.floating)):
        raise _BrokenIndex(f"{BM25_DIR}/: the score matrix has the wrong shape or type")
    if indptr[0] != 0 or indptr[-1] != len(data) or np.any(np.diff(indptr) < 0):
        raise _BrokenIndex(f"{BM25_DIR}/: the score matrix's column pointers are inconsistent")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise _BrokenIndex(f"{BM25_DIR}/: document numbers outside 0..{n - 1}")
    if not np.all(np.isfinite(data)):
        raise _BrokenIndex(f"{BM25_DIR}/: scores that are not finite")
    vocab = getattr(bm25, "vocab_dict", None)
    if not isinstance(vocab, dict) or any(type(v) is not int or not 0 <= v < len(indptr) for v in vocab.values()):
        raise _BrokenIndex(f"{BM25_DIR}/: the vocabulary does not fit the score matrix")
    if precision not in PRECISIONS:
        raise _BrokenIndex(f"{INDEX_FILE}: unknown precision {precision!r}")
    if embeddings is None:
        return
    if embeddings.ndim != 2 or len(embeddings) != n or embeddings.shape[1] < 1:
        raise _BrokenIndex(f"{EMBEDDINGS_FILE} has shape {embeddings.shape}, not one row for each of {n} documents")
    dim = info.get("dim")
    if dim is not None and embeddings.shape[1] != dim:
        raise _BrokenIndex(f"{EMBEDDINGS_FILE} has {embeddings.shape[1]} dimensions, {INDEX_FILE} says {dim}")
    stored = codes if codes is not None else embeddings
    want = {"float32": np.floating, "int8": np.int8, "binary": np.uint8}[precision]
    if not np.issubdtype(stored.dtype, want):
        raise _BrokenIndex(f"{EMBEDDINGS_FILE} holds {stored.dtype}, not {precision} vectors")
    if ranges is not None and (ranges.ndim != 2 or ranges.shape != (2, embeddings.shape[1])):
        raise _BrokenIndex(f"{RANGES_FILE} has shape {ranges.shape}, not (2, {embeddings.shape[1]})")
    if not np.all(np.isfinite(embeddings)):
        raise _BrokenIndex(f"{EMBEDDINGS_FILE}: values that are not finite")


def score_legend(mode: str, fusion: str = "rrf", alpha: float = 0.5, rrf_k: int = 60) -> str:
    """What a search score means in ``mode`` (and ``fusion``), for the legend under a result table."""
    if mode == "bm25":
        return "score: BM25 relevance of the query's words (unbounded; compare within one query only)"
    if mode == "dense":
        return "score: cosine similarity of the query's and the document's embeddings (-1 to 1)"
    if fusion == "rrf":
        return (f"score (hybrid, reciprocal rank fusion): 1/({rrf_k} + BM25 rank) + 1/({rrf_k} + dense rank); "
                f"at most {2 / (rrf_k + 1):.4f}, for a document first in both lists")
    how = ("min-max scaled over the collection for this query (0 = the lowest score, 1 = the highest)"
           if fusion == "minmax" else "z-scored over the collection for this query (standard deviations above the "
                                      "mean)")
    top = (" so a top document that is first in both lists shows 1.0000; scores rank documents within this query "
           "and are not probabilities") if fusion == "minmax" else "; scores rank documents within this query only"
    return (f"score (hybrid): {alpha:g} x dense similarity + {1 - alpha:g} x BM25, each {how},{top}")


def hits_as_dicts(hits: Sequence[Hit]) -> list[dict]:
    return [asdict(h) for h in hits]
