"""Ensembles: weight grid, tuning, train/save/load/predict round trip (two TF-IDF members),
evaluation through the CLI, and a folder that points outside itself is refused."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from patentcpc.cli import app
from patentcpc.config import CalibrationConfig, EnsembleConfig, LinearConfig, TrainConfig, TransformerConfig
from patentcpc.data import load_data, split_data
from patentcpc.errors import ConfigError, ModelError
from patentcpc.explain import explain_predictions
from patentcpc.kinds.ensemble.model import EnsembleCPCModel, combine, fit_ensemble, tune_weights, weight_grid
from patentcpc.kinds.linear.model import LinearCPCModel
from patentcpc.metrics import precision_recall_f1_at_k
from patentcpc.registry import load_model, train_model
from patentcpc.streaming import predict_texts


def test_weight_grid_is_the_simplex():
    g = weight_grid(2, 0.25)
    assert g == [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
    g3 = weight_grid(3, 0.5)
    assert len(g3) == 6 and all(abs(sum(w) - 1) < 1e-12 for w in g3)


def test_tune_weights_prefers_the_member_that_ranks_gold_first():
    labels = ["A", "B", "C"]
    gold = [["A"], ["B"], ["C"], ["A"]]
    good = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.2, 0.7], [0.6, 0.3, 0.1]])
    bad = good[:, ::-1].copy()
    w, grid = tune_weights([bad, good], gold, labels, step=0.25)
    assert w[1] > w[0]
    assert max(r["f1@1"] for r in grid) == pytest.approx(
        next(r for r in grid if tuple(r["weights"]) == w)["f1@1"])
    np.testing.assert_allclose(combine([bad, good], [1, 3]), (bad + 3 * good) / 4)


def test_fit_ensemble_of_two_linear_members(tiny_jsonl):
    data = load_data(tiny_jsonl)
    part, held = split_data(data, (0.6, 0.4), 0)
    m1 = LinearCPCModel.fit(part.texts, part.labels, LinearConfig())
    m2 = LinearCPCModel.fit(part.texts, part.labels, LinearConfig(classifier="logreg", ngram_max=2))
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(weight_step=0.1, fusion="weights"))
    ens = fit_ensemble([m1, m2], held, cfg, ["tfidf", "tfidf-logreg"])
    assert ens.labels == sorted(set(m1.labels) | set(m2.labels))
    assert abs(ens.weights.sum() - 1) < 1e-9
    s = ens.scores(held.texts)
    assert s.shape == (len(held), len(ens.labels)) and s.min() >= 0 and s.max() <= 1
    assert ens.manifest.extra["calibration"]["score_type"] == "probability"
    raw = ens.raw_scores(held.texts)
    p1 = np.zeros_like(raw)
    p1[:, [ens.labels.index(c) for c in m1.labels]] = m1.scores(held.texts)
    p2 = np.zeros_like(raw)
    p2[:, [ens.labels.index(c) for c in m2.labels]] = m2.scores(held.texts)
    np.testing.assert_allclose(raw, combine([p1, p2], ens.weights), rtol=1e-5, atol=1e-6)


def _train_two_tfidf(data, out, **ensemble):
    """(folder, TrainResult) of an ensemble of two TF-IDF members with these ``ensemble`` settings."""
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"], **ensemble),
                      calibration=CalibrationConfig(cv_folds=2))
    return out, train_model(cfg, str(data), None, out)


@pytest.fixture
def ensemble_folder(tiny_jsonl, tmp_path):
    return _train_two_tfidf(tiny_jsonl, tmp_path / "ens", valid_fraction=0.3, fusion="weights")


def test_train_save_load_predict_round_trip(ensemble_folder, tiny_jsonl):
    folder, result = ensemble_folder
    doc = json.loads((folder / "ensemble.json").read_text())
    assert [e["folder"] for e in doc["members"]] == ["member-0", "member-1"]
    for e in doc["members"]:
        assert (folder / e["folder"] / "manifest.json").exists()
    m = load_model(folder)
    assert isinstance(m, EnsembleCPCModel) and m.kind == "ensemble"
    assert m.manifest.extra["ensemble"]["refit_on_all"] is True
    for member in m.members:  # re-fitted on all 24 documents, their titles weighed (a tfidf's default)
        assert member.manifest.training_data["n_docs"] == 24 and member.tfidf.title_weight == 10
    texts = load_data(tiny_jsonl).texts[:5]
    np.testing.assert_allclose(m.scores(texts), result.model.scores(texts), rtol=1e-5)
    res = predict_texts(m, texts, top_k=3)
    assert all(len(r["predictions"]) <= 3 and r["predictions"][0]["assigned"] for r in res)
    assert res[0]["predictions"][0]["code"] == "A01B"


def test_members_weigh_no_title_where_the_data_has_none(tiny_jsonl, tmp_path):
    """The members read the texts from whole-text files of their own; texts that start with an
    abstract keep their first line at weight 1 there too."""
    rows = [json.loads(line) for line in tiny_jsonl.read_text().splitlines()]
    abstracts = tmp_path / "abstracts.jsonl"
    abstracts.write_text("".join(json.dumps({"abstract": f"{r['abstract']}\nmore", "cpc": r["cpc"]}) + "\n"
                                 for r in rows))
    _, result = _train_two_tfidf(abstracts, tmp_path / "ens", valid_fraction=0.3, fusion="weights")
    assert [m.tfidf.title_weight for m in result.model.members] == [1, 1]
    assert result.model.manifest.config["linear"]["title_weight"] == 1


def test_evaluate_and_predict_cli(ensemble_folder, tiny_jsonl):
    folder, _ = ensemble_folder
    r = CliRunner().invoke(app, ["evaluate", "--model", str(folder), "--data", str(tiny_jsonl), "--json"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output.strip().splitlines()[-1])
    assert metrics["f1@1"] > 0.5 and 0 <= metrics["ece@1"] <= 1
    r = CliRunner().invoke(app, ["predict", "--model", str(folder), "--text", "Plough with soil tines",
                                 "--top-k", "2"])
    assert r.exit_code == 0, r.output
    assert "A01B" in r.output and "the best code too, unless it scores below" in r.output


def test_member_folder_outside_is_refused(ensemble_folder):
    folder, _ = ensemble_folder
    doc = json.loads((folder / "ensemble.json").read_text())
    doc["members"][0]["folder"] = "../elsewhere"
    (folder / "ensemble.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="member-N"):
        load_model(folder)


def test_a_linked_or_nested_member_is_refused(ensemble_folder, tmp_path):
    import shutil

    folder, _ = ensemble_folder
    shutil.move(folder / "member-1", tmp_path / "moved")
    (folder / "member-1").symlink_to(folder)  # would load itself forever
    with pytest.raises(ModelError, match="not a folder inside"):
        load_model(folder)
    (folder / "member-1").unlink()
    shutil.copytree(folder, tmp_path / "copy")  # an ensemble (not a bag) as a member
    shutil.move(tmp_path / "moved", tmp_path / "copy" / "member-1")
    shutil.copytree(tmp_path / "copy", folder / "member-1")
    with pytest.raises(ModelError, match="is an ensemble"):
        load_model(folder)


def test_a_member_with_labels_the_manifest_lacks_is_refused(ensemble_folder):
    folder, _ = ensemble_folder
    doc = json.loads((folder / "manifest.json").read_text())
    doc["labels"] = doc["labels"][1:]
    doc["label_thresholds"] = None
    doc["extra"].pop("calibration", None)
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="not covered"):
        load_model(folder)


def test_members_are_required(tiny_jsonl, tmp_path):
    with pytest.raises(ConfigError, match="--members"):
        train_model(TrainConfig(model="ensemble"), str(tiny_jsonl), None, tmp_path / "e")
    for nested in ("ensemble", "probe:ensemble"):
        cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", nested], folds=2))
        with pytest.raises(ConfigError, match="cannot itself be an ensemble"):
            train_model(cfg, str(tiny_jsonl), None, tmp_path / "e")


# ----------------------------------------------------------------------------- encoder members


QUICK = TransformerConfig(max_steps=2, batch_size=8)  # a few optimizer steps: the ensemble's plumbing is tested


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A random-init tiny BERT encoder folder (config + safetensors + tokenizer): a member spec."""
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel

    torch.manual_seed(0)
    m = TransformerCPCModel.create(["A01B"], arch="bert-tiny", max_length=64, device="cpu")
    folder = tmp_path_factory.mktemp("encoder")
    m.network.encoder.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    return folder


