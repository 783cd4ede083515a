"""``patentcpc bench``: both paths on the same documents, one JSON object with the ratio."""

from __future__ import annotations

import json
import statistics

import pytest

from patentcpc.errors import ConfigError
from patentcpc.kinds.transformer.bench import BenchConfig, run_bench, synthetic_texts

KEYS = {"ours_samples_per_s", "naive_samples_per_s", "speedup", "n_docs", "device", "model", "max_abs_diff",
        "ours_tokens_per_s", "naive_tokens_per_s"}


def test_run_bench_tiny_synthetic():
    res = run_bench(BenchConfig(arch="modernbert-tiny", n_docs=24, batch_size=8, repeats=2, max_length=64,
                                n_labels=8))
    assert set(res) >= KEYS
    assert res["n_docs"] == 24 and res["model"] == "arch:modernbert-tiny"
    assert res["max_abs_diff"] <= 1e-4 and res["outputs_match_1e-4"]
    assert res["padded_positions"]["ours"] <= res["padded_positions"]["naive"]
    # the summary is what the repetitions measured (timings themselves are not asserted: shared CPUs)
    assert len(res["speedup_per_rep"]) == 2
    assert res["speedup"] == pytest.approx(statistics.median(res["speedup_per_rep"]), abs=2e-3)


def test_bench_cli_prints_one_json_object(tmp_path, tiny_jsonl):
    from typer.testing import CliRunner

    from patentcpc.cli import app

    out = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["bench", "--arch", "bert-tiny", "--data", str(tiny_jsonl), "--repeats", "1",
                                   "--max-length", "32", "--output", str(out)])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(obj) >= KEYS and obj["n_docs"] == 24
    assert json.loads(out.read_text()) == obj  # --output holds the printed object, all of it


@pytest.mark.parametrize("kw", [{}, {"arch": "modernbert-tiny", "model": "x"}, {"arch": "bert-tiny", "repeats": 0}])
def test_bench_config_is_validated(kw):
    with pytest.raises(ConfigError):
        BenchConfig(**kw)


def test_bench_refuses_linear_models(tmp_path):
    from conftest import TINY_DOCS
    from patentcpc.errors import ModelError
    from patentcpc.kinds.linear.model import LinearCPCModel

    LinearCPCModel.fit([t for t, _ in TINY_DOCS], [[c] for _, c in TINY_DOCS]).save(tmp_path / "m")
    with pytest.raises(ModelError):
        run_bench(BenchConfig(model=str(tmp_path / "m"), n_docs=4))


def test_synthetic_texts_are_deterministic():
    assert synthetic_texts(5, 1) == synthetic_texts(5, 1)
    assert len(synthetic_texts(7)) == 7


def test_run_bench_onnx_backend():
    pytest.importorskip("onnxruntime")
    res = run_bench(BenchConfig(arch="bert-tiny", n_docs=12, batch_size=4, repeats=1, max_length=32, n_labels=4,
                                backend="onnx"))
    assert res["backend"] == "onnx" and res["max_abs_diff"] <= 1e-4 and res["onnx_export_seconds"] >= 0
