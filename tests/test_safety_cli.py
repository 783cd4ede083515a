"""Issue 11: the CLI never destroys user data, fails with a short message and the right exit code,
reports Ctrl-C as an interruption, and writes every output atomically (patentcpc.io)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patentcpc.io import (
    MARKER,
    OutputError,
    artifact_kind,
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_text,
    check_output_dir,
)

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PATENTCPC_DEBUG"}
    env.update(PYTHONPATH=str(REPO / "src"), HF_DATASETS_CACHE=str(tmp_path / "hf-cache"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PATENTCPC_PROGRESS="0", **extra)
    return env


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: real exit code, real stderr."""
    return subprocess.run([sys.executable, "-m", "patentcpc", *map(str, args)], capture_output=True, text=True,
                          env=_env(tmp_path, **env), cwd=tmp_path, timeout=300)


def _user_folder(tmp_path: Path, data: Path) -> tuple[Path, dict]:
    """A folder of user files: the training data, notes and a sub-folder."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    files = {"train.jsonl": data.read_bytes(), "notes.txt": b"my notes", "sub/keep.csv": b"a,b\n1,2\n"}
    for name, content in files.items():
        (mine / name).write_bytes(content)
    return mine, files


def _assert_kept(folder: Path, files: dict) -> None:
    now = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert now == files


def _no_traceback(res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stdout + res.stderr


# ----------------------------------------------------------------------------- data loss through --output


@pytest.mark.parametrize("command", [
    ["train", "--model", "tfidf"],
    ["tokenizer", "train", "--vocab-size", "200"],
    ["pretrain", "--arch", "modernbert-tiny", "--max-steps", "1"],
    ["index", "build"],
    ["data", "split"],
])
def test_user_folder_as_output_keeps_every_file(tmp_path, tiny_jsonl, command, cli):
    mine, files = _user_folder(tmp_path, tiny_jsonl)
    res = cli(*command, "--data", mine / "train.jsonl", "--output", mine)
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "error:" in res.stderr and str(mine) in res.stderr
    _assert_kept(mine, files)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mine")] == []  # no temp folders left


def test_benchmark_output_dir_refuses_a_user_folder(tmp_path, tiny_jsonl, cli):
    mine, files = _user_folder(tmp_path, tiny_jsonl)
    res = cli("benchmark-embeddings", "--models", "lsa:8", "--data", tiny_jsonl, "--output-dir", mine)
    assert res.returncode == 2 and "--output-dir" in res.stderr
    _assert_kept(mine, files)


def test_output_over_its_own_input_is_refused(tmp_path, tiny_jsonl, cli):
    model = tmp_path / "model"
    assert cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model).returncode == 0
    before = tiny_jsonl.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(tiny_jsonl)
    for output in (tiny_jsonl, link):  # the same file, also through a symlink
        res = cli("predict", "--model", model, "--input", tiny_jsonl, "--output", output)
        assert res.returncode == 2 and "input" in res.stderr, res.stderr
        res = cli("predict-batch", "--model", model, "--input", link, "--output", output)
        assert res.returncode == 2 and "input" in res.stderr, res.stderr
        _no_traceback(res)
    # a folder output that would replace the folder holding the input
    res = cli("train", "--model", "tfidf", "--data", model / "manifest.json", "--output", model,
                  "--overwrite")
    assert res.returncode == 2 and "input" in res.stderr
    assert tiny_jsonl.read_bytes() == before and (model / "manifest.json").exists()


def test_train_into_existing_model_needs_resume_or_overwrite(tmp_path, tiny_jsonl, cli):
    model = tmp_path / "model"
    assert cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model).returncode == 0
    manifest = (model / "manifest.json").read_bytes()
    res = cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model)
    assert res.returncode == 2
    assert "--resume" in res.stderr and "--overwrite" in res.stderr
    _no_traceback(res)
    assert (model / "manifest.json").read_bytes() == manifest
    res = cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert json.loads((model / "manifest.json").read_text())["created_at"]
    assert artifact_kind(model) == "model"


def test_overwrite_keeps_the_old_model_when_training_fails(tmp_path, tiny_jsonl, cli):
    from patentcpc.config import TrainConfig
    from patentcpc.registry import load_model, train_model

    model = tmp_path / "model"
    train_model(TrainConfig(model="tfidf"), str(tiny_jsonl), None, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "a", "cpc": "A01B"}\n{"id": broken\n')
    res = cli("train", "--model", "tfidf", "--data", bad, "--output", model, "--overwrite")
    assert res.returncode != 0
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    load_model(model)  # still usable
    # a failure while the new model is being written: the old one is untouched, no temp folder left
    with pytest.raises(RuntimeError), atomic_dir(model, kind="model") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("disk full")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []


def test_check_output_dir_rules(tmp_path):
    check_output_dir(tmp_path / "new", "index")  # does not exist
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", "index")
    with atomic_dir(tmp_path / "idx", kind="index") as tmp:
        (tmp / "index.json").write_text("{}")
    assert artifact_kind(tmp_path / "idx") == "index" and (tmp_path / "idx" / MARKER).exists()
    check_output_dir(tmp_path / "idx", "index")  # same kind
    with pytest.raises(OutputError, match="holds a patentcpc index"):
        check_output_dir(tmp_path / "idx", "tokenizer")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output_dir(tmp_path / "file.txt", "index")


# ----------------------------------------------------------------------------- usage mistakes


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["train", "--nope"],
    ["no-such-command"],
    ["predict", "--model", "m", "--text", "x", "--top-k", "many"],
    ["predict"],
])
def test_usage_mistakes_exit_2_without_traceback(args, cli):
    res = cli(*args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    _no_traceback(res)
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_usage_mistake_in_a_real_process(tmp_path):
    res = run_cli(tmp_path, "--bogus")
    assert res.returncode == 2 and "No such option: --bogus" in res.stderr
    _no_traceback(res)
    res = run_cli(tmp_path, "--debug", "cpc", "not-a-code")
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_version_and_debug(tmp_path, cli, monkeypatch):
    from patentcpc import __version__

    res = cli("--version")
    assert res.returncode == 0 and __version__ in res.stdout
    res = cli("predict", "--model", tmp_path / "missing", "--text", "x")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("--debug", "predict", "--model", tmp_path / "missing", "--text", "x")
    assert res.returncode == 2 and "Traceback" in res.stderr
    monkeypatch.setenv("PATENTCPC_DEBUG", "1")
    res = cli("predict", "--model", tmp_path / "missing", "--text", "x")
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_unexpected_exception_is_one_line_exit_1(monkeypatch, capsys):
    from patentcpc import cli
    from patentcpc.cli import predict

    def boom(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.delenv("PATENTCPC_DEBUG", raising=False)
    monkeypatch.setattr(predict, "print_prediction", boom)
    monkeypatch.setattr("patentcpc.cpc.parse_symbol", boom)
    with pytest.raises(SystemExit) as exc:
        cli.main(["cpc", "H04L"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError: boom" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- Ctrl-C


def _big_jsonl(path: Path, n: int) -> Path:
    rng = random.Random(0)
    codes = [f"{s}01{c}" for s in "ABCDEFGH" for c in "BKL"]
    words = [f"w{i}" for i in range(2000)]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"D{i}", "text": " ".join(rng.choice(words) for _ in range(40)),
                                 "cpc": rng.choice(codes)}) + "\n")
    return path


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 120) -> tuple[int, str]:
    t0 = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    assert proc.poll() is None, "the command finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
def test_ctrl_c_during_train_exits_130_without_a_model(tmp_path):
    data = _big_jsonl(tmp_path / "big.jsonl", 20000)
    out = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-m", "patentcpc", "train", "--model", "tfidf", "--data", str(data),
                             "--output", str(out)], env=_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    cache = tmp_path / "hf-cache"
    rc, err = _interrupt_when(proc, lambda: cache.is_dir() and any(cache.iterdir()))  # it is reading the data
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []


@pytest.mark.slow
def test_ctrl_c_during_predict_batch_exits_130_without_output(tmp_path, tiny_jsonl):
    model = tmp_path / "model"
    assert run_cli(tmp_path, "train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model).returncode == 0
    data = _big_jsonl(tmp_path / "big.jsonl", 4000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "preds.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "patentcpc", "predict-batch", "--model", str(model), "--input",
                             str(data), "--output", str(out), "--chunk-size", "4", "--quiet"],
                            env=_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    rc, err = _interrupt_when(proc, lambda: any(out_dir.iterdir()))  # the temp output exists: it is writing
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []  # neither the final file nor a temp file


# ----------------------------------------------------------------------------- atomic writers


def test_atomic_writers_leave_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    for exc in (ValueError("bad"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), atomic_open(target) as fh:
            fh.write("half")
            raise exc
        with pytest.raises(type(exc)), atomic_path(target) as tmp:
            tmp.write_text("half")
            raise exc
        with pytest.raises(type(exc)), atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("half")
            raise exc
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_writers_do_not_follow_planted_symlinks(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.jsonl"
    # links at every name the old hand-written writers used (pid based, predictable)
    for name in (f".{out.name}.tmp-{os.getpid()}", f"{out}.tmp-{os.getpid()}", f".{out.stem}.tmp-{os.getpid()}.jsonl"):
        (tmp_path / Path(name).name).symlink_to(victim)
    from patentcpc.io import write_jsonl
    from patentcpc.retrieval.evaluation import write_trec_qrels

    write_jsonl(iter([{"a": 1}]), out)
    write_trec_qrels({"q": {"d": 1}}, tmp_path / "out.jsonl")
    assert victim.read_text() == "precious"
    # a link at the destination itself is replaced, not written through
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    atomic_write_text(link, "new")
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_text() == "new"


def test_user_folder_kept_end_to_end(tmp_path, tiny_jsonl):
    """The issue's example, through the real console entry point."""
    mine, files = _user_folder(tmp_path, tiny_jsonl)
    res = run_cli(tmp_path, "train", "--model", "tfidf", "--data", mine / "train.jsonl", "--output", mine)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    _assert_kept(mine, files)


def test_resume_needs_something_to_resume(tmp_path, tiny_jsonl, cli):
    model = tmp_path / "model"
    assert cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model).returncode == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    res = cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model, "--resume")
    assert res.returncode == 2 and "--overwrite" in res.stderr  # a linear model trains in one go
    res = cli("train", "--model", "some-org/some-encoder", "--data", tiny_jsonl, "--output", model, "--resume")
    assert res.returncode == 2 and "nothing to --resume" in res.stderr
    res = cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model, "--resume", "--overwrite")
    assert res.returncode == 2
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
