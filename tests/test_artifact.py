"""Model folders: manifest contents, refusal of tampered folders, atomic writes."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from patentcpc.config import LinearConfig
from patentcpc.data import load_data
from patentcpc.errors import ModelError, PatentCPCError
from patentcpc.kinds.linear.model import WEIGHTS, LinearCPCModel
from patentcpc.models.artifact import (
    FORMAT_VERSION,
    Manifest,
    atomic_dir,
    atomic_write_text,
    read_manifest,
    write_manifest,
)
from patentcpc.registry import get, load_model


@pytest.fixture
def saved(tiny_jsonl, tmp_path):
    data = load_data(tiny_jsonl)
    model = LinearCPCModel.fit(data.texts, data.labels, LinearConfig(), manifest_fields={
        "text_view": data.text_view, "training_data": {"source": str(tiny_jsonl), "fingerprint": data.fingerprint()},
        "metrics": {"f1@1": 0.5}, "config": {"linear": {"C": 0.5}}})
    path = tmp_path / "model"
    model.save(path)
    return path, model, data


def test_manifest_fields(saved):
    path, model, data = saved
    d = json.loads((path / "manifest.json").read_text())
    for key in ("format_version", "kind", "label_level", "labels", "text_view", "training_data", "metrics",
                "config", "score_type", "threshold", "patentcpc_version", "created_at"):
        assert key in d
    assert d["format_version"] == FORMAT_VERSION and d["kind"] == "linear"
    assert d["labels"] == model.labels and d["training_data"]["fingerprint"] == data.fingerprint()
    assert (path / "config.yaml").read_text().strip() == "linear:\n  C: 0.5"
    m = read_manifest(path)
    assert m.vocab.labels == model.labels and m.vocab.level == "subclass"


def test_saved_files_have_normal_permissions(saved):
    path, _, _ = saved
    mask = os.umask(0)
    os.umask(mask)
    for p in [path, *path.iterdir()]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & stat.S_IRGRP or mask & stat.S_IRGRP, (p, oct(mode))


def test_unknown_kind_refused(saved):
    path, _, _ = saved
    d = json.loads((path / "manifest.json").read_text())
    d["kind"] = "os.system"
    (path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="unknown model kind"):
        load_model(path)
    with pytest.raises(ModelError, match="unknown model kind 'pickle'"):
        get("pickle")


def test_bad_manifests_refused(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no manifest.json"):
        load_model(tmp_path / "empty")
    d = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**d, "format_version": 99}))
    with pytest.raises(ModelError, match="format_version"):
        load_model(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(path)
    assert issubclass(ModelError, PatentCPCError)


def test_weights_mismatch_or_missing_refused(saved, tiny_jsonl):
    path, model, _ = saved
    d = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**d, "labels": d["labels"][:-1]}))
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_model(path)
    (path / "manifest.json").write_text(json.dumps(d))
    (path / WEIGHTS).write_bytes(b"garbage, not a safetensors file")
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_model(path)
    (path / WEIGHTS).unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(path)


def test_failing_save_leaves_old_model_intact(saved, tiny_jsonl, monkeypatch):
    path, model, data = saved
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    other = LinearCPCModel.fit(data.texts[:12], data.labels[:12], LinearConfig())

    def boom(folder):
        (folder / "partial.bin").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(other, "_save_weights", boom)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp folders left
    assert np.array_equal(load_model(path).scores(data.texts), model.scores(data.texts))


def test_successful_save_replaces_model(saved):
    path, _, data = saved
    other = LinearCPCModel.fit(data.texts[:12], data.labels[:12], LinearConfig())
    other.save(path)
    assert load_model(path).labels == other.labels != data.labels
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_atomic_dir_and_write_text(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("x")
        raise RuntimeError("fail")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("x")
    assert (target / "a").read_text() == "x"
    f = tmp_path / "f.txt"
    atomic_write_text(f, "one")
    atomic_write_text(f, "two")
    assert f.read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "out"]


def test_manifest_round_trip_and_unknown_keys(tmp_path):
    m = Manifest(kind="linear", labels=["A01B", "H04L"], threshold=0.0, label_thresholds=[0.1, 0.2],
                 metrics={"f1@1": np.float32(0.25)})
    write_manifest(tmp_path, m)
    d = json.loads((tmp_path / "manifest.json").read_text())
    back = Manifest.from_dict(d)
    assert back.labels == m.labels and back.label_thresholds == [0.1, 0.2]
    assert back.metrics["f1@1"] == pytest.approx(0.25)
    d["some_future_field"] = 1  # unknown keys are refused, naming the key and the known ones
    with pytest.raises(ModelError, match="some_future_field.*known keys: format_version"):
        Manifest.from_dict(d)
    with pytest.raises(ModelError):
        Manifest.from_dict({"format_version": FORMAT_VERSION})  # no kind, no labels
