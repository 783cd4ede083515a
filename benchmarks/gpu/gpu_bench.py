"""GPU throughput of ModernBERT-base and BERT-base: inference and training, one process, <= 5 min.

    PYTHONPATH=src python benchmarks/gpu/gpu_bench.py OUTDIR [--smoke] [--device cuda]
    (or: bash benchmarks/gpu/run.sh OUTDIR [--smoke])

Writes OUTDIR/results.json and OUTDIR/results.md (rewritten atomically after every configuration,
so a run cut short still leaves what it measured) and OUTDIR/log.txt (via run.sh).

What it measures (random weights built from config, no downloads; speed does not depend on them):

* documents: ``--n-docs`` (50,000) token-id sequences whose lengths follow a log-normal fitted to
  USPTO abstracts (see LENGTH_FIT), truncated to 512, [CLS] ... [SEP], random ids otherwise;
* inference: ModernBERT-base and BERT-base (665 labels, cls pooling), fp32 and bf16 autocast,
  batching ``padded`` (input order, fixed batch, padded to the longest row), ``sorted`` (by length,
  token budget, padded to the longest row: patentcpc's padded path), ``unpadded`` (the sorted
  batches packed back to back, variable-length attention: :mod:`patentcpc.kinds.transformer.unpadded`, ModernBERT
  only), each without and with ``torch.compile``;
* training: ModernBERT-base, bf16 autocast (fp32 master weights, AdamW), BCE over 665 labels,
  batch 32, max length 512, padded (transformers' SDPA) and unpadded;
* peak GPU memory (``torch.cuda.max_memory_allocated``) of each configuration.

Time-boxing: each configuration runs ``--warmup`` batches first (not timed; they absorb
torch.compile's compilation, whose time is reported separately), then times batches drawn in
random order from the configuration's full batch plan until all are done or ``--box-s`` seconds
have passed. When the box ends first, the time for all the documents is extrapolated from the mean
time of the measured batches (an unbiased estimate, the batches being a random sample of the
plan) and the row says so (``measured`` column). A configuration that would start after
``--budget-s`` seconds is skipped and listed as such. Tokenization is not timed (ids are made
up front); host-to-device copies and bringing logits back to the host are.

Imports: torch, transformers, numpy and the standard library, plus patentcpc modules that need
nothing else (``patentcpc.kinds.transformer.unpadded``, ``patentcpc.kinds.transformer.model``,
``patentcpc.kinds.transformer.engine``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Token lengths of the 552 abstracts of /work/shared/data/uspto-abstracts/patents.jsonl under the
# all-MiniLM-L6-v2 (BERT WordPiece) tokenizer, [CLS] and [SEP] included, no truncation; log-normal
# fit by the mean and standard deviation (ddof=1) of log(length). Measured lengths: mean 135.7,
# median 135, 5th/95th percentile 58/224, min 25, max 385, none over 512. (Title + ". " + abstract:
# mu 4.9337, sigma 0.3831, mean 148.7.)
LENGTH_FIT = {"distribution": "lognormal", "mu": 4.8294, "sigma": 0.4231, "min": 8, "max": 512,
              "source": "uspto-abstracts/patents.jsonl abstracts (552), all-MiniLM-L6-v2 tokenizer, "
                        "[CLS]+[SEP] included; fit: mean and std (ddof=1) of log(length)",
              "measured": {"n": 552, "mean": 135.7, "median": 135, "p5": 58, "p95": 224, "min": 25, "max": 385}}

N_LABELS = 665
GOAL_SAMPLES_PER_S = 9000
GOAL_RATIO = 2.0

MODELS = {
    # the real models' shapes and vocabularies (ModernBERT-base: 50368 tokens, BERT-base: 30522)
    "modernbert-base": {"preset": "modernbert-base", "vocab_size": 50368, "max_position_embeddings": 8192},
    "bert-base": {"preset": "bert-base", "vocab_size": 30522, "max_position_embeddings": 512},
}
SMOKE_MODELS = {
    "modernbert-tiny": {"preset": "modernbert-tiny", "vocab_size": 1000, "max_position_embeddings": 1024},
    "bert-tiny": {"preset": "bert-tiny", "vocab_size": 1000, "max_position_embeddings": 512},
}


# ----------------------------------------------------------------------------- setup


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--smoke", action="store_true", help="tiny models, a few dozen documents (CPU test)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--n-docs", type=int, default=None, help="documents (default 50000; smoke 24)")
    ap.add_argument("--batch-size", type=int, default=256, help="padded batching: documents per batch")
    ap.add_argument("--max-batch", type=int, default=1024, help="sorted/unpadded: at most this many documents")
    ap.add_argument("--token-budget", type=int, default=65536,
                    help="sorted/unpadded: rows x longest row per batch")
    ap.add_argument("--box-s", type=float, default=None, help="timed seconds per configuration (default 7; smoke 0.3)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no configuration after this many seconds (default 240; smoke 120)")
    ap.add_argument("--compile-reserve-s", type=float, default=60.0,
                    help="a torch.compile configuration starts only if this much of the budget is left")
    ap.add_argument("--warmup", type=int, default=None, help="untimed batches per configuration (default 3; smoke 1)")
    ap.add_argument("--max-length", type=int, default=None, help="longest document (default 512; smoke 64)")
    ap.add_argument("--compile", choices=("bf16", "all", "none"), default=None,
                    help="which configurations also run with torch.compile (default bf16; smoke none)")
    ap.add_argument("--train-steps", type=int, default=None, help="timed training steps at most (default 60; smoke 2)")
    ap.add_argument("--rows", choices=("all", "eager", "compile"), default="all",
                    help="inference rows: all, only those without torch.compile, or only the compiled ones "
                         "(a second call after a first run that ran out of time)")
    ap.add_argument("--no-train", dest="train", action="store_false", help="leave out the training rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.n_docs is None:
        args.n_docs = 24 if args.smoke else 50_000
    if args.box_s is None:
        args.box_s = 0.05 if args.smoke else 7.0
    if args.budget_s is None:
        args.budget_s = 120.0 if args.smoke else 240.0
    if args.compile is None:
        args.compile = "none" if args.smoke else "bf16"
    if args.train_steps is None:
        args.train_steps = 1 if args.smoke else 60
    if args.warmup is None:
        args.warmup = 1 if args.smoke else 3
    if args.max_length is None:
        args.max_length = 64 if args.smoke else 512
    return args


def doc_lengths(n: int, seed: int, max_len: int = 512):
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = rng.lognormal(LENGTH_FIT["mu"], LENGTH_FIT["sigma"], n)
    return np.clip(np.rint(raw), LENGTH_FIT["min"], min(LENGTH_FIT["max"], max_len)).astype(np.int64)


def make_docs(lengths, vocab_size: int, seed: int) -> list:
    """Token-id arrays: [CLS]=1, random ids in [5, vocab), [SEP]=2 (ids 0-4 are special)."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    flat = rng.integers(5, vocab_size, int(lengths.sum()))
    docs, start = [], 0
    for n in lengths.tolist():
        d = flat[start : start + n].copy()
        d[0], d[-1] = 1, 2
        docs.append(d)
        start += n
    return docs