def test_crossfitted_ensemble_with_an_encoder_member(tiny_jsonl, encoder_folder, tmp_path):
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", str(encoder_folder)], folds=2,
                                                                neighbours=True, fusion="weights"),
                      calibration=CalibrationConfig(cv_folds=2), transformer=QUICK)
    result = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    doc = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert doc["format"] == 2 and "neighbours" not in doc["members"][0]
    assert doc["members"][1]["neighbours"]["file"] == "neighbours-1.safetensors"
    m = load_model(tmp_path / "ens")
    assert m.input_names == ["member-0", "member-1", "member-1-neighbours"]
    assert abs(m.input_weights.sum() - 1) < 1e-9
    assert m.manifest.extra["ensemble"]["tuned_on"] == "cross-fitted, 2 folds"
    assert len(m.neighbours[1].embeddings) == 24  # the final vote indexes all the training documents
    texts = load_data(tiny_jsonl).texts[:6]
    np.testing.assert_allclose(m.scores(texts), result.model.scores(texts), rtol=1e-5, atol=1e-6)
    inputs = m.inputs(texts)
    np.testing.assert_allclose(m.raw_scores(texts), combine(inputs, m.input_weights), rtol=1e-5, atol=1e-6)
    assert all(len(r["predictions"]) <= 2 for r in predict_texts(m, texts, top_k=2))


