"""Metrics against scikit-learn and hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from patentcpc.metrics import (
    binarize,
    evaluate_scores,
    hierarchy_accuracy_at_1,
    label_ranking_average_precision,
    per_label_report,
    precision_recall_f1_at_k,
    threshold_metrics,
    top_k_indices,
    tune_global_threshold,
    tune_label_thresholds,
)

VOCAB = ["A01B", "A01C", "H04L", "H04W", "G06F"]


def _random_case(seed: int, n: int = 60, unseen: bool = True):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, len(VOCAB)))
    extra = ["Y02E", "B29C"] if unseen else []
    pool = VOCAB + extra
    gold = [list(dict.fromkeys(rng.choice(pool, size=rng.integers(1, 4)))) for _ in range(n)]
    return scores, gold


def _sk_topk(scores, gold, vocab, k):
    """Independent P@k/R@k/F1@k: micro P/R/F1 (scikit-learn) of the top-k binarization, with gold
    labels unknown to the vocabulary as extra columns that are never predicted."""
    columns = list(vocab) + sorted({c for g in gold for c in g} - set(vocab))
    y_true = np.array([[c in g for c in columns] for g in gold])
    y_pred = np.zeros_like(y_true)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    for i, row in enumerate(order):
        y_pred[i, row] = True
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    return p, r, f


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("unseen", [True, False])
def test_top_k_metrics_match_sklearn(seed, unseen):
    scores, gold = _random_case(seed, unseen=unseen)
    got = precision_recall_f1_at_k(scores, gold, VOCAB)
    for k in (1, 3, 5):
        p, r, f = _sk_topk(scores, gold, VOCAB, k)
        assert got[f"precision@{k}"] == pytest.approx(p)
        assert got[f"recall@{k}"] == pytest.approx(r)
        assert got[f"f1@{k}"] == pytest.approx(f)


def test_top_k_hand_computed():
    # doc 1: gold {A01B, Y02E(unseen)}, top-1 A01B (hit); doc 2: gold {H04L}, top-1 H04W (miss),
    # top-3 {H04W, H04L, G06F} (hit)
    scores = np.array([[0.9, 0.1, 0.0, 0.0, 0.2], [0.0, 0.1, 0.5, 0.8, 0.3]])
    gold = [["A01B", "Y02E"], ["H04L"]]
    m = precision_recall_f1_at_k(scores, gold, VOCAB, ks=(1, 3))
    assert m["precision@1"] == pytest.approx(1 / 2)
    assert m["recall@1"] == pytest.approx(1 / 3)  # 3 gold labels, the unseen one included
    assert m["f1@1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert m["precision@3"] == pytest.approx(2 / 6)
    assert m["recall@3"] == pytest.approx(2 / 3)


def test_top_k_more_than_vocab():
    # k larger than the vocabulary: P@k still divides by k*N (as the field reports it)
    scores = np.array([[0.2, 0.9]])
    m = precision_recall_f1_at_k(scores, [["H04L"]], ["G06F", "H04L"], ks=(5,))
    assert m["precision@5"] == pytest.approx(1 / 5) and m["recall@5"] == 1.0


def test_top_k_indices_order_and_ties():
    s = np.array([[0.1, 0.5, 0.3, 0.5], [1.0, 1.0, 1.0, 1.0], [-1.0, -2.0, 0.0, 5.0]])
    assert top_k_indices(s, 2).tolist() == [[1, 3], [0, 1], [3, 2]]
    assert top_k_indices(s, 10).shape == (3, 4)
    assert top_k_indices(np.zeros((0, 4)), 3).shape == (0, 3)
    # same result on repeated calls and on a large random matrix vs a full stable sort
    big = np.round(np.random.default_rng(0).normal(size=(200, 50)), 1)  # many ties
    assert (top_k_indices(big, 5) == np.argsort(-big, axis=1, kind="stable")[:, :5]).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_metrics_match_sklearn(seed):
    scores, gold = _random_case(seed)
    pred = binarize(scores, 0.5)
    got = threshold_metrics(pred, gold, VOCAB)
    columns = VOCAB + sorted({c for g in gold for c in g} - set(VOCAB))
    y_true = np.array([[c in g for c in columns] for g in gold])
    y_pred = np.zeros_like(y_true)
    y_pred[:, : len(VOCAB)] = pred
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    assert (got["micro_precision"], got["micro_recall"], got["micro_f1"]) == pytest.approx((p, r, f))
    active = [j for j in range(len(columns)) if y_true[:, j].any() or y_pred[:, j].any()]
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", labels=active, zero_division=0)
    assert (got["macro_precision"], got["macro_recall"], got["macro_f1"]) == pytest.approx((p, r, f))
    assert got["mean_predicted_labels"] == pytest.approx(pred.sum(1).mean())


def test_macro_ignores_labels_absent_from_gold_and_predictions():
    pred = np.array([[True, False, False], [False, False, False]])
    gold = [["A"], ["B"]]
    m = threshold_metrics(pred, gold, ["A", "B", "C"])  # C is neither gold nor predicted
    assert m["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["micro_precision"] == 1.0 and m["micro_recall"] == 0.5


def test_binarize_thresholds():
    s = np.array([[0.2, 0.6, 0.4], [0.1, 0.1, 0.3]])
    assert binarize(s, 0.5).tolist() == [[False, True, False], [False, False, False]]
    assert binarize(s, np.array([0.1, 0.9, 0.3])).tolist() == [[True, False, True], [True, False, True]]
    assert binarize(s, 0.5, at_least_one=True).tolist() == [[False, True, False], [False, False, True]]


def test_hierarchy_accuracy():
    vocab = ["A01B", "H04L", "H04W", "G06F"]
    scores = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    gold = [["H04L"], ["H04L"], ["H01L"], ["G11B", "A01B"]]
    m = hierarchy_accuracy_at_1(scores, gold, vocab)
    # section: H=H, H=H, A!=H, G=G -> 3/4 ; class: H04=H04, H04=H04, A01!=H01, G06!=G11 -> 2/4
    assert m == {"section_accuracy@1": 0.75, "class_accuracy@1": 0.5}


def test_evaluate_scores_keys_and_shape_check():
    scores, gold = _random_case(3)
    m = evaluate_scores(scores, gold, VOCAB, threshold=0.0)
    for key in ("n_docs", "n_labels", "precision@1", "recall@1", "f1@1", "f1@3", "f1@5", "micro_precision",
                "micro_recall", "micro_f1", "macro_f1", "section_accuracy@1", "class_accuracy@1"):
        assert key in m
    assert m["n_docs"] == 60 and m["n_labels"] == 5 and m["n_gold_labels_unseen"] == 2
    with pytest.raises(ValueError, match="shape"):
        evaluate_scores(scores[:, :3], gold, VOCAB)


def test_per_label_report_matches_sklearn():
    scores, gold = _random_case(4)
    pred = binarize(scores, 0.3)
    rows = {r["label"]: r for r in per_label_report(pred, gold, VOCAB)}
    assert rows["Y02E"]["in_vocab"] is False and rows["Y02E"]["predicted"] == 0
    y_true = np.array([[c in g for c in VOCAB] for g in gold])
    p, r, f, support = precision_recall_fscore_support(y_true, pred, average=None, zero_division=0)
    for j, code in enumerate(VOCAB):
        assert (rows[code]["precision"], rows[code]["recall"], rows[code]["f1"]) == pytest.approx((p[j], r[j], f[j]))
        assert rows[code]["support"] == support[j]
    supports = [r["support"] for r in per_label_report(pred, gold, VOCAB)]
    assert supports == sorted(supports, reverse=True)


def test_tune_global_threshold_finds_best():
    scores, gold = _random_case(5, unseen=False)
    cands = np.linspace(-2, 2, 41)
    t, f = tune_global_threshold(scores, gold, VOCAB, candidates=cands)
    y_true = np.array([[c in g for c in VOCAB] for g in gold])
    brute = max(cands, key=lambda c: f1_score(y_true, scores >= c, average="micro", zero_division=0))
    assert t == pytest.approx(brute)
    assert f == pytest.approx(f1_score(y_true, scores >= t, average="micro"))
    t_default, _ = tune_global_threshold(scores, gold, VOCAB)
    assert np.isfinite(t_default)


def test_tune_label_thresholds():
    vocab = ["A", "B"]
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.1], [0.7, 0.3], [0.6, 0.0]])
    gold = [["A"], ["A"], ["B"], [], ["A"], ["A", "B"]]
    th = tune_label_thresholds(scores, gold, vocab, global_threshold=0.5, min_support=3)
    # A: positives at 0.9, 0.8, 0.7, 0.6 -> threshold 0.6 gives F1 1.0 ; B has 2 positives < min_support
    assert th.tolist() == [0.6, 0.5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_ranking_average_precision_matches_sklearn(seed):
    from sklearn.metrics import label_ranking_average_precision_score

    rng = np.random.default_rng(seed)
    y = rng.random((60, 9)) < 0.25
    y[0] = True  # every label gold, and a document with none: both count 1 in scikit-learn
    y[1] = False
    scores = np.round(rng.random((60, 9)), 1)  # ties among scores
    scores[2] = 0.5  # a row of equal scores
    want = label_ranking_average_precision_score(y, scores)
    assert label_ranking_average_precision(y, scores) == pytest.approx(want, abs=1e-12)
    # the memory bound splits the gold entries into chunks: the same figure
    assert label_ranking_average_precision(y, scores, max_elements=20) == pytest.approx(want, abs=1e-12)
    assert label_ranking_average_precision(y[3:4], scores[3:4]) == pytest.approx(
        label_ranking_average_precision_score(y[3:4], scores[3:4]), abs=1e-12)
