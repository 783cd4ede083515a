"""Evaluation metrics for multi-label CPC prediction.

Top-k metrics follow the patent-classification literature (PatentBERT, DeepPatent): over N
documents, ``hits`` is the number of gold labels among the top-k predictions of each document;

* ``precision@k = hits / (k * N)``
* ``recall@k = hits / G`` where G counts *all* gold labels, also those the model never saw;
* ``f1@k`` is the harmonic mean of the two.

These equal micro-averaged precision/recall/F1 of the "top-k" binarization (each document
predicted with exactly k labels), which is how the tests check them against scikit-learn.

Threshold metrics binarize scores at the model's decision threshold(s) (a global value or one per
label). Macro averages run over the labels that occur in the gold labels or the predictions of the
evaluated set; gold labels outside the model's vocabulary count as missed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from patentcpc.cpc import parse_symbol

TOP_KS = (1, 3, 5)


def _gold_index(gold: Sequence[Sequence[str]], vocab: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Column list (vocab first, then unknown gold labels) and each document's gold columns."""
    columns = list(vocab)
    index = {c: i for i, c in enumerate(columns)}
    rows = []
    for labels in gold:
        cols = []
        for code in labels:
            if code not in index:
                index[code] = len(columns)
                columns.append(code)
            cols.append(index[code])
        rows.append(sorted(set(cols)))
    return columns, rows


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first (ties broken by column)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    if k <= 0 or scores.shape[0] == 0:
        return np.zeros((scores.shape[0], max(k, 0)), dtype=np.int64)
    # a stable sort of the negated scores: equal scores keep column order, so ties go to the
    # lower column deterministically (argpartition alone would pick arbitrarily among ties)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def precision_recall_f1_at_k(
    scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str], ks: Sequence[int] = TOP_KS
) -> dict[str, float]:
    """``precision@k``, ``recall@k`` and ``f1@k`` for every k in ``ks`` (see the module docstring)."""
    scores = np.asarray(scores)
    n = scores.shape[0]
    _, gold_rows = _gold_index(gold, vocab)
    n_gold = sum(len(r) for r in gold_rows)
    top = top_k_indices(scores, max(ks))
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, scores.shape[1])
        hits = sum(len(set(top[i, :kk].tolist()).intersection(gold_rows[i])) for i in range(n))
        p = hits / (k * n) if n else 0.0
        r = hits / n_gold if n_gold else 0.0
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if p + r else 0.0
    return out


def binarize(scores: np.ndarray, threshold: float | np.ndarray, at_least_one: bool = False) -> np.ndarray:
    """Boolean predictions: score >= threshold (scalar or one per column). With ``at_least_one``
    every document also keeps its top-1 label."""
    pred = np.asarray(scores) >= np.asarray(threshold)
    if at_least_one and pred.shape[1]:
        pred[np.arange(pred.shape[0]), np.argmax(scores, axis=1)] = True
    return pred


def _matrices(pred: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str]):
    columns, gold_rows = _gold_index(gold, vocab)
    y_true = np.zeros((len(gold_rows), len(columns)), dtype=bool)
    for i, cols in enumerate(gold_rows):
        y_true[i, cols] = True
    y_pred = np.zeros_like(y_true)
    y_pred[:, : pred.shape[1]] = pred
    return columns, y_true, y_pred


def threshold_metrics(pred: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str]) -> dict[str, float]:
    """Micro and macro precision / recall / F1 of boolean predictions (columns = ``vocab``)."""
    _, y_true, y_pred = _matrices(np.asarray(pred, dtype=bool), gold, vocab)
    tp = (y_true & y_pred).sum(axis=0).astype(float)
    fp = (~y_true & y_pred).sum(axis=0).astype(float)
    fn = (y_true & ~y_pred).sum(axis=0).astype(float)
    return _threshold_summary(tp, fp, fn, float(y_pred.sum(axis=1).mean()) if len(y_pred) else 0.0)


