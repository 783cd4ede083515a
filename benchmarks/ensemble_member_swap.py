"""Issue 30 (session 32): the documented ensemble with one member trained again by today's code.

For every split ``WORK/sN`` (``WORK/rN`` with ``--random-split``) trained by ``ensemble_splits.py
--keep-inputs`` (the saved ensemble ``E``, its cross-fitted inputs ``crossfit.npz``, the test part),
member ``--swap I`` is trained again with its own spec, the saved ensemble's configuration and
``--set`` overrides (defaults the configuration does not name are today's), by the trainer's own
code, on the same seeded folds and on the whole training part (``WORK/sN/<--tag>``, reused when
there). The other members and their cross-fitted inputs are the saved ones (a member is the same
when retrained: the same data, folds and seed), so each fusion below is what ``patentcpc train
--model ensemble`` would save today (:func:`fit_ensemble` on the cross-fitted inputs, calibration
included), without training the unchanged members again.

Reported as by ``ensemble_pooled.py``: F1@1 per split and mean, the paired difference with the best
member (95 % t-interval over splits), ECE@1 and AUROC@1 pooled over all test patents, conformal
coverage / mean set at 0.8 / 0.9 / 0.95 pooled and, with ``--subsets N``, the shares of N random
300-patent subsets that miss each done-means bar.

    PYTHONPATH=src python benchmarks/ensemble_member_swap.py WORK --swap 0 --tag tfidf-session32 \\
        [--random-split] [--seeds 0 1 2 3 4] [--set linear.title_weight=1] [--subsets 2000] [--json OUT]
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


def split_models(root: Path, swap: int, tag: str, overrides: list[str]) -> dict:
    """Name -> (model, test scores): the saved members, the swapped member, and both fusions over
    the members with the swap (one split)."""
    from ensemble_pooled import extra_member, kept_inputs, member_scores, test_inputs, widen

    from patentcpc.config import TrainConfig, apply_overrides, from_dict, to_dict
    from patentcpc.kinds.ensemble.model import EnsembleCPCModel, fit_ensemble

    ens, data, test_in = test_inputs(root)
    kept = kept_inputs(root, ens)
    cfg = from_dict(TrainConfig, apply_overrides(to_dict(kept.cfg), overrides))
    spec = cfg.ensemble.members[swap]
    work = root / tag
    work.mkdir(exist_ok=True)
    m, own, m_oof, m_test, m_labels = extra_member(cfg, spec, kept.full, root, kept.gold, kept.fold, data.texts,
                                                   work)
    n = len(ens.members)
    members = [m if i == swap else ens.members[i] for i in range(n)]
    wide = EnsembleCPCModel.union_labels(members)
    x = [widen(m_oof, m_labels, wide) if i == swap else widen(kept.inputs[i], kept.union, wide) for i in range(n)]
    xt = [widen(m_test, m_labels, wide) if i == swap else widen(test_in[i], kept.union, wide) for i in range(n)]
    hc = widen(kept.held_counts, kept.union, wide)
    short = [s.split(":")[0] + ":minilm" if "minilm" in s.lower() else s for s in cfg.ensemble.members]
    out = {f"member-{i} {'swapped ' if i == swap else ''}{s}":
           (m, own) if i == swap else member_scores(ens, i, test_in) for i, s in enumerate(short)}
    out["ensemble (as saved)"] = (ens, ens.calibrate(ens.fuse(test_in)))
    for fusion in ("weights", "stack"):
        c = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, fusion=fusion, neighbours=False))
        model = fit_ensemble(members, SimpleNamespace(labels=kept.gold), c, cfg.ensemble.members,
                             {"extra": {"model_name": "ensemble"}}, inputs=x, held_counts=hc, counts=kept.counts,
                             folds=kept.fold)
        out[f"{fusion}, member {swap} swapped"] = (model, model.calibrate(model.fuse(xt)))
    return out, data.labels


def main() -> None:
    from ensemble_member_subsets import per_document, subset_shares
    from ensemble_pooled import measures, pooled, t_interval

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--swap", type=int, default=0, help="the member trained again (its index in --members)")
    ap.add_argument("--tag", required=True, help="the folder of the swapped member's runs in each split")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for the swapped member")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--random-split", action="store_true")
    ap.add_argument("--subsets", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    per: dict[str, dict[int, dict]] = {}
    docs: dict[str, list] = {}
    for seed in args.seeds:
        root = args.work / f"{'r' if args.random_split else 's'}{seed}"
        models, gold = split_models(root, args.swap, args.tag, args.overrides)
        for name, (model, scores) in models.items():
            per.setdefault(name, {})[seed] = measures(model, scores, gold)
            if args.subsets:
                docs.setdefault(name, []).append(per_document(model, scores, gold))
        print(f"split {seed}: " + "  ".join(f"{k} {v[seed]['f1@1']:.3f}" for k, v in per.items()), flush=True)
    summary = {}
    members = [n for n in per if n.startswith("member-")]  # the swapped ensemble's members
    for name, by_seed in per.items():
        rows = [by_seed[s] for s in args.seeds]
        s = {"splits": args.seeds, **pooled(rows)}
        if args.subsets:
            s["300-patent subsets"] = subset_shares(np.concatenate(docs[name]), args.subsets, np.random.default_rng(0))
        if not name.startswith("member-"):
            best = max(members, key=lambda m: np.mean([per[m][x]["f1@1"] for x in args.seeds]))
            d = [by_seed[x]["f1@1"] - per[best][x]["f1@1"] for x in args.seeds]
            mean, lo, hi = t_interval(d)
            s[f"vs best member ({best})"] = {"diffs": d, "mean": mean, "ci95": [lo, hi]}
        summary[name] = s
        vs = next((f"  vs {k[15:-1]}: {v['mean']:+.4f} [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}]"
                   for k, v in s.items() if k.startswith("vs best")), "")
        print(f"{name:40s} F1@1 {s['mean f1@1']:.4f} ({' '.join(f'{x:.3f}' for x in s['f1@1'])})  "
              f"ECE@1 {s['pooled ece@1']:.3f}  AUROC@1 {s['pooled auroc@1']:.3f}  "
              + "  ".join(f"cov@{c:g} {s.get(f'coverage@{c:g}', np.nan):.3f}/{s.get(f'mean set@{c:g}', np.nan):.1f}"
                          for c in (0.8, 0.9, 0.95)) + vs
              + ("\n" + " " * 41 + "300-subsets: "
                 + " ".join(f"{k} {v:.3f}" for k, v in s["300-patent subsets"].items()) if args.subsets else ""))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
