"""Explanations of predictions: the training patents nearest to a text that carry a predicted code
(a BM25 index of the training texts, saved with the model when training sets
``explain.index=true``) and, for linear models, the terms that contributed most to a code's
score (TF-IDF value x coefficient).

Folder layout (inside the model folder)::

    explain/bm25/        the bm25s index (NumPy arrays and JSON, no pickle)
    explain/docs.json    {"format": 1, "ids": [...], "snippets": [...], "labels": [[...], ...]}

Each assigned prediction gets ``evidence``: a list of ``{"kind": "patent", "id", "text", "score"}``
(nearest training patents carrying the code, BM25 score) and ``{"kind": "term", "term", "weight"}``
items; the web page shows ``text``/``term`` with ``score``/``weight``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.folder_files import MiB, check_bm25_folder, check_folder_tree, limit, read_folder_json

EXPLAIN_DIR = "explain"
DOCS_FILE = "docs.json"
BM25_DIR = "bm25"


@dataclass
class ExplainIndex:
    ids: list[str]
    snippets: list[str]
    labels: list[list[str]]
    bm25: object

    @classmethod
    def build(cls, data, snippet_chars: int = 300) -> ExplainIndex:
        """From a :class:`~patentcpc.data.PatentData` (ids, texts, labels)."""
        from patentcpc.bm25 import build_bm25

        texts = data.texts
        snippets = [" ".join(t.split())[:snippet_chars] for t in texts]
        return cls([str(i) for i in data.ids], snippets, [list(x) for x in data.labels], build_bm25(texts))

    def save(self, folder: str | os.PathLike) -> None:
        """Into ``folder`` (the model's ``explain/``, inside the model's temporary folder)."""
        from patentcpc.io import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.bm25.save(str(folder / BM25_DIR), show_progress=False)
        atomic_write_text(folder / DOCS_FILE, json.dumps({"format": 1, "ids": self.ids, "snippets": self.snippets,
                                                          "labels": self.labels}))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ExplainIndex:
        import bm25s

        folder = Path(folder)
        # part of a model folder (someone else's data): no link out, no special or oversized file,
        # and docs.json in proportion to the documents of the bm25 index (a snippet is 300 characters)
        check_folder_tree(folder, error=ModelError, what="the explanation index")
        n_docs = check_bm25_folder(folder / BM25_DIR, error=ModelError, what="the explanation index")
        doc = read_folder_json(folder, DOCS_FILE, min(limit("text"), MiB + n_docs * 16 * 1024),
                               error=ModelError, what="the explanation index")
        try:
            ids, snippets, labels = doc["ids"], doc["snippets"], doc["labels"]
            ok = (all(isinstance(x, list) for x in (ids, snippets, labels))
                  and all(isinstance(x, str) for x in ids) and all(isinstance(x, str) for x in snippets)
                  and all(isinstance(x, list) and all(isinstance(c, str) for c in x) for x in labels))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise ModelError(f"{folder / DOCS_FILE}: must be an object with the lists ids, snippets (strings) "
                             "and labels (lists of codes)")
        if not (len(ids) == len(snippets) == len(labels) == n_docs):
            raise ModelError(f"{folder}: explanation index lists differ in length")
        try:
            bm25 = bm25s.BM25.load(str(folder / BM25_DIR), allow_pickle=False)
        except MemoryError:
            raise ModelError(f"{folder / BM25_DIR}: too large to load into this process's memory") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{folder}: broken explanation index ({str(exc).splitlines()[0]})") from None
        return cls(ids, snippets, labels, bm25)

    def nearest(self, texts: Sequence[str]) -> np.ndarray:
        """BM25 scores (queries x training documents)."""
        from patentcpc.bm25 import bm25_scores

        return bm25_scores(self.bm25, list(texts))

    def carrying(self, scores_row: np.ndarray, code: str, n: int = 3) -> list[dict]:
        """The ``n`` best-scoring training documents (sharing terms with the text) whose labels
        include ``code``."""
        order = np.argsort(-scores_row, kind="stable")
        out = []
        for i in order:
            if scores_row[i] <= 0:  # no shared term: not evidence
                break
            if code in self.labels[i]:
                out.append({"kind": "patent", "id": self.ids[i], "text": f"{self.ids[i]}: {self.snippets[i][:160]}",
                            "score": round(float(scores_row[i]), 4)})
                if len(out) >= n:
                    break
        return out


def model_index(model) -> ExplainIndex | None:
    """The explanation index saved with ``model`` (None if it was trained without one)."""
    idx = getattr(model, "explain_index", None)
    if idx is not None:
        return idx
    folder = getattr(model, "source_path", None)
    if folder is None or not os.path.lexists(Path(folder) / EXPLAIN_DIR / DOCS_FILE):
        return None
    idx = ExplainIndex.load(Path(folder) / EXPLAIN_DIR)
    model.explain_index = idx
    return idx


def save_index(model, folder: str | os.PathLike) -> None:
    """Write ``model``'s explanation index (if any) into its model folder being written."""
    idx = getattr(model, "explain_index", None)
    if idx is not None:
        idx.save(Path(folder) / EXPLAIN_DIR)


def linear_parts(model):
    """(TF-IDF transform, coefficient matrix labels x features, feature names) of a model that
    explains by term (:meth:`~patentcpc.models.base.CPCModel.term_weights`: linear models), or None."""
    return model.term_weights()


def _parts(model) -> list:
    """``model`` and the models that explain it (an ensemble's members, recursively)."""
    return [model, *(p for m in model.explain_members() for p in _parts(m))]


def top_terms(model, text: str, code: str, n: int = 5) -> list[dict]:
    """The terms of ``text`` with the largest TF-IDF value x coefficient for ``code`` (linear
    models, and the linear members of an ensemble), as the text writes them (a stemmed model's
    stem shown as the text's first word with that stem); [] for other models."""
    for m in _parts(model):
        parts = linear_parts(m)
        if parts is None or code not in m.labels:
            continue
        tfidf, coef, names = parts
        idx, val = tfidf.transform_one(text)
        contrib = val * coef[m.labels.index(code)][idx]
        order = np.argsort(-contrib)[:n]
        words = tfidf.surface_forms(text) if getattr(tfidf, "stemmer", None) else {}
        return [{"kind": "term", "term": words.get(str(names[idx[k]]), str(names[idx[k]])),
                 "weight": round(float(contrib[k]), 4)} for k in order if contrib[k] > 0]
    return []


def explain_predictions(model, texts: Sequence[str], results: list[dict], n_docs: int = 3,
                        n_terms: int = 5) -> list[dict]:
    """Add ``evidence`` to every assigned prediction of ``results`` (from
    :func:`patentcpc.streaming.format_predictions` for ``texts``), in place; also returns them.
    Without an explanation index only terms are given (linear models); each result gets
    ``explain_note`` when something is missing."""
    idx = model_index(model)
    bm = idx.nearest(texts) if idx is not None and len(texts) else None
    has_terms = any(linear_parts(m) is not None for m in _parts(model))
    for i, (text, res) in enumerate(zip(texts, results, strict=True)):
        for p in res["predictions"]:
            if not p.get("assigned", p.get("above_threshold")):
                continue
            ev = idx.carrying(bm[i], p["code"], n_docs) if bm is not None else []
            ev += top_terms(model, text, p["code"], n_terms)
            p["evidence"] = ev
        if idx is None:
            res["explain_note"] = ("no training patents: the model was trained without an explanation index "
                                   "(train with --set explain.index=true)")
        elif not has_terms:
            res["explain_note"] = "term weights exist for linear models only"
    return results
