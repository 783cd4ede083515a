"""Issue 33, section 4: an error a user causes ends with exit code 2 and one line naming the file
(and row and field where there is one), never a library's exception name; options are checked
before any work; library warnings and progress bars never turn an error into several lines."""

from __future__ import annotations

import errno
import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_DOCS, CliResult

DEEP = 50_000


@pytest.fixture
def cli(cli, monkeypatch, tmp_path):
    """conftest's in-process CLI, run from ``tmp_path`` (relative outputs land there)."""
    monkeypatch.chdir(tmp_path)
    return cli


def _one_line_error(res: CliResult, *needles: str, code: int = 2) -> str:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert len(res.lines) == 1, res.stderr
    line = res.lines[0]
    assert line.startswith("error: ") and "Traceback" not in res.stderr, line
    for needle in needles:
        assert needle in line, (needle, line)
    for name in ("RecursionError", "UnicodeDecodeError", "ValueError", "KeyError", "IndexError", "TypeError",
                 "InvalidParameterError", "Errno", "SafetensorError"):
        assert code != 2 or name not in line, line  # exit 2: the user's mistake, in words
    return line


def _rows() -> list[dict]:
    return [{"patent_id": f"P{rep}{i:02d}", "title": text.split()[0], "abstract": text, "cpc": f"{code} 1/00"}
            for rep in range(2) for i, (text, code) in enumerate(TINY_DOCS)]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    return _jsonl(tmp_path / "tiny.jsonl", _rows())


# ----------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_label_nested_50000_deep_is_a_bad_row(tmp_path, cli, fmt):
    import csv

    rows = _rows()
    rows[3]["cpc"] = "[" * DEEP + "]" * DEEP
    path = tmp_path / f"deep.{fmt}"
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        _jsonl(path, rows)
    _one_line_error(cli("data", "stats", "--data", path), f"deep.{fmt}", "row 4", "field 'cpc'", "nested too deeply")


def test_gzip_file_with_bytes_that_are_not_utf8(tmp_path, cli):
    path = tmp_path / "latin.jsonl.gz"
    lines = [json.dumps(r, ensure_ascii=False) for r in _rows()]
    lines[1] = lines[1].replace("Seed", "S\u00e9ed")
    with gzip.open(path, "wb") as fh:
        fh.write("\n".join(lines).encode("latin-1") + b"\n")
    _one_line_error(cli("data", "stats", "--data", path), "latin.jsonl.gz", "line 2", "not UTF-8", "0xe9")


def test_gzip_file_that_is_not_gzip(tmp_path, cli):
    path = tmp_path / "broken.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in _rows()))
    path.write_bytes(path.read_bytes()[:-20])  # truncated: no end of stream, no checksum
    _one_line_error(cli("data", "stats", "--data", path), "broken.jsonl.gz", "decompress")


@pytest.mark.parametrize(("value", "kind"), [({"a": 1}, "JSON object"), ([{"a": 1}], "list of objects")])
def test_a_text_field_holding_a_json_object_is_refused(tmp_path, cli, value, kind):
    rows = [{"id": r["patent_id"], "text": r["abstract"], "cpc": r["cpc"]} for r in _rows()]
    rows[1]["text"] = value
    path = _jsonl(tmp_path / "obj.jsonl", rows)
    _one_line_error(cli("data", "stats", "--data", path), "obj.jsonl", "row 2", "field 'text'", kind)
    res = cli("data", "stats", "--data", path, "--on-bad-row", "skip")
    assert res.returncode == 0 and "23" in res.stdout, res.stderr


def test_data_split_of_a_set_with_one_label_set(tmp_path, cli):
    rows = _rows()
    for r in rows:
        r["cpc"] = "A01B 1/00"
    path = _jsonl(tmp_path / "one.jsonl", rows)
    res = cli("data", "split", "--data", path, "--output", tmp_path / "parts")
    assert res.returncode == 0, res.stderr
    counts = [len((tmp_path / "parts" / f"{name}.jsonl").read_text().splitlines())
              for name in ("train", "valid", "test")]
    assert sum(counts) == len(rows) and all(counts), counts


# ----------------------------------------------------------------------------- paths


def test_output_path_under_an_existing_file(tmp_path, cli, tiny):
    (tmp_path / "afile").write_text("mine")
    _one_line_error(cli("data", "split", "--data", tiny, "--output", tmp_path / "afile" / "parts"), "afile")
    assert (tmp_path / "afile").read_text() == "mine"


def test_config_naming_a_folder(tmp_path, cli, tiny):
    (tmp_path / "conf").mkdir()
    _one_line_error(cli("train", "--model", "tfidf", "--data", tiny, "--output", tmp_path / "m", "--config",
                        tmp_path / "conf"), "conf", "folder")
    assert not (tmp_path / "m").exists()


