"""BM25 over bm25s, shared by search (:mod:`patentcpc.retrieval.search`) and explanations
(:mod:`patentcpc.explain`): tokenization, index building and dense score rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bm25_tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased word tokens without English stop words (bm25s' tokenizer)."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def build_bm25(texts: Sequence[str]):
    """A ``bm25s.BM25`` index (Lucene variant, k1=1.5, b=0.75) of ``texts``."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25_tokenize(texts), show_progress=False)
    return retriever


def bm25_scores(retriever, queries: Sequence[str]) -> np.ndarray:
    """BM25 scores of every document for every query (queries x documents)."""
    tokens = bm25_tokenize(queries)
    if not tokens:
        return np.zeros((0, 0))
    n_docs = int(retriever.scores["num_docs"])
    # a query of stop words or punctuation only has no terms: it matches no document (bm25s fails on it)
    return np.vstack([retriever.get_scores(t) if t else np.zeros(n_docs) for t in tokens]).astype(np.float64)