def hierarchy_accuracy_at_1(scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str]) -> dict:
    """Is the top prediction's section (class) among the gold labels' sections (classes)?"""
    scores = np.asarray(scores)
    if scores.shape[0] == 0:
        return {"section_accuracy@1": 0.0, "class_accuracy@1": 0.0}
    top1 = np.argmax(scores, axis=1)
    sec_hits = cls_hits = 0
    for i, labels in enumerate(gold):
        sym = parse_symbol(vocab[top1[i]])
        gold_syms = [parse_symbol(c) for c in labels]
        sec_hits += sym.section in {g.section for g in gold_syms}
        cls_hits += sym.klass is not None and sym.klass in {g.klass for g in gold_syms}
    n = len(gold)
    return {"section_accuracy@1": sec_hits / n, "class_accuracy@1": cls_hits / n}


def evaluate_scores(
    scores: np.ndarray,
    gold: Sequence[Sequence[str]],
    vocab: Sequence[str],
    threshold: float | np.ndarray = 0.5,
    ks: Sequence[int] = TOP_KS,
) -> dict[str, float]:
    """All summary metrics of a score matrix (rows = documents, columns = ``vocab``).

    Streaming: the scores are read in row blocks against a sparse gold matrix, so memory is
    bounded by a block (no dense documents x labels matrices); the figures equal those of
    :func:`precision_recall_f1_at_k`, :func:`threshold_metrics` and :func:`hierarchy_accuracy_at_1`."""
    if np.shape(scores) != (len(gold), len(vocab)):
        raise ValueError(f"scores have shape {np.shape(scores)}, expected ({len(gold)}, {len(vocab)})")
    n, n_vocab = len(gold), len(vocab)
    out: dict[str, float] = {"n_docs": n, "n_labels": n_vocab}
    out["n_gold_labels_unseen"] = len(set(c for labels in gold for c in labels) - set(vocab))
    columns, y_true = gold_matrix(gold, vocab)
    n_gold = int(y_true.nnz)
    known = y_true[:, :n_vocab].tocsr()
    max_k = min(max(ks), n_vocab) if ks else 0
    hits = dict.fromkeys(ks, 0)
    tp = np.zeros(len(columns))
    fp = np.zeros(len(columns))
    fn = np.asarray(y_true.sum(axis=0)).ravel().astype(float)  # minus the true positives below
    n_pred = 0
    thr = np.asarray(threshold)
    top1 = np.zeros(n, dtype=np.int64)
    conf = np.zeros(n)  # the top-1 score of every document
    lo, hi = np.inf, -np.inf
    for start, stop in _row_blocks(n, n_vocab):
        block = np.asarray(scores[start:stop], dtype=np.float64)
        truth = known[start:stop].toarray()
        if max_k > 0 and len(block):
            top = np.argsort(-block, axis=1, kind="stable")[:, :max_k]
            hit = np.take_along_axis(truth, top, axis=1)
            for k in ks:
                hits[k] += int(hit[:, : min(k, n_vocab)].sum())
            top1[start:stop] = np.argmax(block, axis=1)
            conf[start:stop] = block[np.arange(len(block)), top1[start:stop]]
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        pred = block >= thr
        tp[:n_vocab] += (pred & truth).sum(axis=0)
        fp[:n_vocab] += (pred & ~truth).sum(axis=0)
        n_pred += int(pred.sum())
    fn -= tp
    for k in ks:
        p = hits[k] / (k * n) if n else 0.0
        r = hits[k] / n_gold if n_gold else 0.0
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if p + r else 0.0
    out.update(_threshold_summary(tp, fp, fn, n_pred / n if n else 0.0))
    out.update(_hierarchy_hits(top1, gold, vocab) if n_vocab else
               {"section_accuracy@1": 0.0, "class_accuracy@1": 0.0})
    if n and n_vocab and lo >= 0.0 and hi <= 1.0:  # probabilities: top-1 reliability
        hit = np.asarray(known[np.arange(n), top1]).ravel().astype(np.float64)
        out["ece@1"] = ece(conf, hit)
        out["auroc@1"] = auroc(conf, hit)
    return out


