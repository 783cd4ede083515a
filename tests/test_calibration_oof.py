"""Out-of-fold calibration data: stratified folds, the ``known`` rows, and ``calibration.known_only``
(the calibrator is fitted only on documents whose scoring model knew one of their gold labels)."""

from __future__ import annotations

import numpy as np
import pytest

from patentcpc.calibration import OutOfFoldScores, calibrate_model, fit_calibrator, multi_hot, out_of_fold_scores
from patentcpc.config import CalibrationConfig
from patentcpc.models.artifact import Manifest
from patentcpc.models.base import CPCModel


class _Seen:
    """A fitted stand-in: knows the labels it was trained on; scores 1 for them, else 0."""

    def __init__(self, gold):
        self.labels = sorted({c for g in gold for c in g})

    def raw_scores(self, texts):
        return np.ones((len(texts), len(self.labels)))


# four labels in pairs, plus a singleton label: with 2 stratified folds every pair is split
GOLD = [["A"], ["A"], ["B"], ["B"], ["C"], ["C"], ["D"], ["D"], ["S"]]
TEXTS = [f"doc {i}" for i in range(len(GOLD))]
LABELS = ["A", "B", "C", "D", "S"]


def _fold_of(stratify=True, seed=0):
    from patentcpc.calibration import _folds

    folds = _folds(GOLD, 2, seed, stratify)
    where = np.empty(len(GOLD), int)
    for k, rows in enumerate(folds):
        where[rows] = k
    return where


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_folds_split_every_label_pair(seed):
    where = _fold_of(seed=seed)
    assert sorted(np.bincount(where).tolist()) == [4, 5]
    for i in range(0, 8, 2):  # the two documents of a label never share a fold
        assert where[i] != where[i + 1]


def test_known_marks_rows_whose_fold_model_saw_a_gold_label():
    oof = out_of_fold_scores(lambda t, g: _Seen(g), TEXTS, GOLD, LABELS, folds=2, seed=0)
    assert isinstance(oof, OutOfFoldScores) and oof.shape == (9, 5)
    assert oof.known.tolist() == [True] * 8 + [False]  # only the singleton's label is never seen
    # unseen labels get the row's lowest score
    assert oof[8].tolist() == [1, 1, 1, 1, 1]
    assert np.asarray(oof).__class__ is np.ndarray and oof[:2].known is None


def test_random_folds_are_still_available():
    rnd = out_of_fold_scores(lambda t, g: _Seen(g), TEXTS, GOLD, LABELS, folds=3, seed=0, stratify=False)
    order = np.random.default_rng(0).permutation(9)
    fold_one = np.sort(order[0::3])
    seen = {c for i in range(9) if i not in fold_one for c in GOLD[i]}
    assert rnd.known[fold_one].tolist() == [bool(seen & set(GOLD[i])) for i in fold_one]


class _Plain(CPCModel):
    kind = "plain"


def _scores(n=300, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, 3))
    gold = [["L1"] if rng.random() < 1 / (1 + np.exp(-2 * r[0])) else ["L2"] for r in raw]
    return raw, gold


def test_known_only_fits_on_the_known_rows():
    raw, gold = _scores()
    labels = ["L0", "L1", "L2"]
    known = np.arange(len(raw)) % 3 != 0
    oof = raw.view(OutOfFoldScores)
    oof.known = known
    y = multi_hot(gold, labels)
    model = _Plain(Manifest(kind="plain", labels=labels, score_type="margin"))
    calibrate_model(model, oof, gold, CalibrationConfig(method="platt"))
    cal = model.manifest.extra["calibration"]
    sub = fit_calibrator(raw[known], y[known], "margin", "platt")
    everything = fit_calibrator(raw, y, "margin", "platt")
    assert (cal["a"], cal["b"]) == pytest.approx((sub.a, sub.b))
    assert abs(cal["a"] - everything.a) + abs(cal["b"] - everything.b) > 1e-3
    assert cal["info"]["n_docs"] == known.sum() and cal["info"]["n_docs_excluded"] == (~known).sum()

    model2 = _Plain(Manifest(kind="plain", labels=labels, score_type="margin"))
    calibrate_model(model2, oof, gold, CalibrationConfig(method="platt", known_only=False))
    assert model2.manifest.extra["calibration"]["a"] == pytest.approx(everything.a)


def test_known_only_on_validation_data_drops_documents_with_only_unknown_codes():
    raw, gold = _scores()
    gold = [g if i % 4 else ["Z99"] for i, g in enumerate(gold)]  # a code the model does not have
    labels = ["L0", "L1", "L2"]
    model = _Plain(Manifest(kind="plain", labels=labels, score_type="margin"))
    calibrate_model(model, raw, gold, CalibrationConfig(method="platt"))
    assert model.manifest.extra["calibration"]["info"]["n_docs_excluded"] == len(raw) // 4


def test_folds_fall_back_to_random_above_the_stratification_budget(monkeypatch):
    """Iterative stratification costs ~documents x labels; above the budget the folds are the seeded
    random partition (a 20k-document group-level run would otherwise spend minutes here)."""
    from patentcpc import calibration

    gold = [["A"], ["A"], ["B"], ["B"], ["C"], ["C"], ["D"], ["D"], ["E"]]
    order = np.random.default_rng(0).permutation(9)
    random_parts = [np.sort(order[k::2]).tolist() for k in range(2)]
    monkeypatch.setattr(calibration, "STRATIFY_MAX_CELLS", 9 * 5 - 1)
    assert [p.tolist() for p in calibration._folds(gold, 2, 0, True)] == random_parts
    monkeypatch.setattr(calibration, "STRATIFY_MAX_CELLS", 9 * 5)
    strat = calibration._folds(gold, 2, 0, True)
    where = np.zeros(9, dtype=int)
    for k, rows in enumerate(strat):
        where[rows] = k
    assert all(where[i] != where[i + 1] for i in range(0, 8, 2))
