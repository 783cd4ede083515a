"""The TF-IDF + one-vs-rest linear baseline: training, scores, save/load, through train_model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from patentcpc.config import DataConfig, LinearConfig, TrainConfig
from patentcpc.data import load_data, load_for_model, split_data
from patentcpc.errors import ConfigError, ModelError
from patentcpc.kinds.linear.model import LinearCPCModel, build_pipeline
from patentcpc.metrics import evaluate_model, evaluate_scores
from patentcpc.registry import load_model, train_model
from patentcpc.results import TrainResult


@pytest.fixture
def tiny_model(tiny_jsonl):
    data = load_data(tiny_jsonl)
    return LinearCPCModel.fit(data.texts, data.labels, LinearConfig(), manifest_fields={"text_view": data.text_view})


def test_defaults_are_the_documented_ones():
    cfg = LinearConfig()
    # C=None: the strength chosen per model kind (1 for tfidf, build_pipeline's default)
    assert (cfg.classifier, cfg.C, cfg.ngram_max, cfg.sublinear_tf, cfg.class_weight, cfg.stemmer,
            cfg.title_weight) == ("svc", None, 1, True, "balanced", "english", None)
    pipe = build_pipeline(cfg)
    tfidf, clf = pipe.named_steps["tfidf"], pipe.named_steps["clf"]
    words = tfidf.analyzer
    assert tfidf.sublinear_tf and (words.stemmer, words.ngram_max, words.title_weight) == ("english", 1, 10)
    assert clf.estimator.C == 1.0 and clf.estimator.class_weight == "balanced"


def test_fit_scores_and_vocab(tiny_model, tiny_jsonl):
    data = load_data(tiny_jsonl)
    assert tiny_model.labels == sorted({c for ls in data.labels for c in ls})
    s = tiny_model.scores(data.texts)
    assert s.shape == (len(data), len(tiny_model.labels)) and s.dtype == np.float32
    assert tiny_model.manifest.score_type == "margin" and tiny_model.manifest.threshold == 0.0
    m = evaluate_scores(s, data.labels, tiny_model.labels, tiny_model.thresholds)
    assert m["precision@1"] == 1.0  # the training set itself
    assert tiny_model.scores([]).shape == (0, len(tiny_model.labels))
    # batching does not change scores
    assert np.allclose(tiny_model.scores(data.texts, batch_size=5), s, atol=1e-6)


def test_scores_match_sklearn_decision_function(tiny_model, tiny_jsonl):
    texts = load_data(tiny_jsonl).texts
    expected = tiny_model.pipeline.decision_function(texts)
    assert np.allclose(tiny_model.scores(texts), expected, atol=1e-5)


def test_logreg_gives_probabilities(tiny_jsonl):
    data = load_data(tiny_jsonl)
    m = LinearCPCModel.fit(data.texts, data.labels, LinearConfig(classifier="logreg", C=10.0))
    s = m.scores(data.texts[:3])
    assert m.manifest.score_type == "probability" and m.manifest.threshold == 0.5
    assert ((s >= 0) & (s <= 1)).all()


def test_fit_refuses_degenerate_input():
    with pytest.raises(ModelError):
        LinearCPCModel.fit([], [])
    with pytest.raises(ModelError, match="2 distinct labels"):
        LinearCPCModel.fit(["a", "b"], [["H04L"], ["H04L"]])


def test_config_validation():
    with pytest.raises(ConfigError):
        LinearConfig(C=0)
    with pytest.raises(ConfigError):
        LinearConfig(classifier="rf")
    with pytest.raises(ConfigError, match="linear.stemmer must be none or one of .*english"):
        LinearConfig(stemmer="klingon")
    assert LinearConfig(stemmer="none").stemmer is None and LinearConfig(stemmer="german").stemmer == "german"
    for bad in (0, 101, -3, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="linear.title_weight must be a whole number from 1 to 100"):
            LinearConfig(title_weight=bad)
    assert LinearConfig(title_weight=1).title_weight == 1


STEM_TEXTS = ["Curing cauls are cured; the caul cures resins", "A wireless network transmits packets",
              "Transmitting packet data over networks", "Résumé of curable résins"]
TITLED_TEXTS = ["CURING CAUL\nCuring cauls are cured; the caul cures resins", "Network\nA wireless network sends",
                "PACKET DATA\nTransmitting packet data over networks\nsecond line", "Résumé\n", "x\ncurable résins"]


@pytest.mark.parametrize(("stemmer", "title_weight", "ngram_max"),
                         [(None, 1, 1), ("english", 1, 1), ("english", 10, 1), (None, 3, 2), ("english", 1, 3)])
def test_numpy_tfidf_matches_sklearn(stemmer, title_weight, ngram_max):
    """The stored TF-IDF (NumPy, no scikit-learn) gives the fitted vectorizer's rows, stemmed or
    not, with the title weighted or not, with n-grams."""
    from patentcpc.kinds.linear.model import _arrays_from_pipeline

    texts = STEM_TEXTS + TITLED_TEXTS
    labels = [["B29C"], ["H04L"], ["H04L"], ["B29C"], ["B29C"], ["H04L"], ["H04L"], ["B29C"], ["B29C"]]
    cfg = LinearConfig(stemmer=stemmer, title_weight=title_weight, ngram_max=ngram_max, label_docs="none")
    m = LinearCPCModel.fit(texts, labels, cfg)
    vec = m.pipeline.named_steps["tfidf"]
    stems = {"cure", "caul", "resin", "network", "transmit", "packet"}
    assert (stems <= set(vec.vocabulary_)) == (stemmer == "english")
    assert ("curing" in vec.vocabulary_) == (stemmer is None)
    tfidf = _arrays_from_pipeline(m.pipeline, "margin")[0]
    assert (tfidf.title_weight, tfidf.ngram_max) == (title_weight, ngram_max)
    new = ["cured networking", "CURED NETWORK\nresins"]
    want = vec.transform(texts + new).toarray()
    for i, text in enumerate(texts + new):
        idx, val = tfidf.transform_one(text)
        row = np.zeros(want.shape[1], dtype=np.float32)
        row[idx] = val
        assert np.allclose(row, want[i], atol=1e-6)


def test_word_analyzer_is_sklearns_word_analyzer_at_title_weight_1():
    """Unstemmed and at title weight 1 the analyzer gives scikit-learn's own word analyzer's terms
    (an independent implementation: lower-casing, accent stripping, token pattern, n-grams)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from patentcpc.words import WordAnalyzer

    for n in (1, 2, 3):
        theirs = TfidfVectorizer(ngram_range=(1, n), strip_accents="unicode").build_analyzer()
        for text in STEM_TEXTS + TITLED_TEXTS + ["", "a", "Ωmega ÉCOLE\n\nx y zz"]:
            assert WordAnalyzer(None, n, 1)(text) == theirs(text)