def _threshold_summary(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, mean_predicted: float) -> dict[str, float]:
    out: dict[str, float] = {}
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    out["micro_precision"] = TP / (TP + FP) if TP + FP else 0.0
    out["micro_recall"] = TP / (TP + FN) if TP + FN else 0.0
    p, r = out["micro_precision"], out["micro_recall"]
    out["micro_f1"] = 2 * p * r / (p + r) if p + r else 0.0
    active = (tp + fp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        lr = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        lf = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    out["macro_precision"] = float(lp[active].mean()) if active.any() else 0.0
    out["macro_recall"] = float(lr[active].mean()) if active.any() else 0.0
    out["macro_f1"] = float(lf[active].mean()) if active.any() else 0.0
    out["mean_predicted_labels"] = float(mean_predicted)
    return out


def _hierarchy_hits(top1: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str]) -> dict[str, float]:
    n = len(gold)
    if n == 0:
        return {"section_accuracy@1": 0.0, "class_accuracy@1": 0.0}
    parsed: dict[str, tuple] = {}

    def sk(code: str) -> tuple:
        if code not in parsed:
            sym = parse_symbol(code)
            parsed[code] = (sym.section, sym.klass)
        return parsed[code]

    sec_hits = cls_hits = 0
    for i, labels in enumerate(gold):
        sec, klass = sk(vocab[top1[i]])
        gold_syms = [sk(c) for c in labels]
        sec_hits += sec in {g[0] for g in gold_syms}
        cls_hits += klass is not None and klass in {g[1] for g in gold_syms}
    return {"section_accuracy@1": sec_hits / n, "class_accuracy@1": cls_hits / n}


def per_label_report(
    pred: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str]
) -> list[dict[str, float | int | str]]:
    """One row per label that occurs in gold or predictions: support, predicted, P, R, F1."""
    columns, y_true, y_pred = _matrices(np.asarray(pred, dtype=bool), gold, vocab)
    tp = (y_true & y_pred).sum(axis=0)
    support = y_true.sum(axis=0)
    predicted = y_pred.sum(axis=0)
    rows = []
    for j, code in enumerate(columns):
        if support[j] == 0 and predicted[j] == 0:
            continue
        p = tp[j] / predicted[j] if predicted[j] else 0.0
        r = tp[j] / support[j] if support[j] else 0.0
        rows.append({
            "label": code, "support": int(support[j]), "predicted": int(predicted[j]),
            "precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
            "in_vocab": j < len(vocab),
        })
    rows.sort(key=lambda r: (-r["support"], r["label"]))
    return rows


def gold_matrix(gold: Sequence[Sequence[str]], vocab: Sequence[str]):
    """(columns, CSR boolean matrix documents x columns): the gold labels, sparse (vocab first,
    then gold labels outside the vocabulary), as :func:`_matrices` without the dense matrices."""
    from scipy import sparse

    columns, rows = _gold_index(gold, vocab)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=bool)
    return columns, sparse.csr_matrix((data, indices, indptr), shape=(len(rows), len(columns)))


BLOCK_ELEMENTS = 4_000_000  # score-matrix entries handled at once by the streaming functions


def _row_blocks(n_rows: int, n_cols: int):
    step = max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def _default_candidates(scores: np.ndarray, max_elements: int = 20_000_000) -> np.ndarray:
    """60 quantiles (0.90 .. 0.9999) of every score; above ``max_elements`` entries of a seeded
    sample of rows (bounded memory)."""
    if scores.size > max_elements:
        rows = np.sort(np.random.default_rng(0).choice(scores.shape[0], max_elements // scores.shape[1],
                                                       replace=False))
        scores = scores[rows]
    return np.unique(np.quantile(scores, np.linspace(0.90, 0.9999, 60)))


def tune_global_threshold(scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str],
                          candidates: Sequence[float] | None = None) -> tuple[float, float]:
    """The global threshold that maximizes micro F1 on a validation set: (threshold, micro_f1).

    One pass over the scores in row blocks: every score is placed among the sorted candidates
    (binary search), so the predicted counts of all candidates come from one histogram and the
    true positives from the gold entries' scores: O(n L log C) time, memory bounded by a block."""
    scores = np.asarray(scores)
    if candidates is None:
        candidates = _default_candidates(scores)
    cands = np.asarray(candidates, dtype=np.float64)
    order = np.argsort(cands, kind="stable")
    sorted_c = cands[order]
    n_pred = np.zeros(len(cands) + 1, dtype=np.int64)  # bucket b: score in [c_(b-1), c_b)
    n_tp = np.zeros(len(cands) + 1, dtype=np.int64)
    _, y_true = gold_matrix(gold, vocab)
    n_gold = int(y_true.nnz)
    known = y_true[:, : scores.shape[1]].tocsr()
    for start, stop in _row_blocks(*scores.shape):
        block = np.asarray(scores[start:stop], dtype=np.float64)
        n_pred += np.bincount(np.searchsorted(sorted_c, block.ravel(), side="right"), minlength=len(cands) + 1)
        sub = known[start:stop].tocoo()
        gs = block[sub.row, sub.col]
        n_tp += np.bincount(np.searchsorted(sorted_c, gs, side="right"), minlength=len(cands) + 1)
    # score >= sorted_c[i]  <=>  bucket > i
    pred_ge = np.cumsum(n_pred[::-1])[::-1][1:]
    tp_ge = np.cumsum(n_tp[::-1])[::-1][1:]
    best = (float(candidates[0]), -1.0)
    f1_sorted = np.zeros(len(cands))
    for i in range(len(cands)):
        tp, npred = float(tp_ge[i]), float(pred_ge[i])
        p = tp / npred if npred else 0.0
        r = tp / n_gold if n_gold else 0.0
        f1_sorted[i] = 2 * p * r / (p + r) if p + r else 0.0
    f1 = np.empty(len(cands))
    f1[order] = f1_sorted
    for t, f in zip(cands, f1, strict=True):  # the first best in the caller's order, as before
        if f > best[1]:
            best = (float(t), float(f))
    return best


