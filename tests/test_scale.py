"""Scale rewrites checked against the straightforward definitions they replace (random data)."""

from __future__ import annotations

import numpy as np
import pytest

from patentcpc import metrics
from patentcpc.metrics import (
    binarize,
    evaluate_scores,
    hierarchy_accuracy_at_1,
    precision_recall_f1_at_k,
    threshold_metrics,
    tune_global_threshold,
    tune_label_thresholds,
    tune_label_thresholds_reference,
)

VOCAB = ["A01B", "A01C", "B65D", "G06F", "G06N", "H01L", "H04L", "H04W"]


def _random_case(seed: int, n: int = 300, rounded: bool = False):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, len(VOCAB))).astype(np.float32)
    if rounded:  # many ties
        scores = np.round(scores * 8) / 8
    gold = []
    for i in range(n):
        k = rng.integers(1, 4)
        labels = list(rng.choice(VOCAB, size=k, replace=False))
        scores[i, [VOCAB.index(c) for c in labels]] += 0.3 * rng.random()
        if rng.random() < 0.05:
            labels.append("Y02E")  # a gold label outside the vocabulary
        gold.append(labels)
    return scores, gold


@pytest.mark.parametrize("seed,rounded,ratio", [(0, False, 3.0), (1, True, 3.0), (2, False, float("inf")),
                                                (3, True, float("inf")), (4, False, 1.5), (5, True, 1.0)])
def test_sorted_label_thresholds_equal_the_quadratic_definition(seed, rounded, ratio, monkeypatch):
    scores, gold = _random_case(seed, rounded=rounded)
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 700)  # several column blocks
    got = tune_label_thresholds(scores, gold, VOCAB, 0.42, min_support=5, max_predicted_ratio=ratio)
    ref = tune_label_thresholds_reference(scores, gold, VOCAB, 0.42, min_support=5, max_predicted_ratio=ratio)
    np.testing.assert_array_equal(got, ref)
    assert (got != 0.42).any()
    # and the F1 each threshold reaches is the best any allowed threshold reaches
    for j in range(len(VOCAB)):
        t = np.array([VOCAB[j] in g for g in gold])
        assert (scores[:, j] >= got[j]).sum() <= max(1.0, ratio) * t.sum()
        f1 = 2 * (t & (scores[:, j] >= got[j])).sum() / ((scores[:, j] >= got[j]).sum() + t.sum())
        assert all(f1 >= 2 * (t & (scores[:, j] >= c)).sum() / ((scores[:, j] >= c).sum() + t.sum())
                   for c in np.unique(scores[:, j]) if (scores[:, j] >= c).sum() <= max(1.0, ratio) * t.sum())


def test_label_thresholds_never_flood_a_label_a_weak_model_cannot_rank():
    """Scores unrelated to the gold labels: the best unconstrained F1 of a rare label is reached by
    predicting it everywhere; the tuned threshold predicts it for at most 3 x its positives."""
    rng = np.random.default_rng(0)
    n = 2000
    scores = rng.random((n, 2)).astype(np.float32)
    gold = [["A01B"] if rng.random() < 0.05 else ["H04L"] for _ in range(n)]
    free = tune_label_thresholds(scores, gold, ["A01B", "H04L"], 0.9, min_support=5, max_predicted_ratio=np.inf)
    capped = tune_label_thresholds(scores, gold, ["A01B", "H04L"], 0.9, min_support=5)
    positives = sum(g == ["A01B"] for g in gold)
    assert (scores[:, 0] >= free[0]).sum() > 10 * positives  # the flood the cap prevents
    assert (scores[:, 0] >= capped[0]).sum() <= 3 * positives


