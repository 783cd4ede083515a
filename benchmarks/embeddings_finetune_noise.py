"""How much of a fine-tuned embedder's nDCG@10 change is noise: paired per-query comparison with the base.

For each model and domain (in-domain: ``--data``, view title+abstract; out-of-domain: ``--transfer``, the
last default view benchmark-embeddings gives it), the label-overlap qrels of ``benchmark-embeddings`` are
built, each query's nDCG@10 is computed for the base and the model, and the mean change is reported
with a paired bootstrap 95% interval over the queries (5000 resamples) and the number of queries improved / got worse.
The vectors are read from the cache of a ``benchmark-embeddings --output-dir`` run when they are there
(same cache key), else embedded here.

Usage (from the repository root):
    python benchmarks/embeddings_finetune_noise.py --base MINILM --models F1,F2 --data test.jsonl \
        --transfer ../shared/data/uspto-titles/valid.csv [--cache BENCH_DIR/cache]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def per_query_ndcg(vectors: np.ndarray, ids: list[str], qrels: dict) -> np.ndarray:
    import ranx

    from patentcpc.retrieval.evaluation import run_from_scores

    keep = [i for i, q in enumerate(ids) if q in qrels and any(r > 0 for r in qrels[q].values())]
    run = run_from_scores((vectors @ vectors.T).astype(np.float64)[keep], [ids[i] for i in keep], ids, 10)
    qq = {ids[i]: qrels[ids[i]] for i in keep}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ranx.evaluate(ranx.Qrels(qq), ranx.Run(run), "ndcg@10", return_mean=False,
                                        make_comparable=True), dtype=float)


def main() -> None:
    from patentcpc.data import load_data, read_raw
    from patentcpc.retrieval.benchmark import _cache_key, default_views
    from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder, load_embeddings
    from patentcpc.retrieval.evaluation import label_overlap_qrels

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--transfer")
    ap.add_argument("--views", default="title+abstract")
    ap.add_argument("--cache")
    ap.add_argument("--resamples", type=int, default=5000)
    a = ap.parse_args()
    domains = [("in-domain", a.data, a.views.split("+"))]
    if a.transfer:
        domains.append(("out-of-domain", a.transfer, default_views(read_raw(a.transfer).column_names)[-1].split("+")))
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    for name, src, fields in domains:
        data = load_data(src, text_fields=fields)
        view = "+".join(fields)
        ids = [str(i) for i in data.ids]
        qrels = label_overlap_qrels(ids, data.labels, data.level)
        fp = data.fingerprint()
        scores = {}
        for spec in [a.base, *models]:
            path = Path(a.cache) / f"{_cache_key(spec, view, fp, '0')}.npz" if a.cache else None
            if path is not None and path.exists():
                vecs = load_embeddings(path)[1]
            else:
                vecs = load_embedder(spec, EmbedOptions(batch_size=32, seed=0)).encode(data.texts)
            scores[spec] = per_query_ndcg(np.asarray(vecs, dtype=np.float32), ids, qrels)
        b = scores[a.base]
        print(f"{name}: {len(b)} queries, base nDCG@10 {b.mean():.4f}")
        for spec in models:
            d = scores[spec] - b
            rng = np.random.default_rng(0)
            boot = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(a.resamples)])
            lo, hi = np.percentile(boot, [2.5, 97.5])
            print(f"  {spec}: {scores[spec].mean():.4f} change {d.mean():+.4f} (95% CI {lo:+.4f} .. {hi:+.4f}), "
                  f"better on {int((d > 0).sum())}, worse on {int((d < 0).sum())} queries")


if __name__ == "__main__":
    main()
