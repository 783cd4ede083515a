"""Issue 30 item 3: plain Omikuji trained the way Annif's omikuji backend trains it, on the seeded
80/20 splits of benchmarks/accuracy_conformal.py, against our TF-IDF (results of
benchmarks/accuracy_label_docs.py on the same splits).

Annif-style features: ``TfidfVectorizer(min_df=1, ngram_range=(1, 1), lowercase=True,
token_pattern=words of >= 3 characters)`` (Annif's omikuji backend defaults ``min_df: 1``,
``ngram: 1`` and its analyzer's ``token_min_length: 3``; Annif's snowball stemmer is not installed
here, so no stemming). Trees: ``parabel`` = Omikuji's defaults, which are Annif's
(``cluster_k 2, cluster_balanced true, max_depth 20, collapse_every_n_layers 0``); ``bonsai`` =
the Bonsai-style settings Annif's documentation gives (``cluster_k 100, cluster_balanced false,
max_depth 3``). Scores: Omikuji's top-20 probabilities (beam 10), 0 elsewhere.

    PYTHONPATH=src python benchmarks/accuracy_omikuji.py WORK [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_conformal import write_split  # noqa: E402

SETTINGS = {"parabel": {}, "bonsai": {"cluster_k": 100, "cluster_balanced": False, "max_depth": 3}}


def fit_predict(train, test, setting: dict) -> tuple[np.ndarray, list[str]]:
    import omikuji
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import MultiLabelBinarizer

    from patentcpc.kinds.omikuji.model import predict_scores, write_xmc_file

    vocab = sorted({c for ls in train.labels for c in ls})
    vec = TfidfVectorizer(min_df=1, ngram_range=(1, 1), lowercase=True, token_pattern=r"(?u)\b\w\w\w+\b")
    x = vec.fit_transform(train.texts)
    y = MultiLabelBinarizer(classes=vocab, sparse_output=True).fit_transform(train.labels)
    hp = omikuji.Model.default_hyper_param()
    for k, v in setting.items():
        setattr(hp, k, v)
    with tempfile.TemporaryDirectory() as tmp:
        write_xmc_file(Path(tmp) / "train.txt", x, y)
        model = omikuji.Model.train_on_data(str(Path(tmp) / "train.txt"), hp, 2)
    return predict_scores(model, vec.transform(test.texts), len(vocab), top_k=min(20, len(vocab))), vocab


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    from patentcpc.data import load_data
    from patentcpc.metrics import precision_recall_f1_at_k

    res: dict = {}
    for seed in args.seeds:
        root = write_split(args.work, seed)
        train, test = load_data(str(root / "train.jsonl")), load_data(str(root / "test.jsonl"))
        for name, setting in SETTINGS.items():
            scores, vocab = fit_predict(train, test, setting)
            r = precision_recall_f1_at_k(scores, test.labels, vocab, (1, 3))
            res[f"{name} {seed}"] = {"f1@1": r["f1@1"], "precision@1": r["precision@1"], "f1@3": r["f1@3"]}
            print(f"split {seed} omikuji-{name:7s} f1@1 {r['f1@1']:.3f} p@1 {r['precision@1']:.3f} "
                  f"f1@3 {r['f1@3']:.3f}", flush=True)
    print("mean over splits:")
    for name in SETTINGS:
        rs = [res[f"{name} {s}"] for s in args.seeds]
        print(f"  omikuji-{name}: " + "  ".join(f"{k} {np.mean([r[k] for r in rs]):.3f}" for k in rs[0]))
    ours = args.work / "label_docs_results.json"
    if ours.exists():
        saved = json.loads(ours.read_text())
        for v in ("none", "seen"):
            d = [saved[f"{v} {s}"]["f1@1"] - res[f"parabel {s}"]["f1@1"] for s in args.seeds if f"{v} {s}" in saved]
            if len(d) == len(args.seeds):
                print(f"  tfidf label_docs={v} - omikuji-parabel, paired f1@1: {np.mean(d):+.3f} "
                      f"(SE {np.std(d, ddof=1) / np.sqrt(len(d)):.3f})")
    (args.work / "omikuji_results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