def test_label_thresholds_keep_the_global_one_below_min_support():
    scores, gold = _random_case(5, n=20)
    got = tune_label_thresholds(scores, gold, VOCAB, 0.42, min_support=50)
    assert (got == 0.42).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_threshold_equals_the_loop_over_candidates(seed, monkeypatch):
    scores, gold = _random_case(seed, rounded=seed == 1)
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 500)
    cands = np.unique(np.quantile(scores, np.linspace(0.5, 0.99, 25)))[::-1]  # any order
    best = (float(cands[0]), -1.0)
    for t in cands:
        f1 = threshold_metrics(binarize(scores, t), gold, VOCAB)["micro_f1"]
        if f1 > best[1]:
            best = (float(t), f1)
    got = tune_global_threshold(scores, gold, VOCAB, candidates=cands)
    assert got[0] == best[0]
    assert got[1] == pytest.approx(best[1], rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_evaluation_equals_the_dense_metrics(seed, monkeypatch):
    scores, gold = _random_case(seed, rounded=seed == 1)
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 333)  # many row blocks
    thr = np.linspace(0.3, 0.9, len(VOCAB))
    got = evaluate_scores(scores, gold, VOCAB, thr)
    s64 = np.asarray(scores, dtype=np.float64)
    ref = {"n_docs": len(gold), "n_labels": len(VOCAB), "n_gold_labels_unseen": 1}
    ref.update(precision_recall_f1_at_k(s64, gold, VOCAB))
    ref.update(threshold_metrics(binarize(s64, thr), gold, VOCAB))
    ref.update(hierarchy_accuracy_at_1(s64, gold, VOCAB))
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def _costs_loop(distances, targets):
    """The row-by-row definition the vectorised HierarchicalLoss.costs replaced."""
    import torch

    big = torch.full_like(distances, float("inf"))
    rows = []
    for t in targets.bool():
        if t.any():
            rows.append(torch.where(t.unsqueeze(1), distances, big).min(dim=0).values)
        else:
            rows.append(torch.zeros(distances.shape[0]))
    return torch.stack(rows)


def test_vectorised_hierarchical_costs_equal_the_row_loop():
    import torch

    from patentcpc.cpc import distance_matrix
    from patentcpc.losses import HierarchicalLoss

    loss = HierarchicalLoss(np.asarray(distance_matrix(VOCAB)))
    rng = np.random.default_rng(0)
    targets = torch.as_tensor(rng.random((40, len(VOCAB))) < 0.2, dtype=torch.float32)
    targets[3] = 0  # a document without a gold label in the vocabulary
    targets[4] = 1
    got = loss.costs(targets)
    torch.testing.assert_close(got, _costs_loop(loss.distances, targets), rtol=0, atol=0)
    assert got[3].abs().sum() == 0 and got.max() > 0


def test_label_counts_of_sparse_and_dense_targets_agree():
    from scipy import sparse

    from patentcpc.losses import label_counts

    y = (np.random.default_rng(1).random((30, 6)) < 0.3).astype(np.float32)
    np.testing.assert_array_equal(label_counts(sparse.csr_matrix(y)), label_counts(y))
    assert label_counts(y).sum() > 0


def test_recipe_auto_switches_to_the_reference_above_the_size_threshold():
    from patentcpc.config import TransformerConfig
    from patentcpc.training.finetune import resolve_recipe

    small, name = resolve_recipe(TransformerConfig(), 20_000)
    assert name == "few-shot" and small == TransformerConfig()
    big, name = resolve_recipe(TransformerConfig(), 20_001)
    assert name == "reference"
    assert (big.loss, big.lr, big.batch_size, big.epochs) == ("bce", 8e-5, 32, 2.0)
    assert big.head_init == "prior" and big.wise_alpha is None and big.refit_head is False
    # explicit settings win; "reference" applies at any size, "few-shot" never
    mine, name = resolve_recipe(TransformerConfig(recipe="reference", lr=3e-5, loss="focal"), 10)
    assert name == "reference" and mine.lr == 3e-5 and mine.loss == "focal" and mine.batch_size == 32
    assert resolve_recipe(TransformerConfig(recipe="few-shot"), 10**7)[1] == "few-shot"


