"""Issue 30 items 2, 4 and 5: every fusion over every subset of three members, on the held-out splits.

For every split ``WORK/sN`` trained by ``ensemble_splits.py --keep-inputs`` (TF-IDF + fine-tuned
MiniLM: their kept cross-fitted inputs ``crossfit.npz``, the saved ensemble ``E``, the test part),
a third member ``SPEC`` (default ``probe:MINILM``: the pretrained all-MiniLM-L6-v2, frozen, with a
probe head) is trained by the trainer's own code on the same folds and on the whole training part
(:func:`ensemble_pooled.extra_member`, cached in ``WORK/sN/member-...``). Then each pair and the
triple of {TF-IDF, MiniLM, SPEC} is fused with ``stack`` and ``weights`` exactly as
``patentcpc train --model ensemble --members ...`` fits them (:func:`fit_ensemble` on the
cross-fitted inputs, calibration included) and scored on the test part.

Reported per model: F1@1 per split and mean, the paired difference with each member alone (95 %
t-interval over splits), ECE@1 and AUROC@1 pooled over all test patents, conformal coverage / mean
set at 0.8 / 0.9 / 0.95 pooled; and, for every model, the shares of 2,000 random 300-patent subsets
of the pooled test patents (the hidden holdout's size) with ECE@1 > 0.08, F1@1 < 0.49, 0.9
coverage outside 0.86-0.96 and a 0.9 mean set above 8 codes.

    PYTHONPATH=src python benchmarks/ensemble_member_subsets.py WORK [--member SPEC] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # ensemble_pooled's helpers

SUBSETS = {"tfidf + probe": (0, 2), "minilm + probe": (1, 2), "tfidf + minilm": (0, 1),
           "tfidf + minilm + probe": (0, 1, 2)}
NAMES = ("tfidf", "minilm", "probe")


def split_models(root: Path, member: str) -> dict:
    """Name -> (model, test scores) for the three members and every fusion of SUBSETS, one split."""
    from ensemble_pooled import extra_member, kept_inputs, test_inputs, widen

    from patentcpc.kinds.ensemble.model import EnsembleCPCModel, fit_ensemble
    from patentcpc.training.head import remember_embeddings

    ens, data, test_in = test_inputs(root)
    kept = kept_inputs(root, ens)
    cfg, full, gold, fold, union, inputs = kept.cfg, kept.full, kept.gold, kept.fold, kept.union, kept.inputs
    with remember_embeddings():  # as the trainer: a frozen encoder embeds each document once
        m, own, m_oof, m_test, m_labels = extra_member(cfg, member, full, root, gold, fold, data.texts)
    members, specs = [*ens.members[:2], m], [*cfg.ensemble.members[:2], member]
    wide = EnsembleCPCModel.union_labels(members)
    x = [widen(a, union, wide) for a in inputs[:2]] + [widen(m_oof, m_labels, wide)]
    xt = [widen(a, union, wide) for a in test_in[:2]] + [widen(m_test, m_labels, wide)]
    hc, counts = widen(kept.held_counts, union, wide), kept.counts
    out = {n: (mm, xt[i][:, [wide.index(c) for c in mm.labels]])
           for i, (n, mm) in enumerate(zip(NAMES[:2], members[:2], strict=True))}
    out["probe"] = (m, own)  # the member alone, as it scores by itself
    for name, idx in SUBSETS.items():
        ms = [members[i] for i in idx]
        cols = [wide.index(c) for c in EnsembleCPCModel.union_labels(ms)]
        for fusion in ("stack", "weights"):
            c = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, fusion=fusion, neighbours=False))
            model = fit_ensemble(ms, SimpleNamespace(labels=gold), c, [specs[i] for i in idx],
                                 {"extra": {"model_name": "ensemble"}}, neighbours=[None] * len(ms),
                                 inputs=[x[i][:, cols] for i in idx], held_counts=hc[:, cols], counts=counts,
                                 folds=fold)
            out[f"{fusion}, {name}"] = (model, model.calibrate(model.fuse([xt[i][:, cols] for i in idx])))
    return out, data.labels


def per_document(model, scores, gold) -> np.ndarray:
    """Rows (top-1 confidence, top-1 hit, number of gold codes, 0.9 set covers, 0.9 set size)."""
    from patentcpc.conformal import label_sets
    from patentcpc.metrics import top1_confidence

    conf, hit = top1_confidence(scores, gold, model.labels)
    sets = label_sets(model, scores, 0.9)
    cover = [bool(set(s.codes) & set(g)) for s, g in zip(sets, gold, strict=True)]
    return np.stack([conf, hit, [len(g) for g in gold], cover, [s.size for s in sets]], 1).astype(float)


def f1_at_1(rows: np.ndarray) -> float:
    p, r = rows[:, 1].mean(), rows[:, 1].sum() / rows[:, 2].sum()
    return float(2 * p * r / (p + r)) if p + r else 0.0


def subset_shares(pooled: np.ndarray, n: int, rng: np.random.Generator, size: int = 300) -> dict:
    """Shares of ``n`` random ``size``-patent subsets of the :func:`per_document` rows ``pooled``
    (the hidden holdout's size) that miss each done-means bar of issue 30."""
    from patentcpc.metrics import ece

    sub = []
    for _ in range(n):
        b = pooled[rng.choice(len(pooled), size, replace=False)]
        sub.append((ece(b[:, 0], b[:, 1]), f1_at_1(b), b[:, 3].mean(), b[:, 4].mean()))
    sub = np.array(sub)
    outside = (sub[:, 2] < 0.86) | (sub[:, 2] > 0.96)
    return {"ece@1 > 0.08": float((sub[:, 0] > 0.08).mean()), "f1@1 < 0.49": float((sub[:, 1] < 0.49).mean()),
            "f1@1 < 0.424": float((sub[:, 1] < 0.424).mean()),
            "0.9 coverage outside 0.86-0.96": float(outside.mean()), "0.9 mean set > 8": float((sub[:, 3] > 8).mean())}


def main() -> None:
    from ensemble_pooled import COVERAGES, measures, minilm_probe, pooled, t_interval

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--member", default=minilm_probe())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--subsets", type=int, default=2000, help="random 300-patent subsets")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    per: dict[str, list] = {}
    docs: dict[str, list] = {}
    for seed in args.seeds:
        models, gold = split_models(args.work / f"s{seed}", args.member)
        for name, (model, scores) in models.items():
            per.setdefault(name, []).append(measures(model, scores, gold))
            docs.setdefault(name, []).append(per_document(model, scores, gold))
        print(f"split {seed}: " + ", ".join(f"{n} {r[-1]['f1@1']:.3f}" for n, r in per.items()), flush=True)
    rng = np.random.default_rng(0)
    summary = {}
    for name, rows in per.items():
        s = pooled(rows)
        f1 = s["f1@1"]
        for base in NAMES:
            s[f"vs {base}"] = t_interval(np.subtract(f1, [r["f1@1"] for r in per[base]]))
        s["300-patent subsets"] = subset_shares(np.concatenate(docs[name]), args.subsets, rng)
        summary[name] = s
        print(f"{name:28s} F1@1 {s['mean f1@1']:.4f} ({' '.join(f'{v:.3f}' for v in f1)})  "
              f"ECE@1 {s['pooled ece@1']:.3f}  AUROC@1 {s['pooled auroc@1']:.3f}  "
              + "  ".join(f"{c:g}: {s[f'coverage@{c:g}']:.3f}/{s[f'mean set@{c:g}']:.1f}" for c in COVERAGES)
              + "  " + "  ".join(f"vs {b} {s[f'vs {b}'][0]:+.4f} [{s[f'vs {b}'][1]:+.4f}, {s[f'vs {b}'][2]:+.4f}]"
                                 for b in NAMES)
              + "  300-subsets: " + " ".join(f"{v:.2f}" for v in s["300-patent subsets"].values()))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