def build_net(spec: dict, device, seed: int):
    import torch
    from transformers import AutoConfig, AutoModel

    from patentcpc.kinds.transformer.model import ARCH_PRESETS, EncoderClassifier

    kw = dict(ARCH_PRESETS[spec["preset"]])
    model_type = kw.pop("model_type")
    special = {"pad_token_id": 0, "cls_token_id": 1, "sep_token_id": 2}
    if model_type == "modernbert":
        special.update(bos_token_id=1, eos_token_id=2)
    cfg = AutoConfig.for_model(model_type, vocab_size=spec["vocab_size"],
                               max_position_embeddings=spec["max_position_embeddings"], **special, **kw)
    torch.manual_seed(seed)
    with torch.device(device):
        enc = AutoModel.from_config(cfg, attn_implementation="sdpa")
        net = EncoderClassifier(enc, N_LABELS, "cls", dropout=0.0)
    return net.to(device)


def machine_info(device) -> dict:
    import numpy
    import torch
    import transformers

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "transformers": transformers.__version__, "numpy": numpy.__version__,
            "device": str(device), "cpu_count": os.cpu_count(),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                    cudnn=torch.backends.cudnn.version())
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = out.stdout.strip()
            info["driver"] = out.stdout.split(",")[1].strip() if out.returncode == 0 and "," in out.stdout else None
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"unavailable: {exc}"
    else:
        info.update(gpu=None, driver=None, torch_threads=torch.get_num_threads(),
                    processor=platform.processor() or platform.machine())
    return info