def test_sparse_labels_match_multi_hot():
    import datasets

    from patentcpc.training.batches import multi_hot, sparse_labels

    ids = [[0, 2], [1], [], [2, 2, 0], [3]]
    ds = datasets.Dataset.from_dict({"label_ids": ids})
    y = sparse_labels(ds, 4, batch_size=2)
    np.testing.assert_array_equal(y.toarray(), multi_hot(ids, 4))
    assert y.dtype == np.float32 and y.nnz == 6


def test_rarest_label_split_is_stratified_and_a_partition():
    import datasets

    from patentcpc.data import PatentData, split_data

    rng = np.random.default_rng(0)
    codes = [f"A{i:02d}B" for i in range(40)]
    p = 1.0 / np.arange(1, 41)
    labels = [list(rng.choice(codes, size=rng.integers(1, 4), replace=False, p=p / p.sum())) for _ in range(5000)]
    ds = datasets.Dataset.from_dict({"id": [str(i) for i in range(5000)], "text": ["x"] * 5000, "labels": labels})
    data = PatentData(ds, "mem", ["text"], "labels", None, "subclass")
    parts = split_data(data, (0.8, 0.1, 0.1), seed=3, stratify_max_rows=100)
    ids = [set(x.ids) for x in parts]
    assert sum(len(s) for s in ids) == 5000 and len(set.union(*ids)) == 5000
    assert [len(s) for s in ids] == pytest.approx([4000, 500, 500], abs=60)
    # the rarest labels reach every part in proportion
    for code in codes[-10:]:
        total = sum(code in ls for ls in labels)
        valid = sum(code in ls for ls in parts[1].labels)
        assert abs(valid - 0.1 * total) <= 3, (code, total, valid)
    again = split_data(data, (0.8, 0.1, 0.1), seed=3, stratify_max_rows=100)
    assert [x.ids for x in again] == [x.ids for x in parts]


def _linear_corpus(n: int = 240):
    rng = np.random.default_rng(0)
    words = {"A01B": "plough soil tines harrow", "H01L": "transistor wafer gate oxide",
             "G06F": "processor memory cache instruction", "H04W": "wireless handover cell antenna"}
    texts, labels = [], []
    for _ in range(n):
        labs = list(rng.choice(list(words), size=rng.integers(1, 3), replace=False))
        texts.append(" ".join(rng.choice(" ".join(words[c] for c in labs).split(), 8)) + " the a of")
        labels.append(labs)
    return texts, labels


def test_linear_fit_in_threads_equals_one_thread():
    from patentcpc.config import LinearConfig
    from patentcpc.kinds.linear.model import LinearCPCModel

    texts, labels = _linear_corpus()
    one = LinearCPCModel.fit(texts, labels, LinearConfig(n_jobs=1))
    two = LinearCPCModel.fit(texts, labels, LinearConfig(n_jobs=2, parallel_min_docs=10))
    np.testing.assert_allclose(one.scores(texts[:20]), two.scores(texts[:20]), rtol=1e-6)
    assert (one.scores(texts[:20]).argmax(1) == [one.labels.index(ls[0]) if len(ls) == 1 else -1
                                                  for ls in labels[:20]]).sum() > 0


