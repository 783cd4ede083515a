"""Calibration: Platt / temperature / isotonic against scikit-learn, top-1 ECE by hand, the
calibration layer of CPCModel, top-k cap and the assigned flag, a calibrated TF-IDF model."""

from __future__ import annotations

import numpy as np
import pytest

from patentcpc.calibration import (
    Calibrator,
    auroc,
    ece,
    fit_calibrator,
    fit_platt,
    multi_hot,
    top1_confidence,
)
from patentcpc.config import CalibrationConfig, TrainConfig
from patentcpc.errors import ConfigError, ModelError
from patentcpc.metrics import evaluate_scores
from patentcpc.models.artifact import Manifest
from patentcpc.models.base import CPCModel
from patentcpc.registry import load_model, train_model
from patentcpc.streaming import format_predictions


def _noisy(n=400, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * 2
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.7 * z - 0.6)))).astype(float)
    return z, y


def test_platt_matches_sklearn_unpenalized_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    z, y = _noisy()
    a, b = fit_platt(z, y)
    ref = LogisticRegression(penalty=None, tol=1e-10, max_iter=1000).fit(z[:, None], y)
    assert a == pytest.approx(ref.coef_[0, 0], rel=1e-4)
    assert b == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-5)
    assert 1.2 < a < 2.2  # recovers the generating slope roughly


def test_temperature_has_no_bias_and_is_the_likelihood_optimum():
    from scipy.optimize import minimize_scalar

    z, y = _noisy(seed=1)
    a, b = fit_platt(z, y, fit_bias=False)
    assert b == 0.0

    def nll(t):
        s = t * z
        return np.sum(np.logaddexp(0, s) - y * s)

    assert a == pytest.approx(minimize_scalar(nll, bounds=(0.01, 10), method="bounded").x, rel=1e-3)


def test_isotonic_transform_matches_sklearn_predict():
    from sklearn.isotonic import IsotonicRegression

    z, y = _noisy(seed=2)
    cal = fit_calibrator(z[:, None], y[:, None], "margin", "isotonic", fit_on="all")
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(z, y)
    grid = np.linspace(-8, 8, 101)
    np.testing.assert_allclose(cal.transform(grid), ref.predict(grid), atol=1e-12)
    back = Calibrator.from_dict(cal.to_dict())  # JSON numbers only
    np.testing.assert_allclose(back.transform(grid), ref.predict(grid), atol=1e-12)


def test_platt_on_probabilities_uses_logits():
    z, y = _noisy(seed=3)
    p = 1 / (1 + np.exp(-z))
    cal_p = fit_calibrator(p[:, None], y[:, None], "probability", "platt", fit_on="all")
    cal_z = fit_calibrator(z[:, None], y[:, None], "margin", "platt", fit_on="all")
    np.testing.assert_allclose(cal_p.transform(p[:5]), cal_z.transform(z[:5]), rtol=1e-5)


def test_fit_on_top_uses_the_top_k_pairs_of_each_row():
    raw = np.array([[3.0, 2.0, -1.0, -2.0], [0.5, -0.5, 1.0, -3.0]])
    y = np.array([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=float)
    cal = fit_calibrator(raw, y, "margin", "platt", fit_on="top", top_k=2)
    assert cal.info["n_pairs"] == 4
    assert fit_calibrator(raw, y, "margin", "platt", fit_on="all").info["n_pairs"] == 8


def test_per_label_maps_only_for_supported_labels():
    rng = np.random.default_rng(4)
    raw = rng.normal(size=(200, 3))
    y = np.zeros((200, 3))
    y[:, 0] = raw[:, 0] + rng.normal(size=200) > 0.5  # plenty of positives
    y[:3, 2] = 1  # three positives: too few for its own map
    cal = fit_calibrator(raw, y, "margin", "platt", "per_label", fit_on="all", min_support=10)
    assert cal.label_a[0] is not None and cal.label_a[1] is None and cal.label_a[2] is None
    out = cal.transform(raw)
    a, b = cal.label_a[0], cal.label_b[0]
    np.testing.assert_allclose(out[:, 0], 1 / (1 + np.exp(-(a * raw[:, 0] + b))))
    np.testing.assert_allclose(out[:, 2], 1 / (1 + np.exp(-(cal.a * raw[:, 2] + cal.b))))


def test_ece_by_hand():
    conf = np.array([0.05, 0.15, 0.18, 0.55, 0.95, 0.99])
    hit = np.array([0, 1, 0, 1, 1, 0])
    # bins: [0,.1): {.05|0} -> |0-.05|; [.1,.2): {.15,.18|1,0} -> |.5-.165|; [.5,.6): {.55|1} -> .45;
    # [.9,1]: {.95,.99|1,0} -> |.5-.97|
    want = (1 * 0.05 + 2 * 0.335 + 1 * 0.45 + 2 * 0.47) / 6
    assert ece(conf, hit) == pytest.approx(want)
    assert ece(np.array([1.0]), np.array([1])) == 0.0  # 1.0 falls in the last bin


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    conf = np.round(rng.random(300), 2)  # ties
    hit = (rng.random(300) < conf).astype(int)
    assert auroc(conf, hit) == pytest.approx(roc_auc_score(hit, conf))


def test_top1_confidence_and_evaluate_scores_report_ece_for_probabilities_only():
    labels = ["A01B", "H01L", "H04W"]
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.6], [0.1, 0.3, 0.4]])
    gold = [["A01B"], ["H04W"], ["H04W", "H01L"]]
    conf, hit = top1_confidence(scores, gold, labels)
    np.testing.assert_allclose(conf, [0.9, 0.7, 0.4])
    np.testing.assert_array_equal(hit, [1, 0, 1])
    m = evaluate_scores(scores, gold, labels)
    assert m["ece@1"] == pytest.approx(ece(conf, hit))
    assert "ece@1" not in evaluate_scores(scores * 5 - 1, gold, labels)  # margins: no ECE


