"""Peak memory of `train-embeddings` step by step (benchmarks/tour.md).

    python benchmarks/tour_train_embeddings_memory.py MODEL DATA STEPS [option=value ...]

Runs ``train_embedder`` with the ``cpc,multiview`` signals for STEPS steps (options as
``FinetuneOptions`` fields, e.g. ``cached=0``) and prints, at each step, the process's RSS and the
peak RSS so far (VmRSS sampled every 0.2 s).
"""

from __future__ import annotations

import sys
import threading
import time


def rss_gb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1e6
    return 0.0


def main() -> None:
    from patentcpc.retrieval.finetune import FinetuneOptions, load_corpus, train_embedder

    model, data, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    extra = dict(a.split("=", 1) for a in sys.argv[4:])
    peak = [0.0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_gb())
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    corpus = load_corpus(data)
    kw: dict = {"signals": {"cpc": 1.0, "multiview": 1.0}, "max_steps": steps}
    for k, v in extra.items():
        kw[k] = bool(int(v)) if k == "cached" else (int(v) if v.isdigit() else v)
    t0 = time.time()

    def say(message: str) -> None:
        print(f"{time.time() - t0:6.1f}s rss {rss_gb():.2f} GB peak {peak[0]:.2f} GB | {message}", flush=True)

    say("start")
    result = train_embedder(model, corpus, FinetuneOptions(**kw), progress=False, say=say)
    say(f"done {result.steps} steps")


if __name__ == "__main__":
    main()
