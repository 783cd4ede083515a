"""Training throughput (tokens/s) and peak memory of the random-init presets.

Times the same computation the Trainer runs per step (forward, BCE loss, backward, AdamW step) on
length-grouped batches of the shared titles (or abstracts), after 2 warm-up steps:

    python benchmarks/training_throughput.py [--presets modernbert-tiny,modernbert-small] [--steps 20]
        [--batch-size 16] [--max-length 128] [--data ../shared/data/uspto-abstracts/patents.jsonl]

Tokens are the non-padding tokens of the batches. Peak memory: the process's peak resident set
size (CPU) or ``torch.cuda.max_memory_allocated`` (GPU). Appends one JSON line per preset to
benchmarks/training_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "uspto-abstracts" / "patents.jsonl"


def bench(preset: str, texts: list[str], steps: int, batch_size: int, max_length: int) -> dict:
    import numpy as np
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.training.batches import MultiLabelCollator

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = TransformerCPCModel.create([f"A{i:02d}B" for i in range(100)], arch=preset, max_length=max_length,
                                       device=device)
    net = model.network.train()
    enc = model.tokenize(texts)
    order = np.argsort([len(x) for x in enc["input_ids"]])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(0)
    rng.shuffle(batches)
    collate = MultiLabelCollator(model.tokenizer.pad_token_id or 0, len(model.labels))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    tokens, elapsed = 0, 0.0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 2):
        idx = batches[step % len(batches)]
        batch = collate([{"input_ids": enc["input_ids"][i], "label_ids": [int(i) % 100]} for i in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            logits = net(batch["input_ids"], batch["attention_mask"])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            elapsed += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    n_params = sum(p.numel() for p in net.parameters())
    return {"preset": preset, "device": device if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
            "params_m": round(n_params / 1e6, 2), "batch_size": batch_size, "max_length": max_length,
            "steps": steps, "tokens_per_s": round(tokens / elapsed, 1),
            "docs_per_s": round(steps * batch_size / elapsed, 2), "peak_memory_mb": round(peak / 2**20, 1),
            "precision": "bf16" if use_bf16 else "fp32", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="modernbert-tiny,modernbert-small")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    from patentcpc.data import load_data

    texts = load_data(args.data).texts
    for preset in args.presets.split(","):
        rec = bench(preset, texts, args.steps, args.batch_size, args.max_length)
        print(json.dumps(rec))
        with open(HERE / "training_throughput.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
