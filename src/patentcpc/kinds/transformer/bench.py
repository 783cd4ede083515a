"""``patentcpc bench``: throughput of patentcpc's batch predictor against a naive loop.

The naive loop is what a first script does: tokenize in input order, pad to the longest document
of each fixed-size batch, forward. Both run on the same model and the same documents in one
process, repetitions alternate (naive, ours, ours, naive, ...) so that a change in machine load
hits both, and ``speedup`` is the median of the paired per-repetition ratios (the ratio of the
median times is reported too). Outputs of the two paths are
compared (``max_abs_diff`` of the logits).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from patentcpc.errors import ConfigError, ModelError
from patentcpc.inference_options import InferenceOptions
from patentcpc.kinds.transformer.engine import plan_batches, predict_logits

SYNTHETIC_WORDS = (
    "a", "method", "of", "forming", "semiconductor", "device", "wireless", "network", "signal", "receiver",
    "antenna", "composition", "comprising", "polymer", "layer", "substrate", "vehicle", "engine", "control",
    "unit", "data", "packet", "processor", "memory", "cell", "battery", "electrode", "catalyst", "compound",
    "treatment", "sensor",
)

BACKENDS = ("torch", "onnx", "onnx-int8")


@dataclass
class BenchConfig:
    """What to measure. Exactly one of ``arch`` (random-init preset) and ``model`` (a folder).

    ``batch_size`` is the naive loop's fixed batch; the predictor batches by ``token_budget``
    with at most ``max_batch`` documents (its own batching is what is being measured).
    ``backend``: the predictor runs with PyTorch, or exported to ONNX (fp32 or int8) with ONNX
    Runtime, same batching (export time is reported, not counted); the naive loop is PyTorch.
    """

    arch: str | None = None
    model: str | None = None
    data: str | None = None
    n_docs: int | None = None
    batch_size: int = 32
    max_batch: int = 128
    token_budget: int = 16384
    repeats: int = 3
    max_length: int = 512
    n_labels: int = 64
    device: str | None = None
    compile: bool = False
    autocast: str = "auto"
    backend: str = "torch"
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.arch is None) == (self.model is None):
            raise ConfigError("give exactly one of --arch and --model")
        for name in ("batch_size", "max_batch", "token_budget", "repeats", "max_length", "n_labels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not '{self.backend}'")
        if self.n_docs is not None and self.n_docs < 1:
            raise ConfigError(f"n_docs must be >= 1, not {self.n_docs}")

    def inference_options(self) -> InferenceOptions:
        return InferenceOptions(batch_size=self.max_batch, token_budget=self.token_budget,
                                autocast=self.autocast, compile=self.compile)


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` documents of log-normal word counts (median about 120 words), like abstracts."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(120), 0.5, n).astype(int), 5, 600)
    return [" ".join(rng.choice(SYNTHETIC_WORDS, k)) for k in lengths]


def load_texts(cfg: BenchConfig) -> tuple[list[str], str]:
    if cfg.data is None:
        return synthetic_texts(cfg.n_docs or 512, cfg.seed), "synthetic"
    from patentcpc.data import load_data

    texts = load_data(cfg.data, require_labels=False).texts
    if cfg.n_docs is not None:
        texts = (texts * (cfg.n_docs // max(len(texts), 1) + 1))[: cfg.n_docs]
    if not texts:
        raise ConfigError(f"{cfg.data}: no documents")
    return texts, str(cfg.data)


def load_bench_model(cfg: BenchConfig):
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel

    torch.manual_seed(cfg.seed)
    if cfg.model is not None:
        from patentcpc.registry import kind_of, load_model

        model = load_model(cfg.model, device=cfg.device)
        kind_of(model).require("bench", str(cfg.model))
        if not isinstance(model, TransformerCPCModel):  # a kind that declares "bench" must bring its own
            raise ModelError(f"{cfg.model}: this benchmark measures the transformer's batching engine")
        return model, str(cfg.model)

    labels = [f"L{i:03d}" for i in range(cfg.n_labels)]
    model = TransformerCPCModel.create(labels, arch=cfg.arch, max_length=cfg.max_length, dropout=0.0,
                                       device=cfg.device)
    model.network.eval()
    return model, f"arch:{cfg.arch}"


def naive_logits(model, texts: list[str], batch_size: int) -> tuple[np.ndarray, int]:
    """The baseline: input order, fixed-size batches padded to their longest, forward.
    Returns the logits and the number of (padded) token positions processed."""
    import torch

    from patentcpc.models.network import pad_batch

    out, positions = [], 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            ids, mask = pad_batch(model.tokenize(texts[start : start + batch_size])["input_ids"],
                                  model.tokenizer.pad_token_id or 0)  # the model's own rows (views), padded right
            positions += ids.numel()
            logits = model.network(ids.to(model.device), mask.to(model.device))
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out), positions


def onnx_predictor(model, cfg: BenchConfig, folder: str):
    """(logits function, export seconds) of ``model`` exported to ONNX in ``folder``."""
    from patentcpc.kinds.transformer.export import export_onnx, int8_path, onnx_logits, onnx_session

    t0 = time.perf_counter()
    path = export_onnx(model, os.path.join(folder, "model.onnx"), quantize=cfg.backend == "onnx-int8")
    if cfg.backend == "onnx-int8":
        path = int8_path(path)
    seconds = time.perf_counter() - t0
    session = onnx_session(path)

    def logits(batch: list[str]) -> np.ndarray:
        return onnx_logits(session, model.tokenizer, batch, len(model.labels), model.max_length, cfg.max_batch,
                           cfg.token_budget)

    return logits, seconds


def run_bench(cfg: BenchConfig, log=None) -> dict:
    """Measure both paths; the result dict is what ``patentcpc bench`` prints."""
    import dataclasses
    import tempfile

    if cfg.backend == "torch":
        return _run_bench(cfg, log, None)
    if str(cfg.device or "cpu") != "cpu":
        raise ConfigError("--backend onnx runs on the CPU: leave out --device or give --device cpu")
    cfg = dataclasses.replace(cfg, device="cpu")
    with tempfile.TemporaryDirectory(prefix="patentcpc-bench-") as folder:
        return _run_bench(cfg, log, folder)


def _run_bench(cfg: BenchConfig, log, onnx_folder: str | None) -> dict:
    import torch

    load_start = os.getloadavg()[0]
    model, model_name = load_bench_model(cfg)
    texts, source = load_texts(cfg)
    opts = cfg.inference_options()
    export_seconds = None
    if onnx_folder is not None:
        ours_fn, export_seconds = onnx_predictor(model, cfg, onnx_folder)
    else:
        def ours_fn(batch: list[str]) -> np.ndarray:
            return predict_logits(model, batch, options=opts)
    lengths = [len(x) for x in model.tokenize(texts)["input_ids"]]
    n_tokens = int(sum(lengths))
    ours_positions = int(sum(len(b) * max(lengths[i] for i in b)
                             for b in plan_batches(lengths, opts.batch_size, opts.token_budget)))

    # warm-up (allocator, thread pools, lazy inits; compiles when --compile), not timed
    warm = texts[: min(len(texts), cfg.batch_size)]
    if log is not None:
        log(f"{len(texts)} documents, {n_tokens} tokens; {cfg.repeats} timed runs of each path after a warm-up")
    naive_logits(model, warm, cfg.batch_size)
    ours_fn(warm)

    times: dict[str, list[float]] = {"naive": [], "ours": []}
    results: dict[str, np.ndarray] = {}
    naive_positions = 0
    for rep in range(cfg.repeats):
        order = ("naive", "ours") if rep % 2 == 0 else ("ours", "naive")
        for which in order:
            _sync(model)
            t0 = time.perf_counter()
            if which == "naive":
                results[which], naive_positions = naive_logits(model, texts, cfg.batch_size)
            else:
                results[which] = ours_fn(texts)
            _sync(model)
            times[which].append(time.perf_counter() - t0)
            if log is not None:
                done = [t for ts in times.values() for t in ts]
                left = 2 * cfg.repeats - len(done)  # each remaining run costs about the mean run so far
                eta = f" (about {_duration(left * statistics.fmean(done))} left)" if left else ""
                log(f"rep {rep + 1}/{cfg.repeats} {which}: {times[which][-1]:.2f} s{eta}")

    t_naive, t_ours = statistics.median(times["naive"]), statistics.median(times["ours"])
    # paired ratios (each naive run against the ours run next to it): robust to drifting load
    per_rep = [a / b for a, b in zip(times["naive"], times["ours"], strict=True)]
    n = len(texts)
    diff = np.abs(results["ours"] - results["naive"])
    return {
        "model": model_name,
        "backend": cfg.backend,
        "data": source,
        "n_docs": n,
        "n_tokens": n_tokens,
        "device": _device_name(model.device),
        "torch_threads": torch.get_num_threads(),
        "ours_samples_per_s": round(n / t_ours, 2),
        "naive_samples_per_s": round(n / t_naive, 2),
        "ours_tokens_per_s": round(n_tokens / t_ours, 1),
        "naive_tokens_per_s": round(n_tokens / t_naive, 1),
        "speedup": round(statistics.median(per_rep), 3),
        "speedup_per_rep": [round(r, 3) for r in per_rep],
        "speedup_of_median_times": round(t_naive / t_ours, 3),
        "ours_seconds": [round(t, 3) for t in times["ours"]],
        "naive_seconds": [round(t, 3) for t in times["naive"]],
        "padded_positions": {"ours": ours_positions, "naive": naive_positions},
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "outputs_match_1e-4": bool(diff.size == 0 or diff.max() <= 1e-4),
        "onnx_export_seconds": round(export_seconds, 2) if export_seconds is not None else None,
        "options": {**asdict(opts), "naive_batch_size": cfg.batch_size, "max_length": model.max_length,
                    "repeats": cfg.repeats},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "load_avg_1m_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)]},
    }


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _sync(model) -> None:
    import torch

    if getattr(model.device, "type", "cpu") == "cuda":
        torch.cuda.synchronize()


def _device_name(device) -> str:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bench_command(options: dict, log=None) -> dict:
    """The transformer kind's ``bench`` capability: :func:`run_bench` of a :class:`BenchConfig` built
    from the CLI's ``options``."""
    return run_bench(BenchConfig(**options), log=log)
