"""Issue 30 items 2 and 5 (session 30): more stacker features, and a zero-shot label-text input, on
the held-out splits of the documented ensemble's members.

For every split ``WORK/sN`` trained by ``ensemble_splits.py --keep-inputs`` (the kept cross-fitted
inputs of TF-IDF and the fine-tuned MiniLM, the saved ensemble ``E``, the test part) and its
frozen-MiniLM probe member (``ensemble_pooled.extra_member``, cached in ``WORK/sN/member-...``, as
``ensemble_member_subsets.py`` trains it), the stacker over TF-IDF + probe (the documented command)
and over TF-IDF + fine-tuned MiniLM + probe is fitted exactly as the trainer fits it
(:func:`fit_ensemble` on the cross-fitted inputs, calibration included), with its per-(document,
label) features (:func:`patentcpc.kinds.ensemble.stacking.features`: each input's probability, log
rank, gap to the best other label, and the label's training frequency) extended by:

* ``agree``: the number of inputs that rank the label first, and the label's smallest probability
  over the inputs (interactions a linear stacker on per-input features cannot form);
* ``prod``: the log of the product of the inputs' probabilities;
* ``doc``: each input's top probability in the document (how sure each input is of the document);
* ``zero-shot``: one more input, the cosine between the document's frozen-MiniLM embedding (the
  probe member's encoder, mean pooled) and the mean embedding of the label's scheme documents
  (``scheme.label_documents``, ``seen``); -1 for a label without scheme documents.

Reported: F1@1 per split and mean, the paired difference with the documented stack (95 %
t-interval), ECE@1 and AUROC@1 pooled over the test patents, conformal coverage / mean set at
0.8 / 0.9 / 0.95 pooled.

    PYTHONPATH=src python benchmarks/ensemble_stack_features.py WORK [--variants NAME ...] [--json OUT]
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

EXTRAS = ("agree", "prod", "doc")
VARIANTS = {  # name: (member indices: 0 TF-IDF, 1 fine-tuned MiniLM, 2 probe; extra features; zero-shot input)
    "tfidf + probe (documented)": ((0, 2), (), False),
    "tfidf + probe, + agree": ((0, 2), ("agree",), False),
    "tfidf + probe, + prod": ((0, 2), ("prod",), False),
    "tfidf + probe, + doc": ((0, 2), ("doc",), False),
    "tfidf + probe, + agree + doc": ((0, 2), ("agree", "doc"), False),
    "tfidf + probe, + agree + prod + doc": ((0, 2), EXTRAS, False),
    "tfidf + probe + zero-shot": ((0, 2), (), True),
    "tfidf + probe + zero-shot, + agree": ((0, 2), ("agree",), True),
    "tfidf + probe + zero-shot, + agree + prod + doc": ((0, 2), EXTRAS, True),
    "tfidf + minilm + probe": ((0, 1, 2), (), False),
    "tfidf + minilm + probe, + agree": ((0, 1, 2), ("agree",), False),
}


def extended(base, extras: tuple[str, ...]):
    """``stacking.features`` with the ``extras`` columns appended."""
    from patentcpc.kinds.ensemble import stacking

    def features(inputs, log_counts):
        f = base(inputs, log_counts)
        if not extras:
            return f
        n, n_labels = np.shape(inputs[0])
        s = np.stack([np.asarray(x, dtype=np.float64) for x in inputs], -1)
        cols = []
        if "agree" in extras:
            k = len(stacking.PER_INPUT)
            log_rank = f[..., stacking.PER_INPUT.index("log_rank"):k * len(inputs):k]
            cols += [(log_rank == 0).sum(-1).astype(np.float64), s.min(-1)]
        if "prod" in extras:
            cols.append(np.log(np.clip(s, 1e-12, None)).sum(-1))
        if "doc" in extras:
            cols += [np.broadcast_to(s[..., i].max(1, keepdims=True), (n, n_labels)) for i in range(len(inputs))]
        return np.concatenate([f, np.stack(cols, -1)], -1)

    return features


def zero_shot(encoder, texts: list[str], wide: list[str], label_emb: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine between each text's embedding and each label's mean scheme-document embedding."""
    _, e = encoder.scores_and_embeddings(texts)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    out = np.full((len(texts), len(wide)), -1.0)
    for j, c in enumerate(wide):
        if c in label_emb:
            out[:, j] = e @ label_emb[c]
    return out


