"""Fusion rules judged on cross-fitted member probabilities (``benchmarks/ensemble_oof.py``'s
``oof.npz``: every document predicted by members trained without its fold).

For each fold in turn, the weights are tuned on the other folds' documents and F1@1 is measured on
the fold; the mean over folds is reported. Rows: each input alone; TF-IDF + MiniLM and TF-IDF +
MiniLM + MiniLM neighbour vote with weights tuned on all the other folds (cross-fitting, what
``ensemble.folds`` does) or on a random 20 % of them (mean of 10 draws, what a held-out part of
the training data gives), for the objectives F1@1 and F1@1 + LRAP; and the weights the fold itself
would pick (an optimistic bound, not a method).

    python benchmarks/ensemble_fusion.py WORK/oof.npz
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import label_ranking_average_precision_score

GRID = np.round(np.arange(0, 1.0001, 0.05), 2)


def f1_at_1(s: np.ndarray, y: np.ndarray) -> float:
    hits = y[np.arange(len(s)), s.argmax(1)].sum()
    p, r = hits / len(s), hits / max(y.sum(), 1)
    return 2 * p * r / (p + r) if hits else 0.0


def objective(s: np.ndarray, y: np.ndarray, kind: str) -> float:
    keep = y.sum(1) > 0
    lrap = label_ranking_average_precision_score(y[keep], s[keep]) if kind == "f1+lrap" else 0.0
    return round(f1_at_1(s, y) + lrap, 9)


def main() -> None:
    d = np.load(sys.argv[1] if len(sys.argv) > 1 else "/tmp/oof/oof.npz")
    y, fold = d["gold"].astype(bool), d["fold"]
    inputs = [d["tfidf"], d["minilm"], d["minilm_knn"]]
    two = [(a, 1 - a, 0.0) for a in GRID]
    three = [(a, b, round(1 - a - b, 2)) for a in GRID for b in GRID if a + b <= 1.0001]
    fuse = lambda w, idx: sum(wi * x[idx] for wi, x in zip(w, inputs, strict=True))  # noqa: E731

    def best(cands, idx, kind):
        return max(cands, key=lambda w: (objective(fuse(w, idx), y[idx], kind), -np.std(w)))

    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {}
    folds = sorted(set(fold.tolist()))
    for k in folds:
        te, tr = np.where(fold == k)[0], np.where(fold != k)[0]
        for name, x in zip(("TF-IDF alone", "MiniLM alone", "MiniLM neighbour vote alone"), inputs, strict=True):
            rows.setdefault(name, []).append(f1_at_1(x[te], y[te]))
        for label, cands in (("TF-IDF + MiniLM", two), ("TF-IDF + MiniLM + neighbours", three)):
            for kind in ("f1", "f1+lrap"):
                w = best(cands, tr, kind)
                rows.setdefault(f"{label}, {kind}, tuned on the other folds", []).append(f1_at_1(fuse(w, te), y[te]))
                draws = []
                for _ in range(10):
                    sub = rng.choice(tr, size=len(tr) // 5, replace=False)
                    draws.append(f1_at_1(fuse(best(cands, sub, kind), te), y[te]))
                rows.setdefault(f"{label}, {kind}, tuned on 20 % of them", []).append(float(np.mean(draws)))
            w = best(cands, te, "f1")
            rows.setdefault(f"{label}, oracle (fold's own best)", []).append(f1_at_1(fuse(w, te), y[te]))
    print("| rule | " + " | ".join(f"fold {k}" for k in folds) + " | mean |")
    print("|---|" + "---|" * (len(folds) + 1))
    for name, v in rows.items():
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {np.mean(v):.4f} |")


if __name__ == "__main__":
    main()