def test_word_analyzer_counts_the_title_line_title_weight_times():
    import copy
    import pickle
    from collections import Counter

    from patentcpc.words import WordAnalyzer

    words = WordAnalyzer("english", 2, 4)
    got = Counter(words("Curing Caul\nthe cauls cure"))
    # the title's terms (and its bigram) 4 times; across the line break and in the rest once
    assert [got[t] for t in ("cure", "caul", "cure caul", "caul the", "the", "the caul")] == [5, 5, 4, 1, 1, 1]
    one_line = "Curing cauls cure"  # no title: nothing weighted (nor with an empty rest)
    assert words(one_line) == WordAnalyzer("english", 2, 1)(one_line)
    assert words("Curing cauls\n  \n") == WordAnalyzer("english", 2, 1)("Curing cauls\n  \n")
    title = "caul " * 99 + "cure"  # 499 characters: a title (a US title has at most 500)
    assert Counter(words(f"  {title}  \nthe rest"))["cure"] == 4
    long_line = "caul " * 100 + "cure\nthe rest"  # a first line of 504 characters is no title
    assert words(long_line) == WordAnalyzer("english", 2, 1)(long_line)
    for other in (copy.deepcopy(words), pickle.loads(pickle.dumps(words))):  # noqa: S301  (our own object)
        assert other("Curing Caul\nthe cauls cure") == words("Curing Caul\nthe cauls cure")