def test_config_naming_a_fifo_does_not_block(tmp_path, cli, tiny):
    import os

    os.mkfifo(tmp_path / "fifo.yaml")
    _one_line_error(cli("train", "--model", "tfidf", "--data", tiny, "--output", tmp_path / "m", "--config",
                        tmp_path / "fifo.yaml"), "fifo.yaml", "not a regular file")


def test_config_file_that_is_not_utf8(tmp_path, cli, tiny):
    (tmp_path / "conf.yaml").write_bytes(b"seed: 1\nmodel: t\xe9\n")
    _one_line_error(cli("train", "--model", "tfidf", "--data", tiny, "--output", tmp_path / "m", "--config",
                        tmp_path / "conf.yaml"), "conf.yaml", "UTF-8")


def test_os_error_messages_name_the_file_and_a_plain_cause():
    from patentcpc.cli import os_error_message

    cases = [
        (FileExistsError(errno.EEXIST, "File exists", "out/a"), "out/a: file exists", 2),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "conf"), "conf: is a folder", 2),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/x"), "f/x: not a folder", 2),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "/root/x: permission denied", 2),
        (OSError(errno.ENOSPC, "No space left on device", "idx/e.npy"), "idx/e.npy: disk full", 1),
    ]
    for exc, want, code in cases:
        message, status = os_error_message(exc, [])
        assert message.startswith(want) and status == code, (message, status)
    message, status = os_error_message(OSError("25942 requested and 24544 written"), ["index", "build",
                                                                                      "--output", "idx"])
    assert message == "disk full (24544 of 25942 bytes written) while writing idx" and status == 1


def test_os_errors_on_temporary_outputs_name_the_output():
    """patentcpc writes through temporary names: an error on one names the output the user gave."""
    from patentcpc.cli import os_error_message

    message, status = os_error_message(FileNotFoundError(errno.ENOENT, "No such file or directory",
                                                         "/proc/.preds.jsonl.3r_gdicw.tmp.jsonl"))
    assert message == "/proc/preds.jsonl: no such file or folder" and status == 2
    message, _ = os_error_message(OSError(errno.ENOSPC, "No space left on device",
                                          "out/.idx.tmp-ab_d1234/bm25/data.npy"))
    assert message == "out/idx/bm25/data.npy: disk full"


def test_no_progress_bars_when_nobody_watches(monkeypatch):
    """Progress bars (tqdm, the Hugging Face hub's) are off when stderr is not a terminal or
    PATENTCPC_PROGRESS=0: a bar printed before an error would make it two lines."""
    from patentcpc import cli

    for name in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATENTCPC_PROGRESS", "0")
    cli._quiet_library_progress()
    import os

    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_a_full_disk_during_index_build(tmp_path, cli, tiny, monkeypatch):
    from patentcpc.retrieval import search

    def full(*_a, **_k):
        raise OSError("25942 requested and 24544 written")  # numpy's words when the disk fills up

    monkeypatch.setattr(search.SearchIndex, "save", full)
    line = _one_line_error(cli("index", "build", "--data", tiny, "--output", tmp_path / "idx"), "disk full",
                           str(tmp_path / "idx"), code=1)
    assert "24544 of 25942 bytes" in line


# ----------------------------------------------------------------------------- options, checked before any work


@pytest.mark.parametrize(("args", "needle"), [
    (["--set", "seed=-1"], "seed must be an integer in 0..4294967295"),
    (["--set", f"seed={2**40}"], "seed must be an integer in 0..4294967295"),
    (["--seed", str(2**40)], "seed must be an integer in 0..4294967295"),
    (["--set", "linear.max_features=0"], "linear.max_features"),
    (["--set", "linear.n_jobs=0"], "linear.n_jobs"),
    (["--set", "linear.parallel_min_docs=-5"], "linear.parallel_min_docs"),
    (["--set", "seed=" + "[" * 5000], "nested too deeply"),
])
def test_bad_config_values_are_refused_before_any_work(tmp_path, cli, tiny, args, needle, monkeypatch):
    import patentcpc.registry as registry

    def never(*_a, **_k):
        raise AssertionError("training started")

    monkeypatch.setattr(registry, "train_model", never)
    _one_line_error(cli("train", "--model", "tfidf", "--data", tiny, "--output", tmp_path / "m", *args), needle)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("learner", ["ovr", "omikuji"])
def test_min_df_above_the_document_count(tmp_path, cli, tiny, learner):
    """A value only the data can refute (scikit-learn's vectorizer error) is still the option's fault."""
    _one_line_error(cli("train", "--model", "tfidf", "--data", tiny, "--output", tmp_path / "m", "--set",
                        f"linear.learner={learner}", "--set", "linear.min_df=1000000000"), "linear.min_df=1000000000",
                    "training documents")
    assert not (tmp_path / "m").exists()