def tune_label_thresholds(scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str],
                          global_threshold: float, min_support: int = 50,
                          max_predicted_ratio: float = 3.0) -> np.ndarray:
    """Per-label thresholds maximizing each label's F1 where it has ``min_support`` validation
    positives; other labels keep the global threshold. The threshold is the smallest score value
    reaching the label's best F1 = 2 TP / (predicted + positives) over "score >= value", among the
    values that predict the label for at most ``max_predicted_ratio`` x its positives (a weak model's
    F1 for a label is often highest when it predicts the label everywhere: a flood of codes).
    Defaults measured in benchmarks/thresholds.md: on a few hundred
    validation documents, thresholds from fewer positives cost 0.03-0.14 micro F1 on held-out data.

    Sort-based: per label one sort of its column, then the counts at every distinct value come
    from cumulative sums (O(n log n) a label, columns in blocks to bound memory);
    :func:`tune_label_thresholds_reference` is the quadratic definition it is tested against."""
    scores = np.asarray(scores)
    _, y_true = gold_matrix(gold, vocab)
    y_true = y_true[:, : len(vocab)].tocsc()
    out = np.full(len(vocab), global_threshold, dtype=np.float64)
    support = np.diff(y_true.indptr)
    cols = np.flatnonzero(support >= min_support)
    n = scores.shape[0]
    step = max(1, BLOCK_ELEMENTS // max(n, 1))
    for b in range(0, len(cols), step):
        js = cols[b : b + step]
        block = np.asarray(scores[:, js], dtype=np.float64)
        truth = y_true[:, js].toarray()
        order = np.argsort(-block, axis=0, kind="stable")  # descending
        s = np.take_along_axis(block, order, axis=0)
        t = np.take_along_axis(truth, order, axis=0)
        tp = np.cumsum(t, axis=0)
        # the last row of each run of equal values: "score >= value" predicts rows 0..that row
        last = np.ones_like(s, dtype=bool)
        last[:-1] = s[:-1] != s[1:]
        n_pred = np.arange(1, n + 1)[:, None]
        allowed = last & (n_pred <= max(1.0, max_predicted_ratio) * support[js][None, :])
        f1 = np.where(allowed, 2 * tp / (n_pred + support[js][None, :]), -np.inf)
        # ties of F1: the smallest value (the reference scans values upwards, keeping the first max)
        best_f1 = f1.max(axis=0)
        is_best = f1 == best_f1[None, :]
        pick = n - 1 - np.argmax(is_best[::-1], axis=0)  # the lowest-scoring row reaching the best
        # no allowed value (a tie group above the cap) or no hit at all: the global threshold stays
        out[js] = np.where(best_f1 > 0, s[pick, np.arange(len(js))], out[js])
    return out


def tune_label_thresholds_reference(scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str],
                                    global_threshold: float, min_support: int = 50,
                                    max_predicted_ratio: float = 3.0) -> np.ndarray:
    """The quadratic definition of :func:`tune_label_thresholds` (every distinct score tried in
    turn), kept for the tests."""
    scores = np.asarray(scores)
    _, y_true, _ = _matrices(np.zeros_like(scores, dtype=bool), gold, vocab)
    y_true = y_true[:, : len(vocab)]
    out = np.full(len(vocab), global_threshold, dtype=np.float64)
    for j in np.flatnonzero(y_true.sum(axis=0) >= min_support):
        s, t = scores[:, j], y_true[:, j]
        best_f1, best_t = 0.0, global_threshold  # a value must reach some hit to replace it
        for cand in np.unique(s):
            pred = s >= cand
            if pred.sum() > max(1.0, max_predicted_ratio) * t.sum():
                continue
            tp = (pred & t).sum()
            f1 = 2 * tp / (pred.sum() + t.sum())
            if f1 > best_f1:
                best_f1, best_t = f1, float(cand)
        out[j] = best_t
    return out