def test_scores_and_embeddings_is_one_pass_of_scores(transformer_model):
    import torch

    texts = ["a plough with tines", "a semiconductor wafer", "packet routing in networks of routers"]
    scores, emb = transformer_model.scores_and_embeddings(texts, batch_size=2)
    np.testing.assert_allclose(scores, transformer_model.scores(texts), rtol=1e-5, atol=1e-6)
    enc = transformer_model.tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = transformer_model.network.embed(enc["input_ids"], enc["attention_mask"], None)
    np.testing.assert_allclose(emb, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_held_out_ensemble_rebuilds_votes_after_the_refit(tiny_jsonl, encoder_folder, tmp_path):
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", str(encoder_folder)], folds=0,
                                                                valid_fraction=0.3, neighbours=True),
                      calibration=CalibrationConfig(cv_folds=2), transformer=QUICK)
    m = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens").model
    assert m.manifest.extra["ensemble"]["tuned_on"] == "held-out split"
    assert len(m.neighbours[1].embeddings) == 24 and m.members[0].manifest.training_data["n_docs"] == 24


def test_neighbour_file_outside_is_refused_and_format_1_loads(ensemble_folder):
    folder, result = ensemble_folder
    doc = json.loads((folder / "ensemble.json").read_text())
    doc["format"] = 1  # ensembles saved before neighbour votes
    (folder / "ensemble.json").write_text(json.dumps(doc))
    assert load_model(folder).input_names == ["member-0", "member-1"]
    doc["members"][1]["neighbours"] = {"file": "../n.safetensors", "weight": 0.5}
    (folder / "ensemble.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="neighbours-N"):
        load_model(folder)


def test_weight_grid_is_coarsened_for_many_inputs():
    from patentcpc.kinds.ensemble.model import MAX_GRID

    labels = ["A", "B"]
    rng = np.random.default_rng(0)
    inputs = [rng.random((6, 2)) for _ in range(6)]
    w, grid = tune_weights(inputs, [["A"], ["B"]] * 3, labels, step=0.05)
    assert len(grid) <= MAX_GRID and len(w) == 6 and abs(sum(w) - 1) < 1e-9


@pytest.mark.parametrize("bad", [{"folds": -1}, {"folds": 21}, {"neighbours_k": 0}, {"neighbours_temperature": 0},
                                 {"crossfit_max_docs": 0}, {"bagging": True, "neighbours": True},
                                 {"fusion": "mean"}, {"stack_top_k": 0}, {"stack_c": 0}])
def test_ensemble_config_refuses_bad_values(bad):
    with pytest.raises(ConfigError):
        EnsembleConfig(**bad)


def test_a_stopped_run_resumes_with_its_finished_members(tiny_jsonl, tmp_path, monkeypatch):
    from patentcpc.kinds.ensemble import trainer as training_ensemble

    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"], folds=2),
                      calibration=CalibrationConfig(cv_folds=2))
    real, calls = training_ensemble.fit_ensemble_scored, []

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_ensemble, "fit_ensemble_scored", stop)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    work = tmp_path / ".ens.ensemble-work"
    assert (work / "RUN.json").is_file() and (work / "all-member-1" / "manifest.json").is_file()
    monkeypatch.setattr(training_ensemble, "fit_ensemble_scored", real)
    monkeypatch.setattr("patentcpc.registry.train_model",
                        lambda *a, **k: calls.append(a) or pytest.fail("a finished member was trained again"))
    model = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens").model
    assert not calls and not work.exists() and len(model.members) == 2


