"""Issue 30 item 4: conformal label sets of TF-IDF on seeded held-out splits of uspto-abstracts.

For each seed: ``split_data(load_data(DATA), (0.8, 0.2), seed)`` (the splits of
benchmarks/ensemble_splits.py), TF-IDF trained on the 80 % as ``patentcpc train --model tfidf``
trains it (calibrator, thresholds and the conformal table on 5-fold out-of-fold scores), then on
the 20 %: the empirical coverage of the conformal sets (a set covers a document when it holds at
least one of its gold codes; a document whose gold codes the model never saw counts as missed),
their mean / median size, the share marked unsure, and the smallest top-k whose coverage on the
same documents reaches the sets' coverage (with its coverage).

    PYTHONPATH=src python benchmarks/accuracy_conformal.py WORK [--seeds 0 1 2 3 4] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DATA = "../shared/data/uspto-abstracts/patents.jsonl"
COVERAGES = (0.8, 0.9, 0.95)


def write_split(work: Path, seed: int, random: bool = False) -> Path:
    """WORK/sN/{train,test}.jsonl: the stratified 80/20 split of seed N (``random``: WORK/rN/, a
    seeded random permutation instead, as new patents come: codes unseen in training are as
    frequent as they are)."""
    from patentcpc.data import load_data, split_data
    from patentcpc.io import write_jsonl

    root = work / f"{'r' if random else 's'}{seed}"
    if not (root / "test.jsonl").exists():
        data = load_data(DATA)
        if random:
            order = np.random.default_rng(seed).permutation(len(data))
            cut = int(round(0.8 * len(data)))
            train, test = data.select(np.sort(order[:cut])), data.select(np.sort(order[cut:]))
        else:
            train, test = split_data(data, (0.8, 0.2), seed)
        for name, part in (("train", train), ("test", test)):
            write_jsonl(({"patent_id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])}
                         for r in part.dataset), root / f"{name}.jsonl")
    return root


def covered(mask: np.ndarray, gold, labels) -> np.ndarray:
    index = {c: j for j, c in enumerate(labels)}
    return np.array([any(c in index and mask[i, index[c]] for c in g) for i, g in enumerate(gold)])


def measure(model, scores: np.ndarray, gold) -> dict:
    from patentcpc.conformal import UNSURE_ABOVE, model_table, set_mask, threshold

    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(len(scores))[:, None], order] = np.arange(scores.shape[1])[None, :]
    index = {c: j for j, c in enumerate(model.labels)}
    best_rank = np.array([min((ranks[i, index[c]] for c in g if c in index), default=10**9) + 1
                          for i, g in enumerate(gold)])
    out = {}
    for cov in COVERAGES:
        t = threshold(model_table(model), cov)
        mask = set_mask(scores, t)
        hit = covered(mask, gold, model.labels)
        size = mask.sum(1)
        emp = float(hit.mean())
        k = next((k for k in range(1, scores.shape[1] + 1) if (best_rank <= k).mean() >= emp - 1e-12),
                 scores.shape[1])
        out[str(cov)] = {"coverage": emp, "mean_size": float(size.mean()), "median_size": float(np.median(size)),
                         "unsure": float((size > UNSURE_ABOVE).mean()), "threshold": t,
                         "topk_same_coverage": k, "topk_coverage": float((best_rank <= k).mean())}
    out["n_test"] = len(gold)
    out["n_uncoverable_test"] = int((best_rank > 10**8).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--random-split", action="store_true", help="seeded random 80/20 splits (not stratified)")
    args = ap.parse_args()
    import patentcpc
    from patentcpc.data import load_data

    results = {}
    for seed in args.seeds:
        root = write_split(args.work, seed, args.random_split)
        model = patentcpc.train(model="tfidf", data=str(root / "train.jsonl"), overrides=args.overrides)
        test = load_data(str(root / "test.jsonl"))
        scores = model.predict_scores(test.texts)
        results[seed] = measure(model, scores, test.labels)
        results[seed]["calibration_n"] = model.manifest.extra["conformal"]["n"]
        results[seed]["calibration_uncoverable"] = model.manifest.extra["conformal"]["n_uncoverable"]
        print(f"split {seed}: " + "  ".join(
            f"{c}: cov {r['coverage']:.3f} size {r['mean_size']:.2f} (median {r['median_size']:.0f}, "
            f"unsure {r['unsure']:.2f}) top-{r['topk_same_coverage']} {r['topk_coverage']:.3f}"
            for c, r in ((c, results[seed][str(c)]) for c in COVERAGES)), flush=True)
    print("mean over splits:")
    for c in COVERAGES:
        rs = [results[s][str(c)] for s in args.seeds]
        cov = np.array([r["coverage"] for r in rs])
        print(f"  target {c}: coverage {cov.mean():.3f} (min {cov.min():.3f}, max {cov.max():.3f}), "
              f"mean set size {np.mean([r['mean_size'] for r in rs]):.2f}, "
              f"unsure {np.mean([r['unsure'] for r in rs]):.2f}, "
              f"top-k of the same coverage: mean k {np.mean([r['topk_same_coverage'] for r in rs]):.1f}")
    name = f"conformal_results{'_random' if args.random_split else ''}.json"
    (args.work / name).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