def split_runs(root: Path, member: str, names: list[str]) -> tuple[dict, list]:
    from ensemble_pooled import extra_member, kept_inputs, oof_texts, test_inputs, widen

    from patentcpc.kinds.ensemble import stacking
    from patentcpc.kinds.ensemble.model import EnsembleCPCModel, fit_ensemble
    from patentcpc.scheme import label_documents
    from patentcpc.training.head import remember_embeddings

    ens, data, test_in = test_inputs(root)
    kept = kept_inputs(root, ens)
    cfg = kept.cfg
    with remember_embeddings():
        m, _, m_oof, m_test, m_labels = extra_member(cfg, member, kept.full, root, kept.gold, kept.fold, data.texts)
    members, specs = [*ens.members[:2], m], [*cfg.ensemble.members[:2], member]
    wide = EnsembleCPCModel.union_labels(members)
    x = [widen(a, kept.union, wide) for a in kept.inputs[:2]] + [widen(m_oof, m_labels, wide)]
    xt = [widen(a, kept.union, wide) for a in test_in[:2]] + [widen(m_test, m_labels, wide)]
    hc = widen(kept.held_counts, kept.union, wide)
    # the zero-shot input: it reads no patents, so the same for cross-fitted and test documents
    texts, labels = label_documents(wide, "seen")
    _, le = m.scores_and_embeddings(texts)
    le = le / np.linalg.norm(le, axis=1, keepdims=True)
    label_emb = {}
    for c in wide:
        rows = [i for i, ls in enumerate(labels) if ls[0] == c]
        if rows:
            v = le[rows].mean(0)
            label_emb[c] = v / np.linalg.norm(v)
    z_oof = zero_shot(m, oof_texts(kept.full, cfg.seed, cfg.ensemble.folds), wide, label_emb)
    z_test = zero_shot(m, data.texts, wide, label_emb)
    base, out = stacking.features, {}
    try:
        for name in names:
            idx, extras, zs = VARIANTS[name]
            stacking.features = extended(base, extras)
            ms = [members[i] for i in idx]
            cols = [wide.index(c) for c in EnsembleCPCModel.union_labels(ms)]
            ins, tins, sp = [x[i][:, cols] for i in idx], [xt[i][:, cols] for i in idx], [specs[i] for i in idx]
            if zs:
                ms, sp = [*ms, ms[-1]], [*sp, "zero-shot"]
                ins, tins = [*ins, z_oof[:, cols]], [*tins, z_test[:, cols]]
            c = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, fusion="stack", neighbours=False))
            model = fit_ensemble(ms, SimpleNamespace(labels=kept.gold), c, sp, {"extra": {"model_name": "ensemble"}},
                                 neighbours=[None] * len(ms), inputs=ins, held_counts=hc[:, cols],
                                 counts=kept.counts, folds=kept.fold)
            out[name] = (model, model.calibrate(model.fuse(tins)))
    finally:
        stacking.features = base
    return out, data.labels


def main() -> None:
    from ensemble_pooled import COVERAGES, measures, minilm_probe, pooled, t_interval


    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--member", default=minilm_probe())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME",
                    help="these variants only (the documented stack is always fitted, as the baseline)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    names = [next(iter(VARIANTS)), *(v for v in args.variants if v != next(iter(VARIANTS)))]
    per: dict[str, list] = {}
    for seed in args.seeds:
        runs, gold = split_runs(args.work / f"s{seed}", args.member, names)
        for name, (model, scores) in runs.items():
            per.setdefault(name, []).append(measures(model, scores, gold))
        print(f"split {seed}: " + ", ".join(f"{n} {r[-1]['f1@1']:.3f}" for n, r in per.items()), flush=True)
    base = [r["f1@1"] for r in per[next(iter(VARIANTS))]]
    summary = {}
    for name, rows in per.items():
        s = pooled(rows)
        s["vs documented"] = t_interval(np.subtract(s["f1@1"], base))
        f1 = s["f1@1"]
        summary[name] = s
        d = s["vs documented"]
        print(f"{name:38s} F1@1 {s['mean f1@1']:.4f} ({' '.join(f'{v:.3f}' for v in f1)})  "
              f"vs documented {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]  ECE@1 {s['pooled ece@1']:.3f}  "
              f"AUROC@1 {s['pooled auroc@1']:.3f}  "
              + "  ".join(f"{c:g}: {s[f'coverage@{c:g}']:.3f}/{s[f'mean set@{c:g}']:.1f}" for c in COVERAGES))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