def test_omikuji_learner_trains_saves_and_loads(tmp_path):
    import json

    from patentcpc.config import LinearConfig
    from patentcpc.errors import ModelError
    from patentcpc.kinds.omikuji.model import OmikujiCPCModel
    from patentcpc.registry import load_model

    texts, labels = _linear_corpus()
    model = OmikujiCPCModel.fit(texts, labels, LinearConfig(learner="omikuji", n_jobs=1))
    s = model.scores(texts[:40])
    assert s.shape == (40, 4) and s.max() > 0
    top1 = [model.labels[i] for i in s.argmax(1)]
    assert np.mean([t in g for t, g in zip(top1, labels[:40], strict=True)]) > 0.8
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.pkl")) and not list((tmp_path / "m").rglob("*.skops"))
    again = load_model(tmp_path / "m")
    np.testing.assert_allclose(again.scores(texts[:40]), s, rtol=1e-5)  # its text format rounds
    assert model.manifest.extra["tfidf"]["title_weight"] == 10 and again.vectorizer.analyzer.title_weight == 10
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    good = json.loads(json.dumps(manifest))
    del manifest["extra"]["tfidf"]["title_weight"]  # saved before linear.title_weight: the title counts once
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(tmp_path / "m").vectorizer.analyzer.title_weight == 1
    bad = [("title_weight", 0), ("title_weight", "3"), ("title_weight", 2.0), ("ngram_max", "abc"),
           ("min_df", 0), ("max_features", 0), ("sublinear_tf", "no"), ("stemmer", "klingon")]
    for key, value in bad:  # each a one-line ModelError naming the manifest and the field
        manifest = json.loads(json.dumps(good))
        manifest["extra"]["tfidf"][key] = value
        (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match=f"manifest.json: extra.tfidf.{key}"):
            load_model(tmp_path / "m")


def test_auto_learner_switches_to_label_trees_at_tree_min_docs():
    from patentcpc.config import LinearConfig
    from patentcpc.kinds.linear.trainer import resolve_learner

    assert resolve_learner(LinearConfig(), 9_999) == "ovr"
    assert resolve_learner(LinearConfig(), 10_000) == "omikuji"
    assert resolve_learner(LinearConfig(tree_min_docs=100), 150) == "omikuji"
    assert resolve_learner(LinearConfig(learner="ovr", tree_min_docs=100), 10**6) == "ovr"
    assert resolve_learner(LinearConfig(learner="omikuji"), 10) == "omikuji"


def test_holdout_split_is_seeded_disjoint_and_bounded():
    from patentcpc.kinds.linear.trainer import holdout_split

    texts = [f"doc {i}" for i in range(1000)]
    labels = [[f"L{i % 7}"] for i in range(1000)]
    kept_t, kept_l, (held_t, held_l) = holdout_split(texts, labels, 50, seed=3)
    assert len(held_t) == 50 and len(kept_t) == 950 and not set(held_t) & set(kept_t)
    assert all(lab == [f"L{int(t.split()[1]) % 7}"] for t, lab in zip(held_t + kept_t, held_l + kept_l, strict=True))
    assert holdout_split(texts, labels, 50, seed=3)[2][0] == held_t
    assert holdout_split(texts, labels, 50, seed=4)[2][0] != held_t
    assert len(holdout_split(texts, labels, 10_000, seed=3)[2][0]) == 100  # at most a tenth


def test_holdout_split_never_takes_a_rare_label_out_of_training():
    from patentcpc.kinds.linear.trainer import holdout_split

    texts = [f"doc {i}" for i in range(2000)]
    labels = [[f"L{i % 5}"] + ([f"R{i}"] if i % 50 == 0 else []) for i in range(2000)]  # R*: once each
    kept_t, kept_l, (held_t, held_l) = holdout_split(texts, labels, 500, seed=0)
    assert len(held_t) == 200
    assert not any(c.startswith("R") for ls in held_l for c in ls)
    assert {c for ls in kept_l for c in ls} == {c for ls in labels for c in ls}


