"""Seconds (wall and CPU) and peak RSS of each non-optimizer phase at one size (benchmarks/scale.md).

Run on a folder made by ``scale_make_data.py`` (train.csv N rows, valid.csv / test.csv N/10)::

    python benchmarks/scale_bench.py --data /tmp/scale/300k --out benchmarks/scale_phases.jsonl
    python benchmarks/scale_bench.py --plot benchmarks/scale_phases.jsonl   # the log-log PNG

Phases, each on the library functions ``train`` uses: reading (``load_data``, Arrow), the
stratified split (``split_data`` of train.csv, 90/10), tokenization (``encode``, MiniLM's
tokenizer, max_length 64), label encoding (``sparse_labels``), per-label and global thresholds
and the streaming evaluation on an N/10 x 665 score matrix (scores: gold + noise, float32).
Peak RSS is the process's peak so far (``ru_maxrss``), so it is cumulative over the phases.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __init__(self, n: int, out: Path | None):
        self.n, self.out = n, out

    def __call__(self, phase: str, fn):
        w0, c0 = time.perf_counter(), _cpu()
        result = fn()
        rec = {"n": self.n, "phase": phase, "wall_s": round(time.perf_counter() - w0, 2),
               "cpu_s": round(_cpu() - c0, 2), "peak_rss_mb": round(_rss_mb())}
        print(json.dumps(rec), flush=True)
        if self.out:
            with open(self.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
        return result


def run(folder: Path, out: Path | None, phases: set[str] | None) -> None:
    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data, split_data
    from patentcpc.kinds.transformer.model import TransformerCPCModel, default_tokenizer_path
    from patentcpc.metrics import evaluate_scores, tune_global_threshold, tune_label_thresholds
    from patentcpc.training.batches import encode, sparse_labels

    def want(p: str) -> bool:
        return phases is None or p in phases

    with open(folder / "train.csv", "rb") as fh:
        n = sum(1 for _ in fh) - 1  # rows = lines here (the generator writes no newline inside a field)
    t = Timer(n, out)
    train = t("read", lambda: load_data(folder / "train.csv"))
    valid = load_data(folder / "valid.csv")
    if want("split"):
        t("split", lambda: split_data(train, (0.9, 0.1), 42))
    vocab = t("vocabulary", lambda: LabelVocab.from_label_lists(train.labels))
    if want("tokenize") or want("labels"):
        model = TransformerCPCModel.create(vocab.labels, arch="modernbert-tiny", tokenizer=default_tokenizer_path(),
                                           max_length=64, device="cpu")
        ds = t("tokenize", lambda: encode(model, train, vocab))
        t("label_encoding", lambda: sparse_labels(ds, len(vocab)))
        del ds
    gold = valid.labels
    rng = np.random.default_rng(0)
    scores = rng.random((len(gold), len(vocab)), dtype=np.float32) * 0.5
    index = vocab.index
    for i, labels in enumerate(gold):
        for c in labels:
            if c in index:
                scores[i, index[c]] += rng.random() * 0.6
    thr = t("global_threshold", lambda: tune_global_threshold(scores, gold, vocab.labels))[0]
    per = t("label_thresholds", lambda: tune_label_thresholds(scores, gold, vocab.labels, thr))
    t("evaluation", lambda: evaluate_scores(scores, gold, vocab.labels, per))


def plot(jsonl: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in jsonl.open(encoding="utf-8") if line.strip()]
    phases = sorted({r["phase"] for r in recs})
    fig, ax = plt.subplots(figsize=(7, 5))
    for p in phases:
        pts = sorted((r["n"], r["wall_s"]) for r in recs if r["phase"] == p)
        ax.plot([x for x, _ in pts], [max(y, 0.01) for _, y in pts], marker="o", label=p)
    ns = sorted({r["n"] for r in recs})
    if len(ns) > 1:
        ref = np.array([ns[0], ns[-1]], dtype=float)
        ax.plot(ref, 1.0 * ref / ref[0], "k--", lw=0.8, label="slope 1 (linear)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training documents n (validation n/10)")
    ax.set_ylabel("wall seconds (2-core CPU, niced neighbours)")
    ax.set_title("patentcpc phases against n")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--phases", help="comma-separated subset (split, tokenize, labels); default all")
    ap.add_argument("--plot", type=Path, help="a phases JSONL: write its log-log PNG beside it")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.plot.with_suffix(".png"))
        return
    run(args.data, args.out, set(args.phases.split(",")) if args.phases else None)


if __name__ == "__main__":
    main()