def test_train_embeddings_seed_out_of_range(tmp_path, cli, tiny):
    (tmp_path / "encoder").mkdir()  # (the seed is refused before a model is read)
    _one_line_error(cli("train-embeddings", "--model", tmp_path / "encoder", "--data", tiny, "--output",
                        tmp_path / "e", "--signal", "cpc", "--seed", "-1"), "--seed")
    assert not (tmp_path / "e").exists()


def test_data_split_seed_out_of_range(tmp_path, cli, tiny):
    _one_line_error(cli("data", "split", "--data", tiny, "--output", tmp_path / "p", "--seed", "-1"), "seed")
    assert not (tmp_path / "p").exists()


def test_serve_log_level_is_checked_first(tmp_path, cli):
    line = _one_line_error(cli("serve", "--model", tmp_path / "nowhere", "--log-level", "bogus"), "--log-level",
                           "bogus")
    assert "info" in line
    res = cli("--debug", "serve", "--model", tmp_path / "nowhere", "--log-level", "bogus")
    assert res.returncode == 2 and "Traceback" in res.stderr and "--log-level" in res.stderr
    from patentcpc.serving import check_log_level

    assert check_log_level("WARNING") == "warning"


def test_serve_host_and_port_are_checked_first(tmp_path, cli):
    """A host that does not resolve or a port in use: one line and exit 2, not uvicorn's start-up log
    and exit code 3 after the model has loaded."""
    import socket

    _one_line_error(cli("serve", "--model", tmp_path / "nowhere", "--host", "256.1.1.1"), "--host 256.1.1.1")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(cli("serve", "--model", tmp_path / "nowhere", "--port", port), f"127.0.0.1:{port}",
                        "in use")


# ----------------------------------------------------------------------------- broken folders


def _index(tmp_path: Path, cli, tiny: Path) -> Path:
    res = cli("index", "build", "--data", tiny, "--output", tmp_path / "idx")
    assert res.returncode == 0, res.stderr
    return tmp_path / "idx"


def _edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def _edit_npy(path: Path, fn) -> None:
    a = np.load(path)
    fn(a)
    np.save(path, a)


@pytest.mark.parametrize("breakage", [
    lambda d: _edit_json(d / "index.json", lambda doc: doc.__setitem__("labels", [7] * len(doc["ids"]))),
    lambda d: _edit_json(d / "index.json", lambda doc: doc.__setitem__("titles", [None] * len(doc["ids"]))),
    lambda d: _edit_npy(d / "bm25" / "indices.csc.index.npy", lambda a: a.__setitem__(0, 10_000)),
    lambda d: _edit_npy(d / "bm25" / "indptr.csc.index.npy", lambda a: a.__setitem__(3, 10**6)),
    lambda d: _edit_json(d / "bm25" / "vocab.index.json", lambda v: v.__setitem__(next(iter(v)), 99_999)),
    lambda d: _edit_json(d / "bm25" / "vocab.index.json", lambda v: v.__setitem__(next(iter(v)), "x")),
], ids=["labels", "titles", "doc-numbers", "column-pointers", "term-id", "term-id-type"])
def test_a_broken_search_index(tmp_path, cli, tiny, breakage):
    index = _index(tmp_path, cli, tiny)
    breakage(index)
    _one_line_error(cli("search", "plough soil", "--index", index, "--mode", "bm25"), "idx")


def test_a_head_file_that_is_not_safetensors(tmp_path, cli):
    from patentcpc.kinds.transformer.model import TransformerCPCModel

    folder = tmp_path / "tf"
    TransformerCPCModel.create(["A01B", "H04L"], arch="bert-tiny", max_length=32, device="cpu").save(folder)
    (folder / "head.safetensors").write_bytes(b"\x80" + b"\x00" * 7 + b"not a safetensors file")
    _one_line_error(cli("predict", "--model", folder, "--text", "a plough"), "head.safetensors")


# ----------------------------------------------------------------------------- one line


def _as_in_a_real_process(monkeypatch) -> None:
    """Warnings and unhandled log records reach stderr as they would outside pytest (which records
    warnings and gives the root logger handlers of its own)."""
    import logging
    import sys

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def _cpc_raising(monkeypatch, exc: BaseException, warn: str | None = None) -> None:
    _as_in_a_real_process(monkeypatch)

    def parse(*_a, **_k):
        if warn:
            warnings.warn(warn, UserWarning, stacklevel=1)
            import logging

            logging.getLogger("somelib").warning("%s (logged)", warn)
        raise exc

    monkeypatch.setattr("patentcpc.cpc.parse_symbol", parse)