def test_a_foreign_work_folder_is_refused(tiny_jsonl, tmp_path):
    from patentcpc.io import OutputError

    (tmp_path / ".ens.ensemble-work").mkdir()
    (tmp_path / ".ens.ensemble-work" / "mine.txt").write_text("user data")
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"]))
    with pytest.raises(OutputError, match="not written by patentcpc"):
        train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    assert (tmp_path / ".ens.ensemble-work" / "mine.txt").read_text() == "user data"


def test_bagging_keeps_each_members_fold_models(tiny_jsonl, tmp_path):
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"], folds=2, bagging=True),
                      calibration=CalibrationConfig(cv_folds=2))
    result = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    m = load_model(tmp_path / "ens")
    texts = load_data(tiny_jsonl).texts[:5]
    for member in m.members:  # a bag: two fold models, then the model of all 24 documents
        assert member.kind == "ensemble" and len(member.members) == 3
        assert [f.manifest.training_data["n_docs"] for f in member.members] == [12, 12, 24]
        parts = [np.zeros((len(texts), len(member.labels))) for _ in member.members]
        for part, f in zip(parts, member.members, strict=True):
            part[:, [member.labels.index(c) for c in f.labels]] = f.scores(texts)
        np.testing.assert_allclose(member.scores(texts), np.mean(parts, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.scores(texts), result.model.scores(texts), rtol=1e-5, atol=1e-6)
    assert not (tmp_path / ".ens.ensemble-work").exists()
    res = explain_predictions(m, texts[:1], predict_texts(m, texts[:1], top_k=1))[0]
    assert any(e["kind"] == "term" for e in res["predictions"][0]["evidence"])  # the all-data TF-IDF's terms


# ----------------------------------------------------------------------------- stacking (ensemble.fusion=stack)


def test_stacker_features_rank_gap_and_count():
    from patentcpc.kinds.ensemble.stacking import candidates, features

    s = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    f = features([s], np.log1p([4.0, 0.0, 1.0]))
    assert f.shape == (2, 3, 4)
    np.testing.assert_allclose(f[..., 0], s)
    np.testing.assert_allclose(np.exp(f[..., 1]), [[3, 1, 2], [1, 3, 2]])
    np.testing.assert_allclose(f[..., 2], [[-0.5, 0.3, -0.3], [0.2, -0.3, -0.2]])  # p - best other p
    np.testing.assert_allclose(f[0, :, 3], np.log1p([4.0, 0.0, 1.0]))
    assert candidates([s, s[:, ::-1]], 1).tolist() == [[False, True, False], [True, False, True]]


def test_stacker_learns_which_input_to_trust_and_round_trips():
    from patentcpc.kinds.ensemble.stacking import Stacker, fit_stacker

    rng = np.random.default_rng(0)
    n, n_labels = 200, 12
    gold = np.zeros((n, n_labels), dtype=bool)
    gold[np.arange(n), rng.integers(0, n_labels, n)] = True
    good = np.where(gold, 0.6, 0.0) + rng.random((n, n_labels)) * 0.5
    noisy = rng.random((n, n_labels))
    st = fit_stacker([noisy, good], gold, np.zeros(n_labels), top_k=4)
    p = st.scores([noisy, good], np.zeros(n_labels))
    assert p.shape == (n, n_labels) and p.min() >= 0 and p.max() <= 1
    assert (gold[np.arange(n), p.argmax(1)]).mean() > 0.9
    coef = dict(zip(st.feature_names, st.coef, strict=True))
    assert coef["input-1-p"] > abs(coef["input-0-p"])
    again = Stacker.from_dict(json.loads(json.dumps(st.to_dict())))
    np.testing.assert_array_equal(again.scores([noisy, good], np.zeros(n_labels)), p)
    for broken in ({**st.to_dict(), "coef": [1.0]}, {**st.to_dict(), "scale": [0.0] * 7}, {"kind": "stack"}):
        with pytest.raises(ModelError):
            Stacker.from_dict(broken)


def test_stacker_fits_on_a_seeded_sample_of_many_documents(monkeypatch):
    import patentcpc.kinds.ensemble.stacking as stacking

    rng = np.random.default_rng(1)
    n, n_labels = 300, 6
    gold = np.zeros((n, n_labels), dtype=bool)
    gold[np.arange(n), rng.integers(0, n_labels, n)] = True
    inputs = [np.where(gold, 0.5, 0.0) + rng.random((n, n_labels)) * 0.6]
    counts = np.log1p(rng.integers(0, 9, (n, n_labels)))  # per document, as cross-fitted inputs give them
    full = stacking.fit_stacker(inputs, gold, counts, top_k=3)
    monkeypatch.setattr(stacking, "MAX_FIT_DOCS", 100)
    sampled = stacking.fit_stacker(inputs, gold, counts, top_k=3)
    keep = np.sort(np.random.default_rng(0).choice(n, 100, replace=False))
    by_hand = stacking.fit_stacker([inputs[0][keep]], gold[keep], counts[keep], top_k=3)
    np.testing.assert_allclose(sampled.coef, by_hand.coef)
    assert not np.allclose(sampled.coef, full.coef)
    assert sampled.scores(inputs, counts).shape == (n, n_labels)  # it still scores every document


@pytest.fixture
def stacked_folder(tiny_jsonl, tmp_path):
    return _train_two_tfidf(tiny_jsonl, tmp_path / "stack", folds=2, stack_top_k=3)  # stack: the default fusion


def test_stacked_ensemble_saves_loads_and_scores_with_its_stacker(stacked_folder, tiny_jsonl):
    folder, result = stacked_folder
    doc = json.loads((folder / "ensemble.json").read_text())
    assert doc["format"] == 3 and doc["fusion"]["kind"] == "stack" and doc["fusion"]["top_k"] == 3
    # the frequency feature: the all-data counts scaled to the folds' training size (2 folds: 1/2)
    assert doc["fusion"]["label_counts"]["A01B"] == pytest.approx(4 / 2)
    m = load_model(folder)
    assert m.fusion == "stack" and m.manifest.extra["ensemble"]["fusion"] == "stack"
    texts = load_data(tiny_jsonl).texts[:6]
    inputs = m.inputs(texts)
    raw = m.raw_scores(texts)
    np.testing.assert_allclose(raw, m.stacker.scores(inputs, m.log_counts), rtol=1e-5)
    assert not np.allclose(raw, combine(inputs, m.input_weights), atol=1e-3)  # not the weighted mean
    np.testing.assert_allclose(m.scores(texts), result.model.scores(texts), rtol=1e-5)
    extra = m.manifest.extra
    assert extra["calibration"]["score_type"] == "probability" and extra["conformal"]["n"] == 24
    assert predict_texts(m, texts, top_k=1)[0]["predictions"][0]["code"] == "A01B"
    sets = m.label_sets(texts, 0.9)
    assert len(sets) == 6


def test_an_old_ensemble_folder_is_a_weighted_mean_and_a_broken_stacker_is_refused(ensemble_folder,
                                                                                    stacked_folder, tiny_jsonl):
    folder, _ = ensemble_folder
    doc = json.loads((folder / "ensemble.json").read_text())
    assert doc["format"] == 2 and "fusion" not in doc
    m = load_model(folder)
    assert m.fusion == "weights" and m.stacker is None
    texts = load_data(tiny_jsonl).texts[:4]
    np.testing.assert_allclose(m.raw_scores(texts), combine(m.inputs(texts), m.input_weights), rtol=1e-5)
    stacked, _ = stacked_folder
    doc = json.loads((stacked / "ensemble.json").read_text())
    no_fusion = {k: v for k, v in doc.items() if k != "fusion"}
    for broken in ({**doc, "fusion": {**doc["fusion"], "label_counts": {"A01B": -1}}},
                   {**doc, "fusion": {**doc["fusion"], "n_inputs": 3}}, no_fusion):
        (stacked / "ensemble.json").write_text(json.dumps(broken))
        with pytest.raises(ModelError):
            load_model(stacked)


def test_stacked_ensemble_with_an_encoder_and_its_neighbour_vote(tiny_jsonl, encoder_folder, tmp_path):
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", str(encoder_folder)], folds=2,
                                                                neighbours=True, fusion="stack"),
                      calibration=CalibrationConfig(cv_folds=2), transformer=QUICK)
    result = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    m = load_model(tmp_path / "ens")
    assert m.fusion == "stack" and m.stacker.n_inputs == 3  # TF-IDF, the encoder, its neighbour vote
    texts = load_data(tiny_jsonl).texts[:6]
    np.testing.assert_allclose(m.scores(texts), result.model.scores(texts), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.raw_scores(texts), m.stacker.scores(m.inputs(texts), m.log_counts), rtol=1e-5)


