"""Per-label thresholds against the global one (benchmarks/thresholds.md).

Run in a folder holding ``train{seed}.jsonl`` / ``test{seed}.jsonl`` (``split_data(abstracts, (0.8, 0.2),
seed)``) and ``m_after_{seed}`` (``patentcpc train --model tfidf --data train{seed}.jsonl``)::

    python benchmarks/thresholds_bench.py --seeds 0,1,2

For each split: the out-of-fold probabilities the trainer calibrates on, the global threshold tuned on
them, per-label thresholds from ``min_support`` positives, and micro/macro F1 on the test part.
"""

from __future__ import annotations

import argparse

import numpy as np

import patentcpc
from patentcpc.calibration import out_of_fold_scores
from patentcpc.config import LinearConfig
from patentcpc.data import load_data
from patentcpc.kinds.linear.model import LinearCPCModel
from patentcpc.metrics import evaluate_scores, tune_global_threshold, tune_label_thresholds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        model = patentcpc.load_model(f"m_after_{seed}")
        train, test = load_data(f"train{seed}.jsonl"), load_data(f"test{seed}.jsonl")
        cfg = LinearConfig(C=0.5, learner="ovr")
        raw = out_of_fold_scores(lambda t, g, c=cfg: LinearCPCModel.fit(t, g, c), train.texts, train.labels,
                                 model.labels, 5, 42)
        probs = model.calibrate(raw)
        glob, _ = tune_global_threshold(probs, train.labels, model.labels)
        test_scores = model.scores(test.texts)
        row = []
        for min_support in (5, 10, 20, 50, 10**9):
            th = tune_label_thresholds(probs, train.labels, model.labels, glob, min_support,
                                       max_predicted_ratio=np.inf)
            r = evaluate_scores(test_scores, test.labels, model.labels, th)
            row.append(f"min_support {min_support}: micro {r['micro_f1']:.4f} macro {r['macro_f1']:.4f} "
                       f"labels tuned {(th != glob).sum()}")
        print(seed, round(glob, 3), " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
