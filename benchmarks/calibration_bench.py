"""Calibration methods compared on seeded 80/20 splits of uspto-abstracts (TF-IDF + LinearSVC).

For each split: out-of-fold margins of the training part (5 folds) fit the calibrator; the model
fitted on the whole training part scores the test part; top-1 ECE (10 bins), AUROC of top-1 hit vs
miss, F1@1 and the thresholded micro F1 (thresholds tuned on the out-of-fold probabilities) are
measured on the test part. Usage:

    PYTHONPATH=src python benchmarks/calibration_bench.py [--splits 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from patentcpc.calibration import auroc, ece, fit_calibrator, multi_hot, out_of_fold_scores, top1_confidence
from patentcpc.config import LinearConfig
from patentcpc.data import load_data, split_data
from patentcpc.kinds.linear.model import LinearCPCModel
from patentcpc.metrics import binarize, threshold_metrics, tune_global_threshold, tune_label_thresholds

DATA = "../shared/data/uspto-abstracts/patents.jsonl"
OPTIONS = [(m, s, f, k) for m in ("platt", "platt-gap", "temperature", "isotonic") for s in ("shared",)
           for f, k in (("top", 1), ("top", 5), ("all", 5))] + [("platt", "per_label", "top", 5),
                                                                ("platt", "per_label", "all", 5)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    data = load_data(DATA)
    rows = []
    pooled: dict = {}
    for seed in range(args.splits):
        t0 = time.time()
        train, test = split_data(data, (0.8, 0.2), seed)
        model = LinearCPCModel.fit(train.texts, train.labels, LinearConfig(), seed=42)
        labels = model.labels
        oof = out_of_fold_scores(lambda t, g: LinearCPCModel.fit(t, g, LinearConfig(), seed=42), train.texts,
                                 train.labels, labels, args.folds, 42)
        raw_test = model.raw_scores(test.texts)
        y = multi_hot(train.labels, labels)
        for method, scope, fit_on, k in OPTIONS:
            cal = fit_calibrator(oof, y, "margin", method, scope, fit_on, k)
            p_val, p_test = cal.transform(oof), cal.transform(raw_test)
            thr, _ = tune_global_threshold(p_val, train.labels, labels)
            per = tune_label_thresholds(p_val, train.labels, labels, thr, 5)
            conf, hit = top1_confidence(p_test, test.labels, labels)
            micro = threshold_metrics(binarize(p_test, per), test.labels, labels)["micro_f1"]
            pooled.setdefault((method, scope, fit_on, k), []).append((conf, hit))
            rows.append({"seed": seed, "method": method, "scope": scope, "fit_on": fit_on, "top_k": k,
                         "ece@1": ece(conf, hit), "auroc@1": auroc(conf, hit), "p@1": float(hit.mean()),
                         "micro_f1": micro, "mean_conf@1": float(conf.mean())})
        print(f"split {seed}: {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(0)
    print("| method | scope | fit on | ECE@1 per split (mean ± sd) | ECE@1 pooled | noise floor per split / pooled | "
          "AUROC@1 | mean top-1 prob | P@1 | micro F1 (tuned thr.) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method, scope, fit_on, k in OPTIONS:
        r = [x for x in rows if (x["method"], x["scope"], x["fit_on"], x["top_k"]) == (method, scope, fit_on, k)]
        e = np.array([x["ece@1"] for x in r])
        fo = f"top-{k}" if fit_on == "top" else "all pairs"
        parts = pooled[(method, scope, fit_on, k)]
        conf = np.concatenate([c for c, _ in parts])
        hit = np.concatenate([h for _, h in parts])
        # ECE of a perfectly calibrated model with these probabilities (hits drawn from them)
        floor_split = np.mean([ece(c, rng.random(len(c)) < c) for c, _ in parts for _ in range(40)])
        floor_pool = np.mean([ece(conf, rng.random(len(conf)) < conf) for _ in range(200)])
        print(f"| {method} | {scope} | {fo} | {e.mean():.3f} ± {e.std(ddof=1) if len(e) > 1 else 0:.3f} | "
              f"{ece(conf, hit):.3f} | {floor_split:.3f} / {floor_pool:.3f} | "
              f"{np.mean([x['auroc@1'] for x in r]):.3f} | {np.mean([x['mean_conf@1'] for x in r]):.3f} | "
              f"{np.mean([x['p@1'] for x in r]):.3f} | {np.mean([x['micro_f1'] for x in r]):.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