def test_held_out_stacked_ensemble_counts_follow_the_refit(tiny_jsonl, tmp_path):
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"], folds=0,
                                                                valid_fraction=0.5, fusion="stack", stack_top_k=2),
                      calibration=CalibrationConfig(cv_folds=2))
    train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    m = load_model(tmp_path / "ens")
    assert m.fusion == "stack" and m.manifest.extra["ensemble"]["refit_on_all"] is True
    # the re-fitted members saw all 24 documents (A01B: 4); counts scaled to the 12-document part
    assert m.label_counts["A01B"] == pytest.approx(4 * 12 / 24)


def test_a_member_that_knows_codes_the_data_lacks_cross_fits(tiny_jsonl, tmp_path, monkeypatch):
    """A member may know codes no training patent carries (the cold-start scheme model knows every
    subclass): the cross-fitted inputs cover every member's codes (was a KeyError)."""
    from patentcpc.data import load_data
    from patentcpc.kinds.ensemble import trainer as ensemble_trainer

    def members(cfg, specs, data_path, work, tag):  # the second member also learned a code the data lacks
        part = load_data(data_path)
        extra = [*part.texts, "a combine harvester cutting grain", "a harvester threshing corn"]
        return [LinearCPCModel.fit(part.texts, part.labels, LinearConfig()),
                LinearCPCModel.fit(extra, [*part.labels, ["A01D"], ["A01D"]], LinearConfig())]

    monkeypatch.setattr(ensemble_trainer, "train_members", members)
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"], folds=2),
                      calibration=CalibrationConfig(cv_folds=2))
    model = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens").model
    assert "A01D" in model.labels
    assert model.predict(["A plough with adjustable tines for tilling soil"], top_k=1)[0]


