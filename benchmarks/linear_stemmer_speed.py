"""Issue 30 (session 31): the cost of ``linear.stemmer`` at 10x and 100x the shared abstracts. The
TF-IDF vectorizer of ``train --model tfidf`` (``build_pipeline``) is fitted on the 552 abstracts
repeated 10 and 100 times (each copy made unique), with and without the English stemmer: wall time
and traced peak memory of the fit.

    PYTHONPATH=src python benchmarks/linear_stemmer_speed.py
"""

from __future__ import annotations

import time
import tracemalloc


def main() -> None:
    from patentcpc.config import LinearConfig
    from patentcpc.data import load_data
    from patentcpc.kinds.linear.model import build_pipeline

    texts = load_data("../shared/data/uspto-abstracts/patents.jsonl").texts
    for stemmer in (None, "english"):
        for reps in (10, 100):
            docs = [f"{t} doc{i}" for i in range(reps) for t in texts]
            vec = build_pipeline(LinearConfig(stemmer=stemmer)).named_steps["tfidf"]
            tracemalloc.start()
            t0 = time.perf_counter()
            vec.fit_transform(docs)
            secs = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"stemmer={stemmer} docs={len(docs)}: fit {secs:.1f} s ({len(docs) / secs:,.0f} docs/s), "
                  f"peak {peak:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
