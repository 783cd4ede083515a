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
    out["mean_predicted_labels"] = float(y_pred.sum(axis=1).mean()) if len(y_pred) else 0.0
    return out


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
    """All summary metrics of a score matrix (rows = documents, columns = ``vocab``)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(gold), len(vocab)):
        raise ValueError(f"scores have shape {scores.shape}, expected ({len(gold)}, {len(vocab)})")
    out: dict[str, float] = {"n_docs": len(gold), "n_labels": len(vocab)}
    out["n_gold_labels_unseen"] = len(set(c for labels in gold for c in labels) - set(vocab))
    out.update(precision_recall_f1_at_k(scores, gold, vocab, ks))
    out.update(threshold_metrics(binarize(scores, threshold), gold, vocab))
    out.update(hierarchy_accuracy_at_1(scores, gold, vocab))
    if scores.size and scores.min() >= 0.0 and scores.max() <= 1.0:  # probabilities: top-1 reliability
        conf, hit = top1_confidence(scores, gold, vocab)
        out["ece@1"] = ece(conf, hit)
        out["auroc@1"] = auroc(conf, hit)
    return out


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


def tune_global_threshold(scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str],
                          candidates: Sequence[float] | None = None) -> tuple[float, float]:
    """The global threshold that maximizes micro F1 on a validation set: (threshold, micro_f1)."""
    scores = np.asarray(scores)
    if candidates is None:
        candidates = np.unique(np.quantile(scores, np.linspace(0.90, 0.9999, 60)))
    best = (float(candidates[0]), -1.0)
    for t in candidates:
        f1 = threshold_metrics(binarize(scores, t), gold, vocab)["micro_f1"]
        if f1 > best[1]:
            best = (float(t), f1)
    return best


def tune_label_thresholds(scores: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str],
                          global_threshold: float, min_support: int = 5) -> np.ndarray:
    """Per-label thresholds maximizing each label's F1 where it has ``min_support`` validation
    positives; other labels keep the global threshold."""
    scores = np.asarray(scores)
    _, y_true, _ = _matrices(np.zeros_like(scores, dtype=bool), gold, vocab)
    y_true = y_true[:, : len(vocab)]
    out = np.full(len(vocab), global_threshold, dtype=np.float64)
    for j in np.flatnonzero(y_true.sum(axis=0) >= min_support):
        s, t = scores[:, j], y_true[:, j]
        best_f1, best_t = -1.0, global_threshold
        for cand in np.unique(s):
            pred = s >= cand
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
    conf = np.asarray(conf, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    if len(conf) == 0:
        return float("nan")
    b = np.minimum((np.clip(conf, 0, 1) * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for k in range(n_bins):
        m = b == k
        if m.any():
            total += m.sum() * abs(hit[m].mean() - conf[m].mean())
    return float(total / len(conf))


def reliability_bins(conf: np.ndarray, hit: np.ndarray, n_bins: int = 10) -> list[dict]:
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
    from scipy.stats import rankdata  # noqa: PLC0415

    ranks = rankdata(conf)
    return float((ranks[hit].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top1_ece(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str], n_bins: int = 10) -> float:
    return ece(*top1_confidence(scores, gold, labels), n_bins=n_bins)


def top1_auroc(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str]) -> float:
    return auroc(*top1_confidence(scores, gold, labels))