def test_title_weight_round_trips_and_old_folders_read_weight_1(tmp_path):
    labels = [["B29C"], ["H04L"], ["H04L"], ["B29C"], ["B29C"], ["H04L"], ["H04L"], ["B29C"], ["B29C"]]
    m = LinearCPCModel.fit(STEM_TEXTS + TITLED_TEXTS, labels, LinearConfig(label_docs="none", title_weight=7))
    m.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.tfidf.title_weight == 7
    probe = ["NETWORK PACKETS\ncured resins"]
    assert np.array_equal(loaded.scores(probe), m.scores(probe))
    settings = json.loads((tmp_path / "m" / "linear.json").read_text())
    assert settings["title_weight"] == 7
    del settings["title_weight"]  # a folder saved before linear.title_weight: the title counts once
    (tmp_path / "m" / "linear.json").write_text(json.dumps(settings))
    old = load_model(tmp_path / "m")
    assert old.tfidf.title_weight == 1 and not np.array_equal(old.scores(probe), m.scores(probe))
    for bad in (0, 101, 2.5, "7", True):
        settings["title_weight"] = bad
        (tmp_path / "m" / "linear.json").write_text(json.dumps(settings))
        with pytest.raises(ModelError, match="linear.json"):
            load_model(tmp_path / "m")


def test_first_line_is_title():
    from patentcpc.data import first_line_is_title

    for view in ({"fields": ["title", "abstract"]}, {"fields": ["Invention Title", "Abstract"]}, {"fields": ["text"]}):
        assert first_line_is_title(view)  # a title column (an export's name too), or whole texts
    for view in ({"fields": ["abstract", "title"]}, {"fields": ["claims"]}, {"fields": []}, {}, None):
        assert not first_line_is_title(view)


def test_title_weight_default_only_where_texts_start_with_a_title(tiny_jsonl, tmp_path):
    """A tfidf model weighs a title line by default when its texts begin with a title field (or
    are whole texts, read as ``title\\nabstract``); texts of other fields keep every line at 1."""
    rows = [json.loads(line) for line in tiny_jsonl.read_text().splitlines()]
    whole = tmp_path / "text.jsonl"
    whole.write_text("".join(json.dumps({"text": f"{r['title']}\n{r['abstract']}", "cpc": r["cpc"]}) + "\n"
                             for r in rows))
    abstracts = tmp_path / "abstracts.jsonl"
    abstracts.write_text("".join(json.dumps({"abstract": f"{r['abstract']}\nmore", "cpc": r["cpc"]}) + "\n"
                                 for r in rows))
    for path, want in ((tiny_jsonl, 10), (whole, 10), (abstracts, 1)):
        model = train_model(TrainConfig(model="tfidf"), str(path)).model
        assert model.manifest.config["linear"]["title_weight"] == want == model.tfidf.title_weight
    model = train_model(TrainConfig(model="tfidf", linear=LinearConfig(title_weight=4)), str(abstracts)).model
    assert model.tfidf.title_weight == 4  # set by the user: as set


def test_stemmer_round_trips_and_old_folders_read_unstemmed(tmp_path):
    labels = [["B29C"], ["H04L"], ["H04L"], ["B29C"]]
    m = LinearCPCModel.fit(STEM_TEXTS, labels, LinearConfig(label_docs="none"))
    m.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.tfidf.stemmer == "english"
    assert np.array_equal(loaded.scores(["the cured caul"]), m.scores(["the cured caul"]))
    assert loaded.scores(["curing"])[0].tolist() == loaded.scores(["cures"])[0].tolist()  # one stem
    assert loaded.tfidf.surface_forms("The CURED cauls, cured") == {"the": "the", "cure": "cured", "caul": "cauls"}
    settings = json.loads((tmp_path / "m" / "linear.json").read_text())
    for value, ok in ((None, True), ("klingon", False), ("../x", False)):
        settings["stemmer"] = value
        if value is None:  # a folder saved before linear.stemmer: no such key, words as written
            del settings["stemmer"]
        (tmp_path / "m" / "linear.json").write_text(json.dumps(settings))
        if ok:
            assert load_model(tmp_path / "m").tfidf.stemmer is None
        else:
            with pytest.raises(ModelError, match="linear.json"):
                load_model(tmp_path / "m")