def test_calibrator_from_dict_rejects_bad_maps():
    with pytest.raises(ModelError):
        Calibrator.from_dict({"method": "magic"})
    with pytest.raises(ModelError):
        Calibrator.from_dict({"method": "isotonic", "x": [0, 1], "y": [0.5]})
    with pytest.raises(ConfigError):
        CalibrationConfig(method="beta")


class _Margins(CPCModel):
    kind = "test-margins"

    def raw_scores(self, texts, batch_size=64, progress=False):
        return np.array([[float(len(t)) - 5, 0.0, -2.0] for t in texts], dtype=np.float32)


class _Child(_Margins):
    kind = "test-child"

    def raw_scores(self, texts, batch_size=64, progress=False):
        return super().raw_scores(texts) + 1.0


def _manifest(cal=None):
    return Manifest(kind="test", labels=["A01B", "H01L", "H04W"], score_type="margin",
                    extra={"calibration": cal.to_dict()} if cal else {})


def test_every_kind_scores_through_the_stored_calibrator():
    cal = Calibrator(method="platt", score_type="margin", a=0.5, b=-1.0)
    m = _Margins(_manifest(cal))
    raw = m.raw_scores(["abcdefgh"])
    np.testing.assert_allclose(raw, [[3.0, 0.0, -2.0]])
    np.testing.assert_allclose(m.scores(["abcdefgh"]), 1 / (1 + np.exp(-(0.5 * raw - 1.0))), rtol=1e-6)
    assert m.output_score_type == "probability"
    uncal = _Margins(_manifest())
    np.testing.assert_allclose(uncal.scores(["abcdefgh"]), raw)
    assert uncal.output_score_type == "margin"
    child = _Child(_manifest(cal))  # a subclass calling its parent's raw_scores is calibrated once
    np.testing.assert_allclose(child.scores(["abcdefgh"]), 1 / (1 + np.exp(-(0.5 * (raw + 1) - 1.0))), rtol=1e-6)


def test_calibration_is_the_base_class_step_not_a_renamed_method():
    """``scores`` is CPCModel's own (calibrate after raw_scores) for every kind: no kind replaces it,
    and a kind's raw_scores keeps its own defaults (batch_size) when the caller leaves them out."""
    from patentcpc.registry import kinds

    for kind in kinds().values():
        if kind.model.startswith("patentcpc."):  # patentcpc's own kinds
            cls = kind.model_class()
            assert cls.scores is CPCModel.scores and cls.raw_scores is not CPCModel.raw_scores, kind.name
    assert _Margins.scores is CPCModel.scores and "raw_scores" in _Margins.__dict__
    seen = {}

    class _Batches(_Margins):
        def raw_scores(self, texts, batch_size=7, progress=False):
            seen["batch_size"] = batch_size
            return super().raw_scores(texts)

    m = _Batches(_manifest(Calibrator(method="platt", score_type="margin", a=0.5, b=-1.0)))
    np.testing.assert_allclose(m.scores(["abcdefgh"]), m.calibrate(m.raw_scores(["abcdefgh"])))
    assert seen["batch_size"] == 7
    m.predict_scores(["abcdefgh"], batch_size=3)
    assert seen["batch_size"] == 3