def test_a_code_a_member_does_not_know_ranks_below_every_code_it_knows():
    """Aligning a member's scores on the ensemble's columns: probabilities get 0 for an unknown code;
    uncalibrated margins (the scheme model's, all below 0) get just below the document's lowest
    margin, not a 0 that would top the member's ranking (the stacker reads its ranks)."""
    from patentcpc.kinds.ensemble.model import aligned

    probs = np.array([[0.7, 0.2], [0.1, 0.05]])
    np.testing.assert_array_equal(aligned(probs, np.array([2, 0]), 3), [[0.2, 0.0, 0.7], [0.05, 0.0, 0.1]])
    margins = np.array([[-0.3, -0.9], [-1.2, -0.4]])
    out = aligned(margins, np.array([0, 3]), 4)
    known, unknown = out[:, [0, 3]], out[:, [1, 2]]
    np.testing.assert_array_equal(known, margins)
    assert (unknown < known.min(axis=1, keepdims=True)).all() and np.allclose(unknown, [[-0.9] * 2, [-1.2] * 2])
    ranks = np.argsort(np.argsort(-out, axis=1, kind="stable"), axis=1)
    assert (ranks[:, [1, 2]] >= 2).all()  # last, also under a stable sort that would break a tie by column
    np.testing.assert_array_equal(aligned(margins, np.array([0, 3]), 4, "zero")[:, [1, 2]], 0.0)  # old folders
    assert not np.isnan(aligned(np.array([[np.nan, -0.5]]), np.array([0, 1]), 3)[0, 2])
    assert aligned(np.zeros((0, 2)), np.array([0, 1]), 3).shape == (0, 3)
    assert aligned(np.zeros((2, 0)), np.array([], dtype=np.int64), 3).tolist() == [[0.0] * 3] * 2


