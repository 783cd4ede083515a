"""Issue 30 (sessions 31, 32): the cost of the TF-IDF models' words, ``linear.stemmer`` and
``linear.title_weight``, at 10x and 100x the shared abstracts. The TF-IDF vectorizer of ``train
--model tfidf`` (``build_pipeline``) is fitted on the 552 abstracts repeated 10 and 100 times (each
copy made unique): wall time and traced peak memory of the fit; then a stored model's NumPy
transform (what prediction runs, :class:`patentcpc.kinds.linear.model.TfidfArrays`) over the 10x
documents.

    PYTHONPATH=src python benchmarks/linear_words_speed.py
"""

from __future__ import annotations

import time
import tracemalloc


def main() -> None:
    from patentcpc.config import LinearConfig
    from patentcpc.data import load_data
    from patentcpc.kinds.linear.model import TfidfArrays, build_pipeline

    texts = load_data("../shared/data/uspto-abstracts/patents.jsonl").texts
    for stemmer, title_weight in ((None, 1), ("english", 1), ("english", 10)):
        for reps in (10, 100):
            docs = [f"{t} doc{i}" for i in range(reps) for t in texts]
            vec = build_pipeline(LinearConfig(stemmer=stemmer, title_weight=title_weight)).named_steps["tfidf"]
            tracemalloc.start()
            t0 = time.perf_counter()
            vec.fit_transform(docs)
            secs = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            line = (f"stemmer={stemmer} title_weight={title_weight} docs={len(docs)}: fit {secs:.1f} s "
                    f"({len(docs) / secs:,.0f} docs/s), peak {peak:.0f} MiB")
            if reps == 10:
                words = vec.analyzer
                arrays = TfidfArrays({str(k): int(v) for k, v in vec.vocabulary_.items()}, vec.idf_, 1,
                                     vec.sublinear_tf, words.stemmer, words.title_weight)
                t0 = time.perf_counter()
                for d in docs:
                    arrays.transform_one(d)
                line += f"; stored transform {len(docs) / (time.perf_counter() - t0):,.0f} docs/s"
            print(line, flush=True)


if __name__ == "__main__":
    main()
