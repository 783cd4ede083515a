"""A model kind from another package: examples/patentcpc-centroid, registered through the
``patentcpc.kinds`` entry point, installed into a temporary folder (offline, the environment
untouched) and used through the unchanged CLI, API and service; a folder of a kind that is not
installed; the registry's entry-point loading; the ``options`` configuration section."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from patentcpc import registry
from patentcpc.config import TrainConfig, resolve
from patentcpc.errors import ConfigError, ModelError

EXAMPLE = REPO / "examples" / "patentcpc-centroid"
TEXT = "Semiconductor transistor with a gate oxide on silicon"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example installed with pip into a folder of its own: no dependencies, no index, no build
    isolation (the build backend is the one patentcpc itself is built with)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools (the example's build backend) is not installed")
    source = tmp_path_factory.mktemp("example") / EXAMPLE.name  # a copy: the build leaves build/ beside it
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "--no-cache-dir", "--disable-pip-version-check", "--target", str(target), str(source)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (target / "patentcpc_centroid" / "__init__.py").is_file()
    return target


def _clear_caches() -> None:
    registry.kinds.cache_clear()
    registry._select.cache_clear()


@contextlib.contextmanager
def installed(folder: Path):
    """``folder``'s packages (and their entry points) importable in this process, as if installed here."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    _clear_caches()
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] in ("patentcpc_centroid", "fake_kinds")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        _clear_caches()


