"""Issue 30 item 1: which label documents, how weighted (the variants behind linear.label_docs'
default). Ranking only (F1@1 and per-frequency hit@1/hit@5 need no calibration): each variant's
TF-IDF + LinearSVC (C 0.5, the tfidf defaults) fitted once on the 80 % of each split of
benchmarks/accuracy_conformal.py (run that or accuracy_label_docs.py first: WORK/sN/*.jsonl),
with label documents weighted by sample weight, scored on the 20 %. Variants: ``none``;
``joined:SCOPE:W`` (one document per label: its cold-start documents joined); ``groups:SCOPE:W``
(the cold-start documents themselves: one per subclass title, one per main group with its
subgroup titles); SCOPE ``seen`` (the training labels) or ``all`` (every subclass); W the weight;
an optional fourth field ``:C`` sets the LinearSVC's C (default 0.5), and fields after it
``:key=value`` other ``linear`` settings, as ``--set linear.key=value`` takes them
(``groups:seen:0.1:0.5:ngram_max=2``, ``...:class_weight=null``).

    PYTHONPATH=src python benchmarks/accuracy_label_docs_variants.py WORK none,groups:seen:0.1,...
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np


def fit(texts, labels, weights, C=0.5, settings=()):
    import sklearn
    from sklearn.preprocessing import MultiLabelBinarizer

    from patentcpc.api import train_config
    from patentcpc.kinds.linear.model import LinearCPCModel, _arrays_from_pipeline, build_pipeline
    from patentcpc.models.artifact import Manifest

    vocab = sorted({c for ls in labels for c in ls})
    y = MultiLabelBinarizer(classes=vocab, sparse_output=True).fit_transform(labels)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = build_pipeline(train_config(overrides=[f"linear.C={C}", *settings]).linear)
        pipe.named_steps["clf"].estimator.set_fit_request(sample_weight=True)
        pipe.fit(list(texts), y, sample_weight=np.asarray(weights, dtype=float))
    tf, coef, b = _arrays_from_pipeline(pipe, "margin")
    return LinearCPCModel(Manifest(kind="tfidf", labels=vocab, score_type="margin", threshold=0.0), tf, coef, b, pipe)


def variant(name, train, by_label):
    texts, labels = list(train.texts), [list(x) for x in train.labels]
    weights = [1.0] * len(texts)
    if name == "none":
        return texts, labels, weights
    kind, scope, w = name.split(":")[:3]
    seen = {c for ls in labels for c in ls}
    for code in sorted(seen) if scope == "seen" else sorted(by_label):
        for doc in [". ".join(by_label[code])] if kind == "joined" else by_label[code]:
            texts.append(doc)
            labels.append([code])
            weights.append(float(w))
    return texts, labels, weights


def measure(model, test, counts):
    from patentcpc.metrics import precision_recall_f1_at_k

    s = model.predict_scores(test.texts)
    order = np.argsort(-s, 1)
    cat = collections.defaultdict(lambda: [0, 0, 0])
    for i, gold in enumerate(test.labels):
        top = [model.labels[j] for j in order[i, :5]]
        for c in set(gold):
            n = counts.get(c, 0)
            k = "unseen" if n == 0 else "rare" if n < 5 else "frequent"
            cat[k][0] += 1
            cat[k][1] += c == top[0]
            cat[k][2] += c in top
    f1 = precision_recall_f1_at_k(s, test.labels, model.labels, (1,))["f1@1"]
    return f1, {k: (v[0], v[1] / v[0], v[2] / v[0]) for k, v in cat.items()}


def main() -> None:
    from patentcpc.data import load_data
    from patentcpc.scheme import scheme_documents

    work, variants = sys.argv[1], sys.argv[2].split(",")
    by_label = collections.defaultdict(list)
    for text, (code,) in zip(*scheme_documents("subclass"), strict=True):
        by_label[code].append(text)
    res = collections.defaultdict(list)
    for seed in range(5):
        train, test = load_data(f"{work}/s{seed}/train.jsonl"), load_data(f"{work}/s{seed}/test.jsonl")
        counts = collections.Counter(c for ls in train.labels for c in set(ls))
        for v in variants:
            t0 = time.time()
            c = float(v.split(":")[3]) if v.count(":") >= 3 else 0.5
            settings = [f"linear.{kv}" for kv in v.split(":")[4:]]  # as --set takes them
            f1, cat = measure(fit(*variant(v, train, by_label), C=c, settings=settings), test, counts)
            res[v].append((f1, cat))
            print(seed, v, f"f1@1 {f1:.3f}", {k: f"n{a} h1 {b:.2f} h5 {c:.2f}" for k, (a, b, c) in sorted(cat.items())},
                  f"{time.time() - t0:.0f}s", flush=True)
    for v in variants:
        out = {}
        for k in ("frequent", "rare", "unseen"):
            rows = [r[1][k] for r in res[v] if k in r[1]]
            if rows:
                out[k] = (f"n{sum(r[0] for r in rows)} h1 {np.mean([r[1] for r in rows]):.3f} "
                          f"h5 {np.mean([r[2] for r in rows]):.3f}")
        print("MEAN", v, f"f1@1 {np.mean([r[0] for r in res[v]]):.3f}", out)


if __name__ == "__main__":
    main()
