"""Which out-of-fold documents the TF-IDF calibrator is fitted on (benchmarks/calibration.md,
"Second round"): random or stratified folds, all documents or only those whose fold model knew one
of their gold codes, on the 5 seeded 80/20 splits of uspto-abstracts (seeds 0-4, as
benchmarks/calibration_done.py). Out-of-fold margins are computed once per split and fold scheme;
each row fits a calibrator on them and measures the final model's top-1 probabilities on the test
part (ECE@1 per split and pooled, AUROC@1, F1@1, mean top-1 probability, Brier score).

    PYTHONPATH=src python benchmarks/calibration_folds.py [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter

import numpy as np

from patentcpc.calibration import (
    _pairs,
    auroc,
    ece,
    fit_logistic,
    gap_to_best_other,
    multi_hot,
    out_of_fold_scores,
    top1_confidence,
)
from patentcpc.config import TrainConfig
from patentcpc.data import load_data, split_data
from patentcpc.kinds.linear.model import LinearCPCModel
from patentcpc.metrics import precision_recall_f1_at_k
from patentcpc.numeric import sigmoid

DATA = "../shared/data/uspto-abstracts/patents.jsonl"
SCHEMES = [("random", 5), ("random", 10), ("random", 20), ("stratified", 5)]
# (fold scheme, rows: all | known | support2, method, top-k pairs, slope factor)
ROWS = [(("random", 5), "all", "platt-gap", 5, 1.0), (("random", 10), "all", "platt-gap", 5, 1.0),
        (("random", 20), "all", "platt-gap", 5, 1.0), (("random", 5), "known", "platt-gap", 5, 1.0),
        (("stratified", 5), "all", "platt-gap", 5, 1.0), (("stratified", 5), "known", "platt-gap", 5, 1.0),
        (("stratified", 5), "known", "platt-gap", 3, 1.0), (("stratified", 5), "known", "platt-gap", 1, 1.0),
        (("stratified", 5), "known", "platt", 1, 1.0), (("stratified", 5), "support2", "platt-gap", 5, 1.0),
        (("random", 5), "known", "platt", 1, 0.8), (("random", 10), "known", "platt-gap", 3, 1.0)]


def fit_map(z: np.ndarray, y: np.ndarray, method: str, k: int, slope: float) -> np.ndarray:
    zs, ys, gs = _pairs(z, y, "top", k, gap_to_best_other(z))
    x = np.stack([zs, gs], 1) if method == "platt-gap" else zs[:, None]
    w = fit_logistic(x, ys)
    if slope != 1.0:  # shrink the slope(s), re-fit the bias alone
        s, b = x @ (w[:-1] * slope), w[-1]
        for _ in range(50):
            p = sigmoid(s + b)
            b -= (p - ys).sum() / max((p * (1 - p)).sum(), 1e-9)
        w = np.concatenate([w[:-1] * slope, [b]])
    return w


def apply_map(w: np.ndarray, z: np.ndarray, method: str) -> np.ndarray:
    if method == "platt-gap":
        return np.clip(sigmoid(w[0] * z + w[1] * gap_to_best_other(z) + w[2]), 1e-6, 1 - 1e-6)
    return np.clip(sigmoid(w[0] * z + w[1]), 1e-6, 1 - 1e-6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    data = load_data(DATA)
    cfg = TrainConfig(model="tfidf")
    cfg = dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, C=LinearCPCModel.default_C()))
    splits = []
    for seed in args.seeds:
        train, test = split_data(data, (0.8, 0.2), seed)
        model = LinearCPCModel.fit(train.texts, train.labels, cfg.linear, seed=cfg.seed)
        oof = {}
        for scheme, k in SCHEMES:
            oof[(scheme, k)] = out_of_fold_scores(
                lambda t, g: LinearCPCModel.fit(t, g, cfg.linear, seed=cfg.seed), train.texts, train.labels,
                model.labels, k, cfg.seed, stratify=scheme == "stratified")
        count = Counter(c for g in train.labels for c in g)
        support2 = np.array([max(count[c] for c in g) - 1 >= 2 for g in train.labels])
        splits.append((model.labels, train.labels, test.labels, model.raw_scores(test.texts), oof, support2))
        print(f"split {seed} scored", flush=True)
    print("| folds | fitted on | method, fit on | ECE@1 per split | max | pooled | AUROC@1 | F1@1 | "
          "mean top-1 prob / hit rate | Brier@1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (scheme, k), rows, method, top, slope in ROWS:
        es, aus, f1s, confs, hits = [], [], [], [], []
        for labels, gold_tr, gold_te, raw_te, oof, support2 in splits:
            z = oof[(scheme, k)]
            keep = {"all": np.ones(len(gold_tr), bool), "known": z.known, "support2": support2}[rows]
            y = multi_hot(gold_tr, labels)
            w = fit_map(np.asarray(z)[keep], y[keep], method, top, slope)
            p = apply_map(w, raw_te, method)
            c, h = top1_confidence(p, gold_te, labels)
            es.append(ece(c, h))
            aus.append(auroc(c, h))
            f1s.append(precision_recall_f1_at_k(p, gold_te, labels, (1,))["f1@1"])
            confs.append(c)
            hits.append(h)
        conf, hit = np.concatenate(confs), np.concatenate(hits)
        sd = np.std(es, ddof=1) if len(es) > 1 else 0.0
        name = f"{method} top-{top}" + (f", slope x {slope}" if slope != 1.0 else "")
        print(f"| {k} {scheme} | {rows} | {name} | {np.mean(es):.3f} ± {sd:.3f} | {max(es):.3f} | "
              f"{ece(conf, hit):.3f} | {np.mean(aus):.3f} | {np.mean(f1s):.3f} | {conf.mean():.3f} / "
              f"{hit.mean():.3f} | {np.mean((conf - hit) ** 2):.4f} |", flush=True)


if __name__ == "__main__":
    main()