# ----------------------------------------------------------------------------- top-1 reliability


def top1_confidence(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(probability of the top-1 code, 1 if it is a gold code else 0) for every document."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0), np.zeros(0)
    best = scores.argmax(1)
    conf = scores[np.arange(len(best)), best]
    hit = np.array([labels[j] in set(g) for j, g in zip(best, gold, strict=True)], dtype=np.float64)
    return conf, hit


def ece(conf: np.ndarray, hit: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of [0, 1]: the bin-size
    weighted mean of |hit rate - mean confidence| (bins are [0, .1), ..., [.9, 1.0])."""
    if len(conf) == 0:
        return float("nan")
    bins = reliability_bins(conf, hit, n_bins)
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]) / len(conf))


def reliability_bins(conf: np.ndarray, hit: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Per equal-width bin of [0, 1]: its bounds, documents, mean confidence and hit rate (None
    when empty); the reliability plot and :func:`ece` read them."""
    conf = np.asarray(conf, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    b = np.minimum((np.clip(conf, 0, 1) * n_bins).astype(int), n_bins - 1)
    out = []
    for k in range(n_bins):
        m = b == k
        out.append({"lo": k / n_bins, "hi": (k + 1) / n_bins, "n": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else None,
                    "accuracy": float(hit[m].mean()) if m.any() else None})
    return out


def auroc(conf: np.ndarray, hit: np.ndarray) -> float:
    """Area under the ROC curve of ``conf`` separating hits from misses (ties count half)."""
    conf = np.asarray(conf, dtype=np.float64)
    hit = np.asarray(hit).astype(bool)
    n_pos, n_neg = int(hit.sum()), int((~hit).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(conf)
    return float((ranks[hit].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def label_ranking_average_precision(y: np.ndarray, scores: np.ndarray, max_elements: int = 20_000_000) -> float:
    """scikit-learn's ``label_ranking_average_precision_score(y, scores)`` (unweighted), vectorised
    over the gold entries instead of a Python loop over documents (``tune_weights`` calls it once
    per grid point): per document and gold label ``j``, the share of gold labels among the labels
    scoring ``>= scores[j]``, averaged over its gold labels, then over the documents; a document
    with no gold label or with every label gold counts 1, as in scikit-learn."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n, n_labels = y.shape
    if n == 0:
        return float("nan")
    rows, cols = np.nonzero(y)
    per_doc = np.zeros(n)
    step = max(1, max_elements // max(1, n_labels))
    for lo in range(0, len(rows), step):  # bounded memory: entries x labels at most max_elements
        r, c = rows[lo:lo + step], cols[lo:lo + step]
        above = scores[r] >= scores[r, c][:, None]
        per_doc += np.bincount(r, weights=(above & y[r]).sum(1) / above.sum(1), minlength=n)
    k = y.sum(1)
    trivial = (k == 0) | (k == n_labels)
    return float(np.where(trivial, 1.0, per_doc / np.maximum(k, 1)).mean())


def top1_ece(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str], n_bins: int = 10) -> float:
    return ece(*top1_confidence(scores, gold, labels), n_bins=n_bins)


def top1_auroc(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str]) -> float:
    return auroc(*top1_confidence(scores, gold, labels))


def evaluate_model(model, data, batch_size: int = 64, progress: bool = False) -> dict:
    """All summary metrics of a model (:class:`~patentcpc.models.base.CPCModel`) on labelled ``data``
    (a :class:`~patentcpc.data.PatentData`)."""
    scores = model.scores(data.texts, batch_size=batch_size, progress=progress)
    return evaluate_scores(scores, data.labels, model.labels, model.thresholds)