def test_large_linear_run_fits_once_and_calibrates_on_a_held_out_part(tmp_path, monkeypatch):
    """Above calibration.cv_max_docs the linear model is fitted once (no k-fold refits) and
    calibrated on held-out documents it never saw; auto picks label trees above tree_min_docs."""
    import json

    from patentcpc.config import CalibrationConfig, LinearConfig, TrainConfig
    from patentcpc.kinds.omikuji.model import OmikujiCPCModel
    from patentcpc.registry import load_model, train_model

    texts, labels = _linear_corpus(400)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "cpc_ids": ",".join(ls)}) + "\n"
                            for t, ls in zip(texts, labels, strict=True)))
    fits = []
    real_fit = OmikujiCPCModel.fit.__func__

    def counting_fit(cls, t, *a, **k):
        fits.append(len(t))
        return real_fit(cls, t, *a, **k)

    monkeypatch.setattr(OmikujiCPCModel, "fit", classmethod(counting_fit))
    cfg = TrainConfig(model="tfidf", linear=LinearConfig(tree_min_docs=300, n_jobs=1),
                      calibration=CalibrationConfig(cv_max_docs=200, holdout_docs=30))
    train_model(cfg, str(data), output=tmp_path / "m")
    assert fits == [370]  # one fit, on all but the 30 held-out documents
    model = load_model(tmp_path / "m")
    assert model.kind == "omikuji" and model.manifest.training_data["n_calibration_holdout"] == 30
    assert model.manifest.config["linear"]["learner"] == "omikuji"  # saved resolved
    assert model.calibrator is not None
    top = model.predict(texts[:5], top_k=1)
    assert all(0.0 <= p[0].score <= 1.0 for p in top)


def test_omikuji_logs_never_reach_stdout(tmp_path, capfd):
    """Omikuji's Rust logger prints to file descriptor 1; training and loading must keep stdout
    clean (``evaluate --json`` and predictions are read from it)."""
    from patentcpc.config import LinearConfig
    from patentcpc.kinds.omikuji.model import OmikujiCPCModel
    from patentcpc.registry import load_model

    texts, labels = _linear_corpus()
    model = OmikujiCPCModel.fit(texts, labels, LinearConfig(learner="omikuji", n_jobs=1))
    model.save(tmp_path / "m")
    load_model(tmp_path / "m").scores(texts[:3])
    out, err = capfd.readouterr()
    assert "omikuji" not in out and "INFO" not in out, out
    assert "omikuji" in err  # still shown, on stderr


@pytest.mark.parametrize("tied_rows", [200, 170])
def test_label_thresholds_keep_the_global_one_when_no_value_is_allowed(tied_rows):
    """A tie group above the cap (e.g. Omikuji's zeros outside its top codes): no per-label value
    is allowed, so the global threshold stays; never the column's lowest score (every document)."""
    n = 200
    scores = np.zeros((n, 1), dtype=np.float32)
    scores[:tied_rows, 0] = 0.8
    gold = [["A01B"] if i % 4 == 0 else ["H04L"] for i in range(n)]  # 50 positives
    for fn in (tune_label_thresholds, tune_label_thresholds_reference):
        assert fn(scores, gold, ["A01B"], 0.5, min_support=5).tolist() == [0.5]


def test_label_thresholds_keep_the_global_one_when_no_value_reaches_a_hit():
    scores = np.zeros((100, 1), dtype=np.float32)
    scores[:10, 0] = np.linspace(0.9, 0.99, 10)  # the top scores are all misses
    gold = [["A01B"] if i >= 90 else ["H04L"] for i in range(100)]
    for fn in (tune_label_thresholds, tune_label_thresholds_reference):
        assert fn(scores, gold, ["A01B"], 0.5, min_support=5).tolist() == [0.5]


def test_omikuji_log_redirect_survives_closed_stdout():
    """A process whose stdout is closed (started with ``1>&-``) still trains/loads Omikuji models."""
    import subprocess
    import sys

    code = ("import os, sys\nos.close(1)\nfrom patentcpc.kinds.omikuji.model import logs_to_stderr\n"
            "with logs_to_stderr():\n    pass\nprint('done', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0 and "done" in r.stderr, r.stderr


def test_scale_settings_refuse_negative_sizes():
    from patentcpc.config import CalibrationConfig, LinearConfig
    from patentcpc.errors import ConfigError

    with pytest.raises(ConfigError, match="tree_min_docs"):
        LinearConfig(tree_min_docs=-5)
    with pytest.raises(ConfigError, match="cv_max_docs"):
        CalibrationConfig(cv_max_docs=-1)
    LinearConfig(tree_min_docs=0)
    CalibrationConfig(cv_max_docs=0)
