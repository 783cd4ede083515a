"""Issue 29: reliability of the top-5 probabilities at the low end, and what abstention does.

TF-IDF (defaults: out-of-fold platt-gap calibration, abstain_below tuned on the same out-of-fold
scores) on a seeded 80 % of the shared abstracts, tested on the other 20 %. From the repository root:

    SPLIT_SEED=0 PATENTCPC_PROGRESS=0 python benchmarks/calibration_low_end.py [--set-style overrides...]

e.g. ``calibration.fit_on=all``. Prints the calibration map, reliability bins of the top-5
probabilities, mean probability against hit rate per rank, and micro F1 / precision of the assigned
codes with and without abstention. Results: benchmarks/calibration.md ("The low end")."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

from patentcpc.calibration import multi_hot
from patentcpc.config import TrainConfig, resolve
from patentcpc.data import load_data
from patentcpc.registry import train_model

DATA = "../shared/data/uspto-abstracts/patents.jsonl"
BINS = [(0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.5), (0.5, 1.01)]


def micro(preds, gold) -> tuple[float, float]:
    """Micro F1 and precision of the assigned codes."""
    tp = sum(len({p.code for p in row} & set(g)) for row, g in zip(preds, gold, strict=True))
    npred = sum(len(row) for row in preds)
    ngold = sum(len(set(g)) for g in gold)
    return 2 * tp / (npred + ngold), tp / max(npred, 1)


def main() -> None:
    with open(DATA, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    order = np.random.default_rng(int(os.environ.get("SPLIT_SEED", "0"))).permutation(len(rows))
    cut = int(0.8 * len(rows))
    tmp = tempfile.mkdtemp()
    for name, idx in (("train", order[:cut]), ("test", order[cut:])):
        with open(f"{tmp}/{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(rows[i]) + "\n" for i in idx)
    cfg = resolve(TrainConfig, None, {"model": "tfidf"}, sys.argv[1:])
    m = train_model(cfg, f"{tmp}/train.jsonl", None, None).model
    test = load_data(f"{tmp}/test.jsonl", level=m.manifest.label_level)
    s = m.scores(test.texts)
    y = multi_hot(test.labels, m.labels)
    top = np.argsort(-s, 1)[:, :5]
    r = np.arange(len(s))[:, None]
    p, h = s[r, top].ravel(), y[r, top].ravel()
    cal = {k: v for k, v in m.manifest.extra["calibration"].items() if k != "info"}
    print("calibration:", cal, "abstain_below", m.abstain_below)
    for lo, hi in BINS:
        k = (p >= lo) & (p < hi)
        if k.any():
            print(f"[{lo:.2f},{hi:.2f}) n={k.sum():4d} mean p={p[k].mean():.3f} observed={h[k].mean():.3f}")
    for rank in range(5):
        print(f"rank {rank + 1}: mean p={s[r[:, 0], top[:, rank]].mean():.3f} "
              f"observed={y[r[:, 0], top[:, rank]].mean():.3f}")
    pred = m.predict(test.texts)
    print("docs with no code assigned:", sum(not x for x in pred), "of", len(pred))
    print("assigned micro F1 / precision with abstention {:.3f} / {:.3f}".format(*micro(pred, test.labels)))
    print("without (min_score=0)                         {:.3f} / {:.3f}".format(
        *micro(m.predict(test.texts, min_score=0.0), test.labels)))


if __name__ == "__main__":
    main()