def test_an_uncalibrated_member_s_unknown_codes_rank_last_and_old_folders_keep_zero(tiny_jsonl, tmp_path):
    """The ensemble's inputs put the codes an uncalibrated member does not know below the ones it
    knows; the rule is saved, and a folder without it (written before) keeps the 0 it was fitted on."""
    data = load_data(tiny_jsonl)
    part, held = split_data(data, (0.6, 0.4), 0)
    wide = LinearCPCModel.fit(part.texts, part.labels, LinearConfig())
    keep = [i for i, g in enumerate(part.labels) if wide.labels[0] not in g]  # a member that lacks one code
    narrow = LinearCPCModel.fit([part.texts[i] for i in keep], [part.labels[i] for i in keep], LinearConfig())
    missing = sorted(set(wide.labels) - set(narrow.labels))
    assert missing and narrow.output_score_type == "margin" and (narrow.scores(held.texts).min(axis=1) < 0).all()
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(stack_top_k=2),
                      calibration=CalibrationConfig(cv_folds=2))
    ens = fit_ensemble([wide, narrow], held, cfg, ["a", "b"])
    x = ens.inputs(held.texts)[1]
    cols = [ens.labels.index(c) for c in missing]
    known = [j for j in range(len(ens.labels)) if j not in cols]
    assert (x[:, cols].max(axis=1) < x[:, known].min(axis=1)).all()
    ens.save(tmp_path / "ens")
    doc = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert doc["unknown_codes"] == "lowest" and load_model(tmp_path / "ens").unknown_codes == "lowest"
    del doc["unknown_codes"]
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(doc))
    old = load_model(tmp_path / "ens")
    assert old.unknown_codes == "zero" and (old.inputs(held.texts)[1][:, cols] == 0).all()
    doc["unknown_codes"] = "nan"
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="unknown_codes"):
        load_model(tmp_path / "ens")


def test_the_stacker_is_calibrated_on_its_cross_fitted_output():
    """Each fold is scored by a stacker fitted on the other folds; the ensemble's calibrator and its
    held-out figures come from those scores, not from the saved stacker's in-sample output."""
    import patentcpc.kinds.ensemble.stacking as stacking
    from patentcpc.calibration import multi_hot
    from patentcpc.kinds.ensemble.model import fit_ensemble_scored

    rng = np.random.default_rng(2)
    n, labels = 120, ["A01B", "B60K", "C07D", "G06F", "H04L"]
    gold = [[labels[i]] for i in rng.integers(0, len(labels), n)]
    y = multi_hot(gold, labels)
    inputs = [np.where(y, 0.4, 0.0) + rng.random((n, len(labels))) * 0.7, rng.random((n, len(labels)))]
    counts = np.log1p(rng.integers(0, 9, (n, len(labels))))
    folds = np.arange(n) % 3
    out = stacking.crossfit_scores(inputs, y, counts, folds, top_k=3)
    rest = folds != 0
    by_hand = stacking.fit_stacker([x[rest] for x in inputs], y[rest], counts[rest], top_k=3)
    np.testing.assert_allclose(out[~rest], by_hand.scores([x[~rest] for x in inputs], counts[~rest]))
    in_sample = stacking.fit_stacker(inputs, y, counts, top_k=3).scores(inputs, counts)
    assert not np.allclose(out, in_sample)
    np.testing.assert_allclose(stacking.crossfit_scores(inputs, y, counts, np.zeros(n), top_k=3), in_sample)

    texts = ["plough soil", "engine car", "pyridine compound", "computer memory", "network packet"]
    members = [LinearCPCModel.fit(texts, [[c] for c in labels], LinearConfig())] * 2  # the inputs are given
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(stack_top_k=3))
    model, scores = fit_ensemble_scored(members, SimpleNamespace(labels=gold), cfg, ["a", "b"], inputs=inputs,
                                        held_counts=counts, folds=folds)
    np.testing.assert_allclose(scores, model.calibrate(out))
    assert model.manifest.extra["ensemble"]["heldout_f1@1"]["ensemble"] == pytest.approx(
        precision_recall_f1_at_k(out, gold, labels, (1,))["f1@1"])


