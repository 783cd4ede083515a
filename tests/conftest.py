"""Shared fixtures. Unit tests build their own small data; integration tests use ../shared/data
(beside the repository) and are skipped when it is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
# ranx's numba kernels are compiled with cache=True: keep the cache where every run finds it (a
# read-only site-packages would otherwise mean compiling them again in every test session)
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".pytest_cache" / "numba"))
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test."""
    if not (SHARED_DATA / "uspto-abstracts" / "patents.jsonl").exists():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


TINY_DOCS = [
    ("Plough with adjustable soil working tines for tractors", "A01B"),
    ("Seed drill that plants seeds in furrows made in the soil", "A01C"),
    ("Harrow for breaking up soil clods in agriculture", "A01B"),
    ("Semiconductor transistor with a gate oxide layer on silicon", "H01L"),
    ("Method of etching a silicon wafer to form a semiconductor device", "H01L"),
    ("Wireless network base station scheduling data packets to user equipment", "H04W"),
    ("Encryption of data packets transmitted over a digital network", "H04L"),
    ("Routing digital data packets between network nodes with a protocol", "H04L"),
    ("Mobile phone handover between wireless cells of a radio network", "H04W"),
    ("Pharmaceutical composition containing an antibody for treating cancer", "A61K"),
    ("Tablet formulation of a drug with a polymer coating for oral delivery", "A61K"),
    ("Computer processor executing instructions from a cache memory", "G06F"),
]


@pytest.fixture
def tiny_jsonl(tmp_path: Path) -> Path:
    """A 24-row JSON Lines file (title, abstract, cpc) with 7 subclasses."""
    path = tmp_path / "tiny.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for rep in range(2):
            for i, (text, code) in enumerate(TINY_DOCS):
                extra = "H04L" if code == "H04W" else ""
                cpc = f"{code} 1/00 (20130101)" + (f"; {extra} 5/00 (20130101)" if extra else "")
                fh.write(json.dumps({"patent_id": f"P{rep}{i:02d}", "title": text.split(" ")[0] + f" {rep}",
                                     "abstract": text, "cpc": cpc}) + "\n")
    return path


@pytest.fixture(scope="module")
def linear_model():
    """A TF-IDF model fitted on the tiny documents (twice each), one per test module."""
    from patentcpc.kinds.linear.model import LinearCPCModel

    return LinearCPCModel.fit([t for t, _ in TINY_DOCS] * 2, [[c] for _, c in TINY_DOCS] * 2)


@pytest.fixture(scope="module")
def transformer_model():
    """A random-init tiny ModernBERT over three codes (seeded), one per test module."""
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel

    torch.manual_seed(0)
    return TransformerCPCModel.create(["A01B", "H01L", "H04L"], arch="modernbert-tiny", max_length=64,
                                      dropout=0.0, device="cpu")


class CliResult:
    """What ``patentcpc`` gave the shell: exit code, stdout, stderr (``lines``: its non-blank lines)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``patentcpc.cli.main`` in this process (fast): ``cli(*args)`` -> :class:`CliResult` with the
    exit code it would give the shell; no ``--debug``, no progress output, a private datasets cache."""
    from patentcpc.cli import main

    monkeypatch.delenv("PATENTCPC_DEBUG", raising=False)
    monkeypatch.setenv("PATENTCPC_PROGRESS", "0")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))

    def invoke(*args: object) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exc.value.code
        return CliResult(code if isinstance(code, int) else 1, out, err)

    return invoke
