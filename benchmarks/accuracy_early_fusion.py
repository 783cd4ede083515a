"""Issue 30 (session 31, tried and not adopted): one linear model on TF-IDF *and* frozen-encoder
features ("early fusion"), against the members the ensemble fuses late.

Each split's TF-IDF (the ``tfidf`` defaults: stemmed words, label documents ``seen`` weighted 0.1)
is joined by the L2-normalised mean-pooled all-MiniLM-L6-v2 embeddings of the same documents (the
label documents' too) times ``alpha``; a one-vs-rest LinearSVC (balanced, C ``--C``) is fitted on the
80 % and scored on the 20 % (F1@1; ranking only, no calibration). ``alpha`` 0 is TF-IDF alone.
The embeddings come from benchmarks/accuracy_encoder_label_docs_probe.py's cache
(``EMB/embeddings-mean.npz``: the 552 abstracts and the label documents of their labels)::

    PYTHONPATH=src python benchmarks/accuracy_early_fusion.py SPLITS EMB --alphas 0 0.75 1 1.5 [--C 1]

SPLITS: a folder of ``sN/`` or ``rN/`` splits (``train.jsonl``, ``test.jsonl``), e.g. WORK/r for
the random splits of accuracy_conformal.py --random-split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("splits", help="split folders' prefix: WORK/s or WORK/r")
    ap.add_argument("emb", type=Path, help="the folder of embeddings-mean.npz")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.75, 1.0, 1.5])
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    import scipy.sparse as sp
    import sklearn
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer
    from sklearn.svm import LinearSVC

    from patentcpc.config import LinearConfig
    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.kinds.linear.model import build_pipeline
    from patentcpc.metrics import precision_recall_f1_at_k
    from patentcpc.numeric import l2_normalize
    from patentcpc.scheme import label_documents

    data = load_data("../shared/data/uspto-abstracts/patents.jsonl")
    ld_texts, ld_labels = label_documents(LabelVocab.from_label_lists(data.labels).labels, "seen")
    z = np.load(args.emb / "embeddings-mean.npz")
    x_docs, x_ld = l2_normalize(z["docs"].astype(np.float32)), l2_normalize(z["label_docs"].astype(np.float32))
    row = {t: i for i, t in enumerate(data.texts)}
    res: dict[float, list[float]] = {a: [] for a in args.alphas}
    for seed in args.seeds:
        train, test = load_data(f"{args.splits}{seed}/train.jsonl"), load_data(f"{args.splits}{seed}/test.jsonl")
        seen = sorted({c for ls in train.labels for c in ls})
        keep = [i for i, (c,) in enumerate(ld_labels) if c in set(seen)]
        texts = list(train.texts) + [ld_texts[i] for i in keep]
        y = MultiLabelBinarizer(classes=seen).fit_transform([*train.labels, *(ld_labels[i] for i in keep)])
        weight = np.r_[np.ones(len(train)), np.full(len(keep), 0.1)]
        emb = np.vstack([x_docs[[row[t] for t in train.texts]], x_ld[keep]])
        emb_test = x_docs[[row[t] for t in test.texts]]
        vec = build_pipeline(LinearConfig()).named_steps["tfidf"]
        tf, tf_test = vec.fit_transform(texts), vec.transform(test.texts)
        for a in args.alphas:
            f = sp.hstack([tf, sp.csr_matrix(emb * a)]).tocsr() if a else tf
            f_test = sp.hstack([tf_test, sp.csr_matrix(emb_test * a)]).tocsr() if a else tf_test
            with sklearn.config_context(enable_metadata_routing=True):
                svc = LinearSVC(C=args.C, class_weight="balanced", max_iter=5000).set_fit_request(sample_weight=True)
                scores = OneVsRestClassifier(svc).fit(f, y, sample_weight=weight).decision_function(f_test)
            res[a].append(precision_recall_f1_at_k(scores, test.labels, seen, (1,))["f1@1"])
        print(f"split {seed} " + "  ".join(f"alpha {a:g}: {r[-1]:.3f}" for a, r in res.items()), flush=True)
    for a, r in res.items():
        print(f"mean alpha {a:g}: F1@1 {np.mean(r):.4f} ({' / '.join(f'{x:.3f}' for x in r)})")


if __name__ == "__main__":
    main()