def test_top_k_caps_and_best_code_is_always_assigned():
    m = _Margins(Manifest(kind="t", labels=[f"A0{i}B" for i in range(1, 8)], threshold=0.3))
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35],    # all above threshold
                       [0.1, 0.05, 0.2, 0.0, 0.0, 0.0, 0.0]])   # none above threshold
    for k in (1, 3, 5):
        res = format_predictions(m, scores, k)
        assert [len(r["predictions"]) for r in res] == [k, k]
        assert [p["score"] for p in res[0]["predictions"]] == sorted(scores[0], reverse=True)[:k]
    res = format_predictions(m, scores, 3)
    assert [p["assigned"] for p in res[0]["predictions"]] == [True, True, True]
    assert [p["assigned"] for p in res[1]["predictions"]] == [True, False, False]
    assert res[1]["labels"] == ["A03B"] and res[1]["predictions"][0]["above_threshold"]


def test_tfidf_training_calibrates_out_of_fold(tiny_jsonl, tmp_path):
    cfg = TrainConfig(model="tfidf", calibration=CalibrationConfig(cv_folds=3))
    result = train_model(cfg, str(tiny_jsonl), None, tmp_path / "m")
    m = load_model(tmp_path / "m")
    cal = m.manifest.extra["calibration"]
    assert cal["info"]["n_docs"] == 24 and cal["info"]["fit_on"]
    # the default platt-gap, or (24 documents) its refusal of a negative gap weight: plain Platt
    assert cal["method"] == "platt-gap" or (cal["method"] == "platt"
                                            and cal["info"]["refused"]["method"] == "platt-gap")
    s = m.scores(["Plough with tines for soil", "Semiconductor transistor gate oxide"])
    assert s.min() >= 0 and s.max() <= 1
    assert m.raw_scores(["Plough with tines"]).min() < 0  # the margins underneath
    assert 0 <= m.manifest.threshold <= 1 and all(0 <= t <= 1 for t in m.thresholds)
    np.testing.assert_allclose(s, result.model.scores(["Plough with tines for soil",
                                                       "Semiconductor transistor gate oxide"]), rtol=1e-6)
    assert m.labels[int(s[0].argmax())] == "A01B"


def test_multi_hot_ignores_unknown_codes():
    np.testing.assert_array_equal(multi_hot([["B", "Z"], []], ["A", "B"]), [[0, 1], [0, 0]])


@pytest.mark.slow
def test_tiny_transformer_is_calibrated_and_capped(tiny_jsonl, tmp_path):
    from patentcpc.config import resolve
    from patentcpc.streaming import predict_texts

    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}},
                  ["transformer.epochs=1", "transformer.batch_size=8", "transformer.max_length=64",
                   "transformer.wise_alpha=null", "transformer.patience=0", "explain.index=true"])
    train_model(cfg, str(tiny_jsonl), None, tmp_path / "t")
    m = load_model(tmp_path / "t")
    cal = m.manifest.extra["calibration"]
    # a map that would decrease on the 2 validation documents falls back to isotonic (issue 29)
    assert cal["score_type"] == "probability"
    assert cal["method"] == cfg.calibration.method or cal["info"].get("fallback") == "isotonic"
    assert (tmp_path / "t" / "explain" / "docs.json").exists()
    texts = ["Wireless base station scheduling packets", "Plough tines for soil"]
    raw, s = m.raw_scores(texts), m.scores(texts)
    assert not np.allclose(raw, s) and s.min() >= 0 and s.max() <= 1
    for res in predict_texts(m, texts, top_k=2):
        assert len(res["predictions"]) == 2 and (res["predictions"][0]["assigned"] or "note" in res)


def test_platt_gap_matches_sklearn_on_score_and_lead():
    from sklearn.linear_model import LogisticRegression

    from patentcpc.calibration import gap_to_best_other

    rng = np.random.default_rng(6)
    raw = rng.normal(size=(150, 6))
    y = (rng.random(raw.shape) < 1 / (1 + np.exp(-(raw + gap_to_best_other(raw))))).astype(float)
    cal = fit_calibrator(raw, y, "margin", "platt-gap", fit_on="all")
    x = np.stack([raw.ravel(), gap_to_best_other(raw).ravel()], 1)
    ref = LogisticRegression(penalty=None, tol=1e-10, max_iter=2000).fit(x, y.ravel())
    np.testing.assert_allclose([cal.a, cal.c, cal.b], [*ref.coef_[0], ref.intercept_[0]], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(cal.transform(raw[:3]), ref.predict_proba(
        np.stack([raw[:3].ravel(), gap_to_best_other(raw[:3]).ravel()], 1))[:, 1].reshape(3, 6), rtol=1e-4)
    np.testing.assert_allclose(gap_to_best_other(np.array([[3.0, 1.0, 2.0]])), [[1.0, -2.0, -1.0]])