def test_save_load_round_trip(tiny_model, tiny_jsonl, tmp_path):
    texts = load_data(tiny_jsonl).texts
    tiny_model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, LinearCPCModel)
    assert loaded.labels == tiny_model.labels
    assert np.array_equal(loaded.scores(texts), tiny_model.scores(texts))
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert files == {"manifest.json", "config.yaml", "linear.safetensors", "linear.json", "vocabulary.json"}
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib", ".skops") for p in (tmp_path / "m").iterdir())


def test_train_model_tfidf_end_to_end(tiny_jsonl, tmp_path):
    cfg = TrainConfig(model="tfidf", data=DataConfig())
    result = train_model(cfg, str(tiny_jsonl), str(tiny_jsonl), tmp_path / "model")
    assert isinstance(result, TrainResult) and result.output == str(tmp_path / "model")
    assert result.metrics["f1@1"] > 0.5
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["kind"] == "linear" and manifest["label_level"] == "subclass"
    assert manifest["text_view"] == {"fields": ["title", "abstract"], "joiner": "\n"}
    assert manifest["training_data"]["n_docs"] == 24
    assert manifest["training_data"]["fingerprint"] == load_data(tiny_jsonl).fingerprint()
    assert manifest["metrics"]["f1@1"] == pytest.approx(result.metrics["f1@1"])
    assert manifest["config"]["linear"]["C"] == 1.0 and manifest["config"]["model"] == "tfidf"
    assert manifest["config"]["linear"]["stemmer"] == "english"
    assert manifest["config"]["linear"]["title_weight"] == 10
    stored = json.loads((tmp_path / "model" / "linear.json").read_text())
    assert (stored["stemmer"], stored["title_weight"]) == ("english", 10)
    loaded = load_model(tmp_path / "model")
    ev = load_for_model(str(tiny_jsonl), DataConfig(), loaded)
    assert evaluate_model(loaded, ev)["f1@1"] == pytest.approx(result.metrics["f1@1"])


def test_train_model_needs_data():
    with pytest.raises(ConfigError, match="--data"):
        train_model(TrainConfig(model="tfidf"), None)


def test_train_model_class_level(tiny_jsonl, tmp_path):
    cfg = TrainConfig(model="tfidf", data=DataConfig(level="class"))
    result = train_model(cfg, str(tiny_jsonl), None, None)
    assert result.model.labels == ["A01", "A61", "G06", "H01", "H04"]
    assert result.model.manifest.label_level == "class" and result.output is None


@pytest.mark.integration
@pytest.mark.slow
def test_abstracts_holdout_f1(shared_data):
    """On a stratified 80/20 split of the shared abstracts the default linear model reaches the
    reference region (the CV figures are in benchmarks/linear.md)."""
    data = load_data(shared_data / "uspto-abstracts" / "patents.jsonl")
    train, test = split_data(data, (0.8, 0.2), seed=0)
    m = LinearCPCModel.fit(train.texts, train.labels)
    metrics = evaluate_scores(m.scores(test.texts), test.labels, m.labels, m.thresholds)
    assert metrics["f1@1"] >= 0.30, metrics


def test_word_tokenizer_copies_and_pickles_by_name():
    """scikit-learn clones the vectorizer (deepcopy) and joblib may pickle it: the stemmer goes by name."""
    import copy
    import pickle

    from patentcpc.words import WordTokenizer

    tok = WordTokenizer("english")
    assert tok("curing cauls x") == ["cure", "caul"]  # one-letter words are not tokens (scikit-learn's pattern)
    for other in (copy.deepcopy(tok), pickle.loads(pickle.dumps(tok))):  # noqa: S301  (our own object)
        assert other.stemmer == "english" and other("curing cauls") == ["cure", "caul"]
    assert WordTokenizer(None)("curing cauls") == ["curing", "cauls"]