def test_a_weighted_mean_over_an_uncalibrated_member_warns(tiny_jsonl, caplog):
    data = load_data(tiny_jsonl)
    part, held = split_data(data, (0.6, 0.4), 0)
    from patentcpc.calibration import calibrate_model

    calibrated = LinearCPCModel.fit(part.texts, part.labels, LinearConfig())
    calibrate_model(calibrated, calibrated.raw_scores(part.texts), part.labels, CalibrationConfig(cv_folds=2))
    margins = LinearCPCModel.fit(part.texts, part.labels, LinearConfig())  # as the scheme model: no calibrator
    assert margins.output_score_type == "margin" and calibrated.output_score_type == "probability"
    for fusion, warned in (("weights", True), ("stack", False)):
        caplog.clear()
        cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(fusion=fusion, stack_top_k=2),
                          calibration=CalibrationConfig(cv_folds=2))
        with caplog.at_level("WARNING", logger="patentcpc.kinds.ensemble.model"):
            fit_ensemble([calibrated, margins], held, cfg, ["tfidf", "scheme"])
        assert ("member scheme gives uncalibrated margin scores" in caplog.text) is warned


@pytest.mark.parametrize("folds", [2, 0])  # cross-fitted members; a held-out part
def test_train_calibrates_and_reports_the_stacker_on_its_cross_fitted_output(tiny_jsonl, tmp_path, monkeypatch, folds):
    import patentcpc.kinds.ensemble.stacking as stacking

    calls, real = [], stacking.crossfit_scores

    def spy(inputs, gold, log_counts, fold_ids, *args):
        out = real(inputs, gold, log_counts, fold_ids, *args)
        calls.append((np.asarray(fold_ids).copy(), out))
        return out

    monkeypatch.setattr(stacking, "crossfit_scores", spy)
    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=["tfidf", "tfidf"], folds=folds,
                                                                valid_fraction=0.5, stack_top_k=2),
                      calibration=CalibrationConfig(cv_folds=2))
    result = train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    (fold_ids, raw), = calls
    n = len(load_data(tiny_jsonl)) if folds else 12  # every document cross-fitted, or the held-out half
    assert fold_ids.shape == (n,) and len(set(fold_ids.tolist())) == (folds or 5)
    heldout = result.model.manifest.extra["ensemble"]["heldout_f1@1"]["ensemble"]
    assert result.model.manifest.metrics["f1@1"] == pytest.approx(heldout)  # the held-out figures: cross-fitted


def test_an_encoder_can_be_a_fine_tuned_and_a_probe_member_of_one_ensemble(tiny_jsonl, encoder_folder, tmp_path):
    """--members tfidf,ENC,probe:ENC: the third member is ENC frozen with a probe head (recipe probe,
    no optimizer step) while the second is fine-tuned; each member's saved config says which."""
    from safetensors.torch import load_file

    cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(
        members=["tfidf", str(encoder_folder), f"probe:{encoder_folder}"], folds=2, fusion="stack"),
        calibration=CalibrationConfig(cv_folds=2), transformer=QUICK, guard="warn")
    train_model(cfg, str(tiny_jsonl), None, tmp_path / "ens")
    m = load_model(tmp_path / "ens")
    assert m.stacker.n_inputs == 3 and m.specs[2] == f"probe:{encoder_folder}"
    saved = [json.loads((tmp_path / "ens" / f"member-{i}" / "manifest.json").read_text()) for i in (1, 2)]
    assert [d["extra"]["recipe"] for d in saved] == ["few-shot", "probe"]
    assert [d["config"]["transformer"]["recipe"] for d in saved] == ["auto", "probe"]
    # the probe reads the title and the rest apart (views first_line), the fine-tune the whole text;
    # the embedding memo keeps the two apart though their encoders start from the same weights
    assert [d["config"]["transformer"]["views"] for d in saved] == ["one", "first_line"]
    assert m.members[2].embedding_dim == 2 * m.members[1].embedding_dim
    assert saved[1]["config"]["model"] == str(encoder_folder)
    pretrained = load_file(encoder_folder / "model.safetensors")
    frozen, tuned = (m.members[i].network.encoder.state_dict() for i in (2, 1))
    assert all(np.array_equal(v.numpy(), frozen[k].numpy()) for k, v in pretrained.items())
    assert not all(np.array_equal(v.numpy(), tuned[k].numpy()) for k, v in pretrained.items())
    assert m.scores(load_data(tiny_jsonl).texts[:3]).shape == (3, len(m.labels))
