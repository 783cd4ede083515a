"""One-vs-rest LinearSVC (both cores) against Omikuji (Parabel-style label trees) on the same TF-IDF
features: training seconds (wall, CPU), peak RSS, F1@1 on a test file (benchmarks/scale.md).

    python benchmarks/scale_linear.py --train /tmp/scale/300k/train.csv --test /tmp/scale/300k/test.csv
    python benchmarks/scale_linear.py --abstracts --seed 0   # the shared abstracts, an 80/20 split
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _cpu() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _rss() -> float:
    return round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)


def f1_at_1(top1: np.ndarray, gold: list[list[str]], vocab: list[str]) -> float:
    hits = sum(vocab[t] in g for t, g in zip(top1, gold, strict=True))
    n_gold = sum(len(g) for g in gold)
    p, r = hits / len(gold), hits / n_gold
    return 2 * p * r / (p + r) if p + r else 0.0


def run(train_texts, train_labels, test_texts, test_labels, learners, tag: str, n_jobs: int) -> list[dict]:
    from sklearn.preprocessing import MultiLabelBinarizer

    from patentcpc.config import LinearConfig
    from patentcpc.kinds.linear.model import build_pipeline

    vocab = sorted({c for ls in train_labels for c in ls})
    t0, c0 = time.perf_counter(), _cpu()
    vec = build_pipeline(LinearConfig()).named_steps["tfidf"]
    x = vec.fit_transform(train_texts)
    xt = vec.transform(test_texts)
    y = MultiLabelBinarizer(classes=vocab, sparse_output=True).fit_transform(train_labels)
    out = [{"tag": tag, "learner": "tfidf", "n_train": len(train_texts), "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(_cpu() - c0, 1), "peak_rss_mb": _rss()}]
    print(json.dumps(out[-1]), flush=True)
    for learner in learners:
        t0, c0 = time.perf_counter(), _cpu()
        if learner == "svc":
            from sklearn.multiclass import OneVsRestClassifier
            from sklearn.svm import LinearSVC

            clf = OneVsRestClassifier(LinearSVC(C=0.5, class_weight="balanced"), n_jobs=n_jobs).fit(x, y)
            fit_s, fit_c = time.perf_counter() - t0, _cpu() - c0
            top1 = np.argmax(clf.decision_function(xt), axis=1)
        else:
            import omikuji

            from patentcpc.kinds.omikuji.model import write_xmc_file

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "train.txt"
                write_xmc_file(path, x, y)
                model = omikuji.Model.train_on_data(str(path), omikuji.Model.default_hyper_param(), n_jobs)
            fit_s, fit_c = time.perf_counter() - t0, _cpu() - c0
            top1 = []
            xt = xt.tocsr()
            for i in range(xt.shape[0]):
                row = xt[i]
                pred = model.predict(list(zip(row.indices.tolist(), row.data.tolist(), strict=True)), top_k=1)
                top1.append(pred[0][0] if pred else 0)
            top1 = np.asarray(top1)
        rec = {"tag": tag, "learner": learner, "n_train": len(train_texts), "fit_wall_s": round(fit_s, 1),
               "fit_cpu_s": round(fit_c, 1), "total_wall_s": round(time.perf_counter() - t0, 1),
               "peak_rss_mb": _rss(), "f1@1": round(f1_at_1(top1, test_labels, vocab), 4)}
        print(json.dumps(rec), flush=True)
        out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path)
    ap.add_argument("--test", type=Path)
    ap.add_argument("--abstracts", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learners", default="svc,omikuji")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from patentcpc.data import load_data, split_data

    if args.abstracts:
        data = load_data(SHARED / "uspto-abstracts" / "patents.jsonl")
        tr, te = split_data(data, (0.8, 0.2), args.seed)
        tag = f"abstracts seed {args.seed}"
    else:
        tr, te = load_data(args.train), load_data(args.test)
        tag = f"generated {len(tr)}"
    recs = run(tr.texts, tr.labels, te.texts, te.labels, args.learners.split(","), tag, args.n_jobs)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in recs)


if __name__ == "__main__":
    main()
