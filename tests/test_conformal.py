"""Conformal label sets (issue 30 item 4): the table stored at training time, the finite-sample
threshold, predict(coverage=), the CLI's --coverage, the service's 'coverage'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from patentcpc.errors import ConfigError


def test_threshold_is_the_finite_sample_order_statistic():
    from patentcpc.conformal import fit_conformal, threshold

    labels = ["A", "B"]
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.3], [0.4, 0.5], [0.7, 0.05], [0.05, 0.02]])
    gold = [["A"], ["B"], ["B"], ["A"], ["A"], ["Z"]]  # the last one: a code the model does not know
    table = fit_conformal(scores, gold, labels)
    assert table["n"] == 6 and table["n_uncoverable"] == 1
    assert table["best_gold_scores"] == [0.3, 0.4, 0.7, 0.8, 0.9]
    # k = floor((n + 1) alpha): alpha 0.5 -> k 3 -> the 3rd smallest of (-inf, .3, .4, .7, .8, .9)
    assert threshold(table, 0.5) == 0.4
    assert threshold(table, 0.7) == 0.3  # k = 2
    assert threshold(table, 0.8) == -np.inf  # k = 1: the uncoverable document
    assert threshold(table, 0.9) == -np.inf  # k = 0: too few documents for that coverage


def test_sets_cover_at_least_the_target_on_exchangeable_data():
    from patentcpc.conformal import fit_conformal, set_mask, threshold

    rng = np.random.default_rng(0)
    labels = [f"L{j}" for j in range(20)]

    def draw(n):
        scores = rng.dirichlet(np.ones(20) * 0.3, size=n)
        gold = [[labels[rng.choice(20, p=s)]] for s in scores]  # gold drawn from the scores themselves
        return scores, gold

    for cov in (0.8, 0.9, 0.95):
        hits = []
        for _ in range(30):
            cal, cal_gold = draw(200)
            test, test_gold = draw(200)
            mask = set_mask(test, threshold(fit_conformal(cal, cal_gold, labels), cov))
            hits += [mask[i, labels.index(g[0])] for i, g in enumerate(test_gold)]
        assert cov - 0.01 <= np.mean(hits) <= cov + 0.04


def test_training_stores_the_table_and_predict_returns_sets(tiny_jsonl, tmp_path):
    import patentcpc
    from patentcpc.registry import load_model

    model = patentcpc.train(model="tfidf", data=str(tiny_jsonl), output=tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())
    table = saved["extra"]["conformal"]
    assert table["n"] == 24 and len(table["best_gold_scores"]) + table["n_uncoverable"] == 24
    loaded = load_model(tmp_path / "m")
    text = "A plough with tines for breaking soil"
    narrow, wide = loaded.predict([text], coverage=0.5)[0], loaded.predict([text], coverage=0.99)[0]
    assert 1 <= len(narrow) <= len(wide)
    assert narrow[0].code == loaded.predict([text], top_k=1)[0][0].code
    (s,) = loaded.label_sets([text], coverage=0.99)
    assert s.size == len(wide) and list(s.codes) == [p.code for p in wide]
    assert s.unsure == (s.size > s.unsure_above)
    assert model.manifest.extra["conformal"] == table
    with pytest.raises(ConfigError, match="between 0 and 1"):
        loaded.predict([text], coverage=1.0)
    with pytest.raises(ConfigError, match="leave out top_k"):
        loaded.predict([text], coverage=0.9, top_k=3)


def test_a_model_without_the_table_is_one_line(linear_model):
    assert "conformal" not in linear_model.manifest.extra  # fitted without calibration data (as before)
    with pytest.raises(ConfigError, match="no conformal calibration data"):
        linear_model.predict(["a plough"], coverage=0.9)


def test_cli_coverage(tiny_jsonl, tmp_path, capsys):
    import patentcpc
    from patentcpc.cli import main
    from patentcpc.kinds.linear.model import LinearCPCModel

    patentcpc.train(model="tfidf", data=str(tiny_jsonl), output=tmp_path / "m")
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(tmp_path / "m"), "--text", "A plough with tines", "--coverage", "0.9"])
    assert exc.value.code in (0, None)
    assert "label set at coverage 0.9" in capsys.readouterr().out
    out = tmp_path / "p.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(tmp_path / "m"), "--input", str(tiny_jsonl), "--output", str(out),
              "--coverage", "0.8"])
    assert exc.value.code in (0, None)
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["label_set"]["size"] == len(rec["label_set"]["codes"]) >= 1 and "unsure" in rec["label_set"]
    capsys.readouterr()
    for args in (["--coverage", "1.5"], ["--coverage", "0.9", "--output", str(tmp_path / "p.csv")]):
        with pytest.raises(SystemExit) as exc:
            main(["predict", "--model", str(tmp_path / "none"), "--text", "a plough", *args])  # before loading
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and "coverage" in err
    old = LinearCPCModel.fit(["a plough", "a wafer"], [["A01B"], ["H01L"]])
    old.save(tmp_path / "old")  # a folder without the table, as saved before conformal sets
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(tmp_path / "old"), "--text", "a plough", "--coverage", "0.9"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "no conformal calibration data" in err


def test_service_coverage(tiny_jsonl, tmp_path, linear_model):
    from fastapi.testclient import TestClient

    import patentcpc
    from patentcpc.serving import STATIC_DIR, ServeConfig, create_app

    model = patentcpc.train(model="tfidf", data=str(tiny_jsonl))
    with TestClient(create_app(model, ServeConfig(max_wait_ms=0))) as client:
        assert client.get("/health").json()["conformal"] is True
        body = client.post("/predict", json={"text": "A plough with tines", "coverage": 0.9}).json()
        assert body["label_set"]["size"] == len(body["label_set"]["codes"]) >= 1
        assert client.post("/predict", json={"text": "a plough", "coverage": 2}).status_code == 422
        assert client.post("/predict", json={"text": "a plough", "coverage": True}).status_code == 422
        assert "label_set" not in client.post("/predict", json={"text": "a plough"}).json()
    with TestClient(create_app(linear_model, ServeConfig(max_wait_ms=0))) as client:
        r = client.post("/predict", json={"text": "a plough", "coverage": 0.9})
        assert r.status_code == 422 and "conformal" in r.json()["error"]["message"]
    assert "label_set" in (STATIC_DIR / "app.js").read_text()


def test_a_large_calibration_set_keeps_every_stride_th_value_and_only_widens_sets(monkeypatch):
    from patentcpc import conformal

    rng = np.random.default_rng(0)
    labels = [f"L{j}" for j in range(5)]
    scores = rng.random((50, 5))
    gold = [[labels[rng.integers(5)]] for _ in range(50)]
    full = conformal.fit_conformal(scores, gold, labels)
    monkeypatch.setattr(conformal, "MAX_STORED", 7)
    thin = conformal.check_table(conformal.fit_conformal(scores, gold, labels))
    assert thin["stride"] == 8 and len(thin["best_gold_scores"]) == 7
    for cov in (0.01, 0.3, 0.5, 0.8, 0.9, 0.95):
        assert conformal.threshold(thin, cov) <= conformal.threshold(full, cov)
    with pytest.raises(Exception, match="malformed"):
        conformal.check_table({**thin, "stride": 1})


def test_evaluate_reports_the_sets_coverage_and_size(tiny_jsonl, tmp_path, capsys, linear_model):
    import patentcpc
    from patentcpc.cli import main

    model = patentcpc.train(model="tfidf", data=str(tiny_jsonl), output=tmp_path / "m")
    m = patentcpc.evaluate(model, str(tiny_jsonl))
    assert 0 < m["conformal_coverage@0.9"] <= 1 and m["conformal_set_size@0.9"] >= 1
    assert m["conformal_set_size@0.8"] <= m["conformal_set_size@0.9"] <= m["conformal_set_size@0.95"]
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tiny_jsonl), "--json"])
    assert exc.value.code in (0, None)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["conformal_coverage@0.9"] == m["conformal_coverage@0.9"]
    from patentcpc.conformal import evaluate_sets

    assert evaluate_sets(linear_model, linear_model.scores(["a plough"]), [["A01B"]]) == {}  # no table