def test_library_warnings_before_an_error_are_held_back(tmp_path, cli, monkeypatch, capsys):
    from patentcpc.errors import CPCError

    _cpc_raising(monkeypatch, CPCError("'zz' is not a CPC symbol"), warn="a library has something to say")
    _one_line_error(cli("cpc", "zz"), "not a CPC symbol")
    res = cli("--debug", "cpc", "zz")  # --debug shows everything, as it happens
    assert res.returncode == 2 and "a library has something to say" in res.stderr and "Traceback" in res.stderr
    _serve_logs_as_it_runs_once_its_checks_pass(tmp_path, cli, monkeypatch, capsys)


def _serve_logs_as_it_runs_once_its_checks_pass(tmp_path, cli, monkeypatch, capsys):
    """A long-running command is not held back: once serve's checks pass, the service's own log
    (a 500's "internal error") reaches stderr at once."""
    import logging
    import socket

    import patentcpc.serving as serving
    from patentcpc.kinds.linear.model import LinearCPCModel

    LinearCPCModel.fit([t for t, _ in TINY_DOCS], [[c] for _, c in TINY_DOCS]).save(tmp_path / "m")
    _cpc_raising(monkeypatch, RuntimeError("unused"), warn="held before the service starts")
    seen = {}

    def run_server(*_a, **_k):
        logging.getLogger("patentcpc.serving").error("internal error: boom")
        seen["err"] = capsys.readouterr().err

    monkeypatch.setattr(serving, "run_server", run_server)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    res = cli("serve", "--model", tmp_path / "m", "--port", port)
    assert res.returncode == 0, res.stderr
    assert "internal error: boom" in seen["err"]


def test_library_warnings_are_shown_when_the_command_succeeds(cli, monkeypatch):
    import patentcpc.cpc as cpc

    real = cpc.parse_symbol
    _as_in_a_real_process(monkeypatch)

    def parse(*a, **k):
        warnings.warn("a library has something to say", UserWarning, stacklevel=1)
        return real(*a, **k)

    monkeypatch.setattr(cpc, "parse_symbol", parse)
    res = cli("cpc", "H04L")
    assert res.returncode == 0 and "H04L" in res.stdout
    assert "warning: a library has something to say" in res.stderr


def test_a_multi_line_library_message_is_one_line(cli, monkeypatch):
    _cpc_raising(monkeypatch, ValueError("first line\n  second line\nthird line"))
    line = _one_line_error(cli("cpc", "H04L"), code=1)
    assert "first line; second line; third line" in line


def test_an_unexpected_error_names_the_input(tmp_path, cli, tiny, monkeypatch):
    import patentcpc.data as data

    def boom(*_a, **_k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(data, "compute_stats", boom)
    line = _one_line_error(cli("data", "stats", "--data", tiny), "ZeroDivisionError: boom", code=1)
    assert str(tiny) in line


# ----------------------------------------------------------------------------- usage and early checks


@pytest.mark.parametrize("args, needle", [
    (["predict", "--bogus"], "No such option: --bogus"),
    (["predict", "--top-k", "many", "--text", "x", "--model", "m"], "--top-k"),
    (["nosuch"], "No such command"),
])
def test_usage_mistake_is_one_line(cli, args, needle):
    line = _one_line_error(cli(*args), needle)
    assert "--help" in line  # where to look, on the same line


def test_train_without_data_says_so_before_any_hub_look_up(cli, monkeypatch):
    import patentcpc.hub as hub

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked before the missing --data was reported")

    monkeypatch.setattr(hub, "check_hub", no_hub)
    _one_line_error(cli("train", "--output", "m"), "--data is required")
    _one_line_error(cli("train", "--model", "someone/some-encoder", "--output", "m"), "--data is required")


def test_a_hub_id_is_looked_up_once_and_fails_fast(cli, monkeypatch, tmp_path):
    """Deciding encoder or decoder asks the hub once (short timeout, no retries) and an unreachable
    hub is one line with a hint, not a minute of retries repeated three times."""
    import patentcpc.hub as hub
    from patentcpc.errors import ModelError
    from patentcpc.registry import _select

    _select.cache_clear()
    calls = []

    def unreachable(repo_id, repo_type="model"):
        calls.append(repo_id)
        raise ModelError(f"{repo_id}: no such local folder; as a Hugging Face Hub id: the Hugging Face Hub "
                         "cannot be reached; use a local folder, or set HF_HUB_OFFLINE=1")

    monkeypatch.setattr(hub, "check_hub", unreachable)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "cpc_ids": c}) + "\n" for t, c in TINY_DOCS), encoding="utf-8")
    _one_line_error(cli("train", "--model", "someone/some-encoder", "--data", data, "--output", "m"),
                    "someone/some-encoder", "HF_HUB_OFFLINE")
    assert calls == ["someone/some-encoder"]
    _select.cache_clear()