def patentcpc(*args: object, site: Path, tmp: Path) -> subprocess.CompletedProcess:
    """``python -m patentcpc ARGS`` in a new process, with ``site`` on its PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PATENTCPC_DEBUG"}
    env.update(PATENTCPC_PROGRESS="0", HF_DATASETS_CACHE=str(tmp / "hf-cache"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site or ""), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "patentcpc", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_example_kind_trains_predicts_and_evaluates_through_the_cli(site, tiny_jsonl, tmp_path):
    model = tmp_path / "model"
    r = patentcpc("train", "--model", "centroid", "--data", tiny_jsonl, "--output", model,
                  "--set", "options.temperature=0.1", site=site, tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "saved centroid model (7 labels)" in r.stdout
    files = {p.name for p in model.iterdir()}
    assert {"manifest.json", "config.yaml", "centroid.json", "vocabulary.json", "idf.npy", "centroids.npy"} <= files
    assert all(Path(f).suffix in (".json", ".yaml", ".npy") for f in files)  # data only
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["kind"] == "centroid" and manifest["extra"]["kind_package"] == "patentcpc-centroid"
    assert manifest["config"]["options"] == {"temperature": 0.1} and "transformer" not in manifest["config"]

    preds = tmp_path / "preds.jsonl"
    r = patentcpc("predict", "--model", model, "--input", tiny_jsonl, "--output", preds, site=site, tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 24 and rows[3]["labels"][0] == "H01L"  # the semiconductor patent

    r = patentcpc("evaluate", "--model", model, "--data", tiny_jsonl, "--json", site=site, tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["f1@1"] > 0.8


def test_api_service_and_calibration(site, tiny_jsonl, tmp_path):
    from fastapi.testclient import TestClient

    import patentcpc as api
    from patentcpc.serving import create_app

    with installed(site):
        trained = api.train(model="centroid", options={"ngram_max": 2}, data=str(tiny_jsonl),
                            eval_data=str(tiny_jsonl), output=tmp_path / "m")  # calibrated on --eval-data
        assert trained.calibrator is not None and trained.manifest.metrics["f1@1"] > 0.8
        model = api.load_model(tmp_path / "m")
        assert api.evaluate(model, tiny_jsonl)["f1@1"] == pytest.approx(trained.manifest.metrics["f1@1"])
        assert type(model).__name__ == "CentroidCPCModel" and model.tfidf.ngram_range == (1, 2)
        assert model.predict([TEXT])[0][0].code == "H01L"
        with TestClient(create_app(model)) as client:
            assert client.get("/health").json()["model_kind"] == "centroid"
            r = client.post("/predict", json={"text": "Harrow breaking up soil clods", "top_k": 2})
            assert r.status_code == 200, r.text
            assert r.json()["predictions"][0]["code"] == "A01B"
        np.save(tmp_path / "m" / "idf.npy", np.zeros(3, dtype=np.float32))  # a folder whose files disagree
        with pytest.raises(ModelError, match="idf.npy and centroids.npy disagree"):
            api.load_model(tmp_path / "m")


@pytest.mark.parametrize(("overrides", "message"), [
    (["options.temprature=1"], "options: unknown option(s) temprature of the centroid kind (known: temperature,"),
    (["options.temperature=0"], "options.temperature must be a number in 0.0001..100.0, not 0"),
    (["options.ngram_max=yes"], "options.ngram_max must be an integer in 1..3, not True"),
])
def test_the_kind_checks_its_options_in_one_line(site, tiny_jsonl, tmp_path, cli, overrides, message):
    with installed(site):
        r = cli("train", "--model", "centroid", "--data", tiny_jsonl, "--output", tmp_path / "m",
                *[a for o in overrides for a in ("--set", o)])
    assert r.returncode == 2 and len(r.lines) == 1 and message in r.lines[0], r.lines
    assert not (tmp_path / "m").exists()


def test_a_folder_of_a_kind_that_is_not_installed_names_the_package(site, tiny_jsonl, tmp_path, cli):
    if importlib.util.find_spec("patentcpc_centroid") is not None:
        pytest.skip("patentcpc-centroid is installed in this environment")
    with installed(site):
        assert cli("train", "--model", "centroid", "--data", tiny_jsonl, "--output", tmp_path / "m").returncode == 0
    for args in (("predict", "--model", tmp_path / "m", "--text", TEXT),
                 ("evaluate", "--model", tmp_path / "m", "--data", tiny_jsonl)):
        r = cli(*args)
        assert r.returncode == 2 and r.lines == [
            f"error: {tmp_path / 'm'}: model kind 'centroid' is not installed: the folder says it comes from the "
            "package patentcpc-centroid (pip install patentcpc-centroid)"]


def test_options_are_refused_by_a_kind_that_reads_none(tiny_jsonl, tmp_path, cli):
    r = cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", tmp_path / "m", "--set", "options.C=1")
    assert r.returncode == 2 and len(r.lines) == 1 and "options.C: a 'linear' model takes no options" in r.lines[0]


def test_the_options_section_from_yaml_and_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: centroid\noptions:\n  temperature: 0.2\n  ngram_max: 2\n")
    cfg = resolve(TrainConfig, str(f), None, ["options.ngram_max=3", "options.extra.deep=x"])
    assert cfg.options == {"temperature": 0.2, "ngram_max": 3, "extra": {"deep": "x"}}
    assert TrainConfig().options == {}
    with pytest.raises(ConfigError, match="options must be a mapping"):
        resolve(TrainConfig, None, None, ["options=5"])


FAKE_KINDS = '''
from patentcpc.registry import Kind

DUPLICATE = Kind(name="linear", model="fake_kinds:Nothing")
NOT_A_KIND = 42


def make():
    return Kind(name="fake", model="fake_kinds:Nothing", package="fake-kinds")
'''


def test_entry_points_broken_duplicate_or_not_a_kind_are_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "fake_kinds.py").write_text(FAKE_KINDS)
    info = tmp_path / "fake_kinds-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-kinds\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[patentcpc.kinds]\nbroken = fake_kinds:MISSING\nmissing_module = no_such_module_here:KIND\n"
        "duplicate = fake_kinds:DUPLICATE\nnot_a_kind = fake_kinds:NOT_A_KIND\nfactory = fake_kinds:make\n")
    with caplog.at_level(logging.WARNING, logger="patentcpc.registry"), installed(tmp_path):
        found = registry.kinds()
        assert found["fake"].package == "fake-kinds"  # a callable entry point gives its Kind
        assert found["linear"].package == "patentcpc"  # a built-in kind is never replaced
    warned = " | ".join(r.getMessage() for r in caplog.records)
    assert "'broken' (fake_kinds:MISSING) failed to load" in warned
    assert "'missing_module' (no_such_module_here:KIND) failed to load" in warned
    assert "'duplicate': kind 'linear' is already registered; ignored" in warned
    assert "'not_a_kind' (fake_kinds:NOT_A_KIND) is not a patentcpc.registry.Kind" in warned
    assert "fake" not in registry.kinds()  # gone with its folder
