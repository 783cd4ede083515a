"""The README's tour runs as written (issue 29 §5): every `patentcpc` line names a command and options
that exist, every file it reads is either in ../shared/data or written by an earlier line, every
`--set` parses; the cheap lines are run for real against ../shared/data (integration); expensive
ones (transformer training, benchmarks, the server) are checked but not run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from patentcpc.registry import model_names

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

M_PLACEHOLDER = "<MINILM>"  # the tour's $M, the offline encoder's folder (computed by a python line)
# options whose value is a file or folder the command reads
INPUT_OPTIONS = ("--data", "--eval-data", "--input", "--model", "--index", "--baseline", "--transfer", "--models")
OUTPUT_OPTIONS = ("--output", "--output-dir", "--plots-dir")
MODEL_KINDS = tuple(model_names())  # train --model takes a kind's name as well as a folder
MAX_RUN_S = 30  # lines whose comment states a longer time (or none) are checked, not run
# lines not run by the test: transformer training, transformer inference, benchmarks, the server
EXPENSIVE = ("$M", "--arch", "models/minilm", "models/emb", "bench ", "serve ", "benchmark-embeddings",
             "train --data")


def tour_lines() -> list[str]:
    """The tour's shell lines: continuations joined, comments and blank lines dropped."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A tour"):]
    section = section[: section.index("\n## ", 5)]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in the tour"
    lines, current = [], ""
    for raw in block.group(1).splitlines():
        line = raw.rstrip()
        if current:
            line = current + " " + line.strip()
            current = ""
        if line.endswith("\\"):
            current = line[:-1].rstrip()
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line.strip())
    return lines


def tour_variables() -> dict[str, str]:
    """The tour's ``NAME=value`` lines (``$M``, set by a command, as a placeholder)."""
    out = {"M": M_PLACEHOLDER}
    for line in tour_lines():
        m = re.match(r"^([A-Z]\w*)=([^\s$(]\S*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _words(line: str) -> list[str]:
    """The line's words with the tour's variables filled in and the trailing comment dropped."""
    variables = tour_variables()
    words = shlex.split(line, comments=True)
    return [re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), w) for w in words]


def _stated_seconds(line: str) -> float | None:
    """The longest time the line's comment states (``8 s``, ``189 s``, ``3.5 min``), or None."""
    comment = line.partition("  #")[2] or line.partition(" # ")[2]
    times = [float(n) * (60 if unit.startswith("min") else 3600 if unit.startswith("h") else 1)
             for n, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(s|min|hours?|h)\b", comment.replace(",", ""))]
    return max(times) if times else None


def _command(words: list[str]):
    """The click command a `patentcpc ...` line runs, and the words after the command's name."""
    import typer

    from patentcpc.cli import app

    cmd = typer.main.get_command(app)
    rest = words[1:]
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest


def _options(cmd, rest: list[str]) -> dict[str, list[str]]:
    """``--option -> values`` of a line, checking each option exists on ``cmd`` (flags take no value)."""
    params = {opt: p for p in cmd.params for opt in [*p.opts, *p.secondary_opts]}
    found: dict[str, list[str]] = {}
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            assert name in params, f"{cmd.name}: no option {name}"
            p = params[name]
            if getattr(p, "is_flag", False):
                i += 1
                continue
            if not eq:
                i += 1
                value = rest[i]
            found.setdefault(name, []).append(value)
        i += 1
    return found


def test_the_tour_has_lines_and_no_placeholder_files():
    lines = tour_lines()
    assert sum(line.startswith("patentcpc ") for line in lines) >= 20
    text = " ".join(lines)
    for missing in ("export.csv", "export-2024.csv", "big.parquet", " train.jsonl", " test.jsonl"):
        assert missing not in text, missing


def test_every_tour_line_names_real_commands_options_and_files():
    """What each line reads exists in ../shared/data or is written by an earlier line."""
    from patentcpc.api import train_config

    written: list[str] = []
    for line in tour_lines():
        if not line.startswith("patentcpc "):
            continue
        words = _words(line)
        cmd, rest = _command(words)
        assert not hasattr(cmd, "commands"), f"no such command: {line}"
        opts = _options(cmd, rest)
        for value in opts.get("--set", []):
            train_config(overrides=[value])  # parses and type-checks
        for name in INPUT_OPTIONS:
            for value in opts.get(name, []):
                for item in value.split(",") if name == "--models" else [value]:
                    item = item.removeprefix("probe:")  # --model probe:ENCODER: that encoder, frozen
                    if item in (M_PLACEHOLDER, "lsa", *MODEL_KINDS) or item.startswith(("lsa:", "arch:")):
                        continue
                    norm = item.rstrip("/")
                    ok = norm.startswith("../shared/data/") or any(
                        norm == w or norm.startswith(w + "/") for w in written)
                    assert ok, f"{line}: {name} {item} is neither in ../shared/data nor written by an earlier line"
        for name in OUTPUT_OPTIONS:
            written += [v.rstrip("/") for v in opts.get(name, [])]


@pytest.mark.integration
def test_tour_files_exist_in_shared_data(shared_data):
    for line in tour_lines():
        for word in _words(line) if line.startswith("patentcpc ") else []:
            for item in word.split(","):
                if item.startswith("../shared/data/"):
                    assert (shared_data.parent.parent / item[len("../"):]).exists(), f"{line}: {item}"


@pytest.mark.integration
@pytest.mark.slow
def test_the_cheap_tour_lines_run_as_written(shared_data, tmp_path):
    """Every line that trains no transformer, starts no server and states a cost of at most
    MAX_RUN_S, run for real, in order, in a folder beside a link to ../shared (as the repository
    sits beside it)."""
    (tmp_path / "shared").symlink_to(shared_data.parent, target_is_directory=True)
    work = tmp_path / "repo"
    work.mkdir()
    exe = Path(sys.executable).parent / "patentcpc"
    setup = "; ".join(f"{k}={shlex.quote(v)}" for k, v in tour_variables().items() if k != "M")
    ran = 0
    skipped: list[str] = []  # outputs of the lines not run: a line that reads one is not run either
    for line in tour_lines():
        if not line.startswith("patentcpc "):
            continue
        opts = _options(*_command(_words(line)))
        reads = [v.rstrip("/") for name in INPUT_OPTIONS for v in opts.get(name, [])]
        cost = _stated_seconds(line)
        if (any(x in line for x in EXPENSIVE) or cost is None or cost > MAX_RUN_S
                or any(r == w or r.startswith(w + "/") for r in reads for w in skipped)):
            skipped += [v.rstrip("/") for name in OUTPUT_OPTIONS for v in opts.get(name, [])]
            continue
        cmd = f"{setup}; {shlex.quote(str(exe))} {line[len('patentcpc '):]}"
        res = subprocess.run(["bash", "-c", cmd], cwd=work, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{line}\n{res.stderr[-2000:]}"
        for name in OUTPUT_OPTIONS:
            for value in opts.get(name, []):
                assert (work / value).exists(), f"{line}: wrote no {value}"
        ran += 1
    assert ran >= 10