# ----------------------------------------------------------------------------- timing


class Clock:
    def __init__(self, device):
        import torch

        self.device = device
        self.cuda = device.type == "cuda"
        self.torch = torch

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self):
        return round(self.torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if self.cuda else None


def time_batches(run_one, batches: list, weights: list, box_s: float, warmup: int, clock: Clock, rng) -> dict:
    """Warm up on ``warmup`` batches, then time batches in random order until all are done or
    ``box_s`` passed. ``weights``: (docs, tokens, padded positions) per batch."""
    order = rng.permutation(len(batches)).tolist()
    clock.reset_peak()
    t0 = time.perf_counter()
    for i in order[:warmup]:
        run_one(batches[i])
    clock.sync()
    warm_s = time.perf_counter() - t0
    done, t0 = [], time.perf_counter()
    for i in order:
        run_one(batches[i])  # each returns host logits: synchronous
        done.append(i)
        if time.perf_counter() - t0 >= box_s:
            break
    clock.sync()
    elapsed = time.perf_counter() - t0
    n_docs = sum(w[0] for w in weights)
    n_tokens = sum(w[1] for w in weights)
    m_docs = sum(weights[i][0] for i in done)
    m_tokens = sum(weights[i][1] for i in done)
    complete = len(done) == len(batches)
    total_s = elapsed if complete else elapsed / len(done) * len(batches)
    return {"samples_per_s": round(n_docs / total_s, 1), "tokens_per_s": round(n_tokens / total_s, 0),
            "seconds_all_docs": round(total_s, 3), "extrapolated": not complete,
            "measured_batches": len(done), "total_batches": len(batches), "measured_docs": m_docs,
            "measured_tokens": m_tokens, "measured_seconds": round(elapsed, 3),
            "measured_samples_per_s": round(m_docs / elapsed, 1), "warmup_seconds": round(warm_s, 3),
            "padded_positions_all": int(sum(w[2] for w in weights)), "peak_gpu_gib": clock.peak_gib()}


# ----------------------------------------------------------------------------- inference


def plan(docs, mode: str, args) -> list:
    import numpy as np

    from patentcpc.kinds.transformer.engine import plan_batches

    lengths = [len(d) for d in docs]
    if mode == "padded":
        return [np.arange(s, min(s + args.batch_size, len(docs))) for s in range(0, len(docs), args.batch_size)]
    return plan_batches(lengths, args.max_batch, args.token_budget)


def prepare(docs, idx, mode: str):
    """Host tensors of one batch: (ids, mask) padded, or (flat ids, lengths) unpadded."""
    import numpy as np
    import torch

    rows = [docs[i] for i in idx]
    if mode == "unpadded":
        return torch.from_numpy(np.concatenate(rows)), [len(r) for r in rows]
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def packed_logits(net, flat, cu, max_len: int, layout, kernel: str):
    return net.head(net.embed_packed(flat, cu, max_len, layout, kernel))


def padded_logits(net, ids, mask):
    return net(ids, mask, None)


def inference_config(net, docs, mode: str, dtype_name: str, compiled: bool, args, device, clock, rng) -> dict:
    import contextlib

    import torch

    from patentcpc.kinds.transformer.unpadded import pack_layout, select_kernel

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    kernel = None
    if mode == "unpadded":
        kernel = select_kernel(device, dtype) or "sdpa_repad"
    idx_batches = plan(docs, mode, args)
    host = [prepare(docs, idx, mode) for idx in idx_batches]
    weights = [(len(idx), int(sum(len(docs[i]) for i in idx)),
                int(sum(len(docs[i]) for i in idx)) if mode == "unpadded"
                else len(idx) * max(len(docs[i]) for i in idx)) for idx in idx_batches]
    fn_packed, fn_padded = packed_logits, padded_logits
    if compiled:
        torch._dynamo.reset()  # each compiled row compiles afresh (and stays under the recompile limit)
        fn_packed = torch.compile(packed_logits, dynamic=True)
        fn_padded = torch.compile(padded_logits, dynamic=True)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if dtype_name == "bf16"
                else contextlib.nullcontext())

    def run_one(batch):
        with torch.inference_mode(), autocast:
            if mode == "unpadded":
                flat, lens = batch
                cu, max_len, layout = pack_layout(lens, device)
                out = fn_packed(net, flat.to(device, non_blocking=True), cu, max_len, layout, kernel)
            else:
                ids, mask = batch
                out = fn_padded(net, ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
            return out.float().cpu()

    net.eval()
    res = time_batches(run_one, host, weights, args.box_s, args.warmup, clock, rng)
    res["kernel"] = kernel or "sdpa (transformers, padded)"
    return res


def agreement_checks(net, docs, device, name: str) -> list[dict]:
    """Unpadded vs padded logits on the same documents (max |difference|), bf16 and fp32."""
    import torch

    from patentcpc.kinds.transformer.unpadded import pack_layout, select_kernel

    idx = list(range(min(64, len(docs))))
    ids, mask = prepare(docs, idx, "sorted")
    flat, lens = prepare(docs, idx, "unpadded")
    out = []
    net.eval()
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        kernel = select_kernel(device, dtype) or "sdpa_repad"
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16"):
            padded = net(ids.to(device), mask.to(device), None).float()
            cu, max_len, layout = pack_layout(lens, device)
            unp = packed_logits(net, flat.to(device), cu, max_len, layout, kernel).float()
        diff = (padded - unp).abs().max().item()
        scale = padded.abs().max().item()
        out.append({"model": name, "dtype": dtype_name, "kernel": kernel, "docs": len(idx),
                    "max_abs_diff": diff, "max_abs_logit": scale})
    out.append(gradient_check(net, docs, device, name))
    return out


def gradient_check(net, docs, device, name: str) -> dict:
    """Training: gradients of a BCE loss through the unpadded kernel vs the padded forward, bf16
    autocast, 16 documents; ||g_unpadded - g_padded|| / ||g_padded|| over all parameters."""
    import torch

    from patentcpc.kinds.transformer.unpadded import select_kernel

    kernel = select_kernel(device, torch.bfloat16) or "sdpa_repad"
    idx = list(range(min(16, len(docs))))
    ids, mask = (t.to(device) for t in prepare(docs, idx, "sorted"))
    y = (torch.arange(len(idx) * N_LABELS, device=device).view(len(idx), N_LABELS) % 97 == 0).float()
    grads = []
    net.train()
    for k in (None, kernel):
        net.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = net(ids, mask, k)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
        grads.append(torch.cat([p.grad.float().flatten() for p in net.parameters() if p.grad is not None]))
    net.zero_grad(set_to_none=True)
    net.eval()
    rel = ((grads[1] - grads[0]).norm() / grads[0].norm()).item()
    return {"model": name, "dtype": "bf16 (gradients)", "kernel": kernel, "docs": len(idx),
            "max_abs_diff": rel, "max_abs_logit": None, "what": "relative L2 difference of all gradients"}


# ----------------------------------------------------------------------------- training


def training_config(net, docs, kernel: str | None, args, device, clock, rng) -> dict:
    import numpy as np
    import torch

    batch = 32
    net.train()
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5, **opt_kw)
    order = rng.permutation(len(docs))
    steps = args.train_steps + args.warmup  # batches of 32 random documents (cycling when few)
    batches = [order[(s * batch + np.arange(batch)) % len(docs)] for s in range(steps)]
    host = []
    for idx in batches:
        ids, mask = prepare(docs, idx, "sorted")
        y = torch.from_numpy((rng.random((len(idx), N_LABELS)) < 2.0 / N_LABELS).astype(np.float32))
        host.append((ids, mask, y))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(b):
        ids, mask, y = (t.to(device, non_blocking=True) for t in b)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = net(ids, mask, kernel)
        loss = loss_fn(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    clock.reset_peak()
    t0 = time.perf_counter()
    for b in host[: args.warmup]:
        step(b)
    clock.sync()
    warm_s = time.perf_counter() - t0
    timed = host[args.warmup :] or host
    n, tokens, t0 = 0, 0, time.perf_counter()
    for b in timed:
        last_loss = step(b)
        n += 1
        tokens += int(b[1].sum())
        if time.perf_counter() - t0 >= args.box_s:
            break
    clock.sync()
    elapsed = time.perf_counter() - t0
    net.eval()
    return {"samples_per_s": round(n * batch / elapsed, 1), "tokens_per_s": round(tokens / elapsed, 0),
            "steps": n, "batch_size": batch, "seconds": round(elapsed, 3), "warmup_seconds": round(warm_s, 3),
            "last_loss": round(last_loss, 5), "kernel": kernel or "sdpa (transformers, padded)",
            "peak_gpu_gib": clock.peak_gib()}


# ----------------------------------------------------------------------------- report


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def goal_summary(results: dict) -> dict:
    rows = [r for r in results["inference"] if r.get("status") == "ok" and r["dtype"] == "bf16"]
    best = {}
    for r in rows:
        if r["model"] not in best or r["samples_per_s"] > best[r["model"]]["samples_per_s"]:
            best[r["model"]] = r
    names = list(results["models"])
    mb, bb = (best.get(names[0]), best.get(names[1])) if len(names) == 2 else (None, None)
    out = {"goal_samples_per_s": GOAL_SAMPLES_PER_S, "goal_ratio": GOAL_RATIO,
           "best_modernbert": {k: mb[k] for k in ("batching", "compile", "kernel", "samples_per_s")} if mb else None,
           "best_bert": {k: bb[k] for k in ("batching", "compile", "kernel", "samples_per_s")} if bb else None}
    if mb and bb:
        ratio = mb["samples_per_s"] / bb["samples_per_s"]
        out.update(ratio=round(ratio, 3), meets_samples_goal=mb["samples_per_s"] >= GOAL_SAMPLES_PER_S,
                   meets_ratio_goal=ratio >= GOAL_RATIO)
    return out


def markdown(results: dict) -> str:
    m = results["machine"]
    a = results["args"]
    smoke = " (SMOKE: tiny models on a CPU, not a measurement)" if a["smoke"] else ""
    lines = [f"# GPU throughput: {' vs '.join(results['models'])}{smoke}",
             "",
             f"- device: {m.get('gpu') or m['device']}; driver {m.get('driver') or '–'}; torch {m['torch']} "
             f"(CUDA {m.get('torch_cuda') or '–'}); transformers {m['transformers']}; python {m['python']}",
             f"- started {results['started']}, wall {fmt(results.get('wall_seconds'), 1)} s; "
             f"status: {results['status']}",
             f"- documents: {a['n_docs']:,}, token lengths ~ log-normal(mu={LENGTH_FIT['mu']}, "
             f"sigma={LENGTH_FIT['sigma']}) clipped to [{LENGTH_FIT['min']}, {a['max_length']}] "
             f"(fit to USPTO abstracts, MiniLM tokenizer); this sample: mean {fmt(results['lengths']['mean'], 1)}, "
             f"median {fmt(results['lengths']['median'])}, max {results['lengths']['max']}, "
             f"{results['lengths']['tokens']:,} tokens",
             f"- batching: padded = input order, {a['batch_size']} docs, padded to the longest; sorted = by length, "
             f"<= {a['max_batch']} docs and <= {a['token_budget']:,} padded tokens; unpadded = the sorted batches "
             f"packed, variable-length attention (fp32: no flash kernel, attention re-padded: `sdpa_repad`)",
             f"- timing: {a['warmup']} warm-up batches, then batches in random order for <= {a['box_s']} s; "
             f"rows whose `measured` column is below 100% are **extrapolated** to all documents from the mean time "
             f"of the measured batches (a random sample of the batch plan); tokenization untimed, host<->device "
             f"copies timed; compile time is in `warm-up s`",
             "- peak memory: `torch.cuda.max_memory_allocated` per configuration",
             "", "## Inference", "",
             "| model | dtype | batching | compile | attention | samples/s | tokens/s | measured | warm-up s "
             "| peak GiB | status |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results["inference"]:
        if r.get("status") == "ok":
            frac = r["measured_docs"] / max(a["n_docs"], 1)
            lines.append(f"| {r['model']} | {r['dtype']} | {r['batching']} | {'yes' if r['compile'] else 'no'} | "
                         f"{r['kernel']} | {fmt(r['samples_per_s'])} | {fmt(r['tokens_per_s'])} | {frac:.0%} | "
                         f"{fmt(r['warmup_seconds'], 1)} | {fmt(r['peak_gpu_gib'], 2)} | ok |")
        else:
            lines.append(f"| {r['model']} | {r['dtype']} | {r['batching']} | {'yes' if r['compile'] else 'no'} | "
                         f"– | – | – | – | – | – | {r['status']} |")
    lines += ["", f"## Training ({results['models'][0] if results['models'] else ''}, bf16 autocast, BCE over "
              f"{N_LABELS} labels, batch 32, max length {a['max_length']}, AdamW)", "",
              "| attention | samples/s | tokens/s | steps | warm-up s | peak GiB | status |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for r in results["training"]:
        if r.get("status") == "ok":
            lines.append(f"| {r['kernel']} | {fmt(r['samples_per_s'], 1)} | {fmt(r['tokens_per_s'])} | {r['steps']} | "
                         f"{fmt(r['warmup_seconds'], 1)} | {fmt(r['peak_gpu_gib'], 2)} | ok |")
        else:
            lines.append(f"| {r.get('attention', '–')} | – | – | – | – | – | {r['status']} |")
    lines += ["", "## Unpadded vs padded logits (same documents)", "",
              "| model | dtype | attention | docs | max abs diff (gradients: relative L2) | max abs logit |",
              "|---|---|---|---:|---:|---:|"]
    for c in results["checks"]:
        if "error" in c:
            lines.append(f"| {c['model']} | – | – | – | {c['error']} | – |")
        else:
            top = c.get("max_abs_logit")
            lines.append(f"| {c['model']} | {c['dtype']} | {c['kernel']} | {c['docs']} | {c['max_abs_diff']:.2e} | "
                         f"{'–' if top is None else f'{top:.3f}'} |")
    g = results.get("goal") or {}
    lines += ["", "## Goal", "",
              f"Goal: >= {GOAL_SAMPLES_PER_S:,} samples/s for ModernBERT-base and >= {GOAL_RATIO}x BERT-base, "
              "bf16, best configuration of each, same run."]
    if g.get("ratio") is not None:
        mb, bb = g["best_modernbert"], g["best_bert"]
        lines += ["",
                  f"- best {results['models'][0]}: {fmt(mb['samples_per_s'])} samples/s ({mb['batching']}, "
                  f"compile {'yes' if mb['compile'] else 'no'}, {mb['kernel']}): "
                  f"{'meets' if g['meets_samples_goal'] else 'below'} the {GOAL_SAMPLES_PER_S:,} goal",
                  f"- best {results['models'][1]}: {fmt(bb['samples_per_s'])} samples/s ({bb['batching']}, "
                  f"compile {'yes' if bb['compile'] else 'no'}); ratio {g['ratio']:.2f}x: "
                  f"{'meets' if g['meets_ratio_goal'] else 'below'} the {GOAL_RATIO}x goal"]
        if a["smoke"]:
            lines.append("- (smoke run on tiny models: these figures say nothing about the goal)")
    lines += ["", "Attention kernels found: " + "; ".join(f"{k}: {v}" for k, v in results["kernels"].items()), ""]
    return "\n".join(lines)


def write_outputs(outdir: Path, results: dict) -> None:
    results["goal"] = goal_summary(results)
    for name, text in (("results.json", json.dumps(results, indent=2, default=str) + "\n"),
                       ("results.md", markdown(results))):
        tmp = outdir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, outdir / name)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    import numpy as np
    import torch

    from patentcpc.kinds.transformer.unpadded import available_kernels

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    models = SMOKE_MODELS if args.smoke else MODELS
    lengths = doc_lengths(args.n_docs, args.seed, args.max_length)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "status": "running", "args": vars(args),
               "machine": machine_info(device), "kernels": available_kernels(), "length_fit": LENGTH_FIT,
               "lengths": {"n": int(len(lengths)), "mean": float(lengths.mean()), "median": float(np.median(lengths)),
                           "max": int(lengths.max()), "tokens": int(lengths.sum())},
               "models": list(models), "inference": [], "training": [], "checks": []}
    write_outputs(outdir, results)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    def over_budget(reserve_s: float = 0.0) -> bool:
        """Past the budget, less ``reserve_s`` (compile configurations keep room to compile)."""
        return time.perf_counter() - start > args.budget_s - reserve_s

    clock = Clock(device)
    rng = np.random.default_rng(args.seed)
    nets, docs = {}, {}
    for name, spec in models.items():
        docs[name] = make_docs(lengths, spec["vocab_size"], args.seed)
        nets[name] = build_net(spec, device, args.seed)
        log(f"built {name}: {sum(p.numel() for p in nets[name].parameters()) / 1e6:.1f}M parameters")
    mb_name, bert_name = list(models)
    for name in (mb_name,):
        try:
            results["checks"] += agreement_checks(nets[name], docs[name], device, name)
        except Exception as exc:  # noqa: BLE001 (recorded, the run goes on)
            results["checks"].append({"model": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"})
            log(traceback.format_exc())
    write_outputs(outdir, results)

    # most informative first, so that a cut run still answers the goal question
    # most informative first, so that a cut run still answers the goal question: bf16 eager,
    # training, fp32 eager, then the torch.compile rows (compiling is slow); within each group the
    # best candidates of both models before the rest
    order = [(mb_name, "unpadded"), (bert_name, "sorted"), (mb_name, "sorted"), (bert_name, "padded"),
             (mb_name, "padded")]
    groups = [] if args.rows == "compile" else [("bf16", False), ("fp32", False)]
    if args.rows != "eager" and args.compile != "none":
        groups += [("bf16", True)] + ([("fp32", True)] if args.compile == "all" else [])
    configs = [(name, dtype, mode, compiled) for dtype, compiled in groups for name, mode in order]
    train_after = 5 if args.train and groups and not groups[0][1] else -1
    if args.train and train_after < 0:
        run_training(nets[mb_name], docs[mb_name], args, device, clock, rng, results, log, over_budget)
        write_outputs(outdir, results)
    for i, (name, dtype, mode, compiled) in enumerate(configs):
        if i == train_after:
            run_training(nets[mb_name], docs[mb_name], args, device, clock, rng, results, log, over_budget)
            write_outputs(outdir, results)
        row = {"model": name, "dtype": dtype, "batching": mode, "compile": compiled}
        reserve = args.compile_reserve_s if compiled else 0.0
        if over_budget(reserve):
            row["status"] = (f"skipped: past the {args.budget_s - reserve:.0f} s start limit "
                             f"(--budget-s {args.budget_s:.0f}{' less the compile reserve' if compiled else ''})")
        else:
            try:
                row.update(inference_config(nets[name], docs[name], mode, dtype, compiled, args, device, clock, rng))
                row["status"] = "ok"
                log(f"{name} {dtype} {mode} compile={compiled}: {row['samples_per_s']:,.0f} samples/s "
                    f"({row['kernel']}, {row['measured_batches']}/{row['total_batches']} batches)")
            except Exception as exc:  # noqa: BLE001
                row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                log(traceback.format_exc())
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results["inference"].append(row)
        write_outputs(outdir, results)
    if 0 <= len(configs) <= train_after:
        run_training(nets[mb_name], docs[mb_name], args, device, clock, rng, results, log, over_budget)
    results["status"] = "done"
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["imported_top_level_modules"] = sorted({m.split(".")[0] for m in sys.modules if not m.startswith("_")})
    write_outputs(outdir, results)
    log(f"wrote {outdir / 'results.json'} and {outdir / 'results.md'}")
    return 0


def run_training(net, docs, args, device, clock, rng, results, log, over_budget) -> None:
    import torch

    from patentcpc.kinds.transformer.unpadded import select_kernel

    kernel = select_kernel(device, torch.bfloat16) or "sdpa_repad"
    for attention in (kernel, None):
        row = {"attention": attention or "sdpa (transformers, padded)"}
        if over_budget():
            row["status"] = "skipped: past the budget"
        else:
            try:
                row.update(training_config(net, docs, attention, args, device, clock, rng))
                row["status"] = "ok"
                log(f"training {row['kernel']}: {row['samples_per_s']:,.1f} samples/s, {row['steps']} steps")
            except Exception as exc:  # noqa: BLE001
                row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                log(traceback.format_exc())
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results["training"].append(row)


if __name__ == "__main__":
    sys.exit(main())
