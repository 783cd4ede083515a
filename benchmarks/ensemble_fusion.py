"""Fusion rules judged on cross-fitted member probabilities (``benchmarks/ensemble_oof.py``'s
``oof.npz``: every document predicted by members trained without its fold).

Default (session 25): for each fold in turn, every rule is tuned on the other four folds'
documents and measured on the fold; per-fold F1@1, the mean, and the paired difference to the
best single input (the input with the best mean) with a 95 % t-interval over the 5 folds. Rules:

* ``weights``: the simplex weights of the ensemble kind (``tune_weights``: F1@1 + LRAP);
* ``per-label``: per-label weights (for each label, the grid weights that maximise the tuning
  documents' top-1 hits when only that label's column changes) shrunk toward the global ones,
  ``w_l = (n_l w_l_hat + lam w) / (n_l + lam)``, ``n_l`` = tuning documents carrying the label;
* ``stack``: :func:`patentcpc.kinds.ensemble.stacking.fit_stacker` (logistic regression on per-(document,
  candidate label) features: every input's probability, log rank and gap to the best other
  label, and the label's log training count; candidates = union of the inputs' top 20).

For each rule also, pooled over the 5 test folds (552 documents): ECE@1 (10 equal-width bins) and
AUROC@1 of the output after the ensemble's calibrator (platt-gap, fitted on the tuning folds'
outputs; for ``stack`` also the stacker's own probability, ``raw``), and the split-conformal set
at coverage 0.9 (table from the tuning folds' outputs, as the model kind stores it): coverage and
mean set size on the test folds.

    python benchmarks/ensemble_fusion.py WORK/oof.npz [--json OUT.json]
    python benchmarks/ensemble_fusion.py WORK/oof.npz --session22   # session 22's table
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


def session22(path: str) -> None:
    d = np.load(path)
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


# ----------------------------------------------------------------------------- session 25

def calibrate(raw_tr: np.ndarray, y_tr: np.ndarray, raw_te: np.ndarray, score_type: str = "probability"
              ) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's calibrator (defaults of CalibrationConfig, known-only rows) fitted on the
    tuning outputs: (calibrated tuning outputs, calibrated test outputs)."""
    from patentcpc.calibration import fit_calibrator
    from patentcpc.config import CalibrationConfig

    c = CalibrationConfig()
    rows = y_tr.sum(1) > 0
    cal = fit_calibrator(raw_tr[rows], y_tr[rows], score_type, c.method, c.scope, c.fit_on, c.top_k,
                         c.min_support)
    return cal.transform(raw_tr), cal.transform(raw_te)


def per_label_weights(inputs: list[np.ndarray], y: np.ndarray, w: np.ndarray, grid: np.ndarray,
                      lam: float) -> np.ndarray:
    """(labels, inputs) weights: per label, the grid point maximising the top-1 hits of the tuning
    documents with every other label at the global ``w``, shrunk toward ``w`` by ``lam``."""
    x = np.stack(inputs, -1)  # docs, labels, inputs
    s = x @ w
    n, n_labels = s.shape
    out = np.tile(w, (n_labels, 1))
    order = np.argsort(-s, 1)
    for j in range(n_labels):
        n_j = int(y[:, j].sum())
        if not n_j:
            continue
        other = np.where(order[:, 0] == j, order[:, 1], order[:, 0])
        b = s[np.arange(n), other]
        g = y[np.arange(n), other]
        sw = x[:, j, :] @ grid.T  # docs, grid
        hits = (np.where(sw > b[:, None], y[:, j:j + 1], g[:, None])).sum(0)
        best = np.flatnonzero(hits == hits.max())
        pick = grid[best[np.argmin(np.abs(grid[best] - w).sum(1))]]
        out[j] = (n_j * pick + lam * w) / (n_j + lam)
    return out


def conformal_at(tr: np.ndarray, y_tr: np.ndarray, te: np.ndarray, y_te: np.ndarray, labels: list[str],
                 coverage: float = 0.9) -> tuple[float, float, float]:
    """(covered documents, summed set size, documents) on the test outputs, table from the tuning ones."""
    from patentcpc.conformal import fit_conformal, set_mask, threshold

    gold_tr = [[labels[j] for j in np.flatnonzero(r)] for r in y_tr]
    t = threshold(fit_conformal(tr, gold_tr, labels), coverage)
    mask = set_mask(te, t)
    return float((mask & y_te).any(1).sum()), float(mask.sum()), float(len(te))


def session25(path: str, json_out: str | None) -> None:
    import json

    from ensemble_pooled import t_interval  # this folder: the same paired interval as the held-out splits'

    from patentcpc.kinds.ensemble.model import combine, tune_weights, weight_grid
    from patentcpc.kinds.ensemble.stacking import fit_stacker
    from patentcpc.metrics import auroc, ece

    d = np.load(path)
    y, fold = d["gold"].astype(bool), d["fold"]
    labels = [str(c) for c in d["labels"]]
    names = [n for n in ("tfidf", "tfidf_all", "minilm", "minilm_knn", "scheme") if n in d.files]
    x = {n: d[n].astype(np.float64) for n in names}
    folds = sorted(set(fold.tolist()))
    counts = {k: np.log1p(y[fold != k].sum(0)) for k in folds}  # what fold k's members were trained on
    doc_counts = np.stack([counts[k] for k in fold])  # per document: its members' training counts
    sets = [s for s in (("tfidf", "minilm"), ("tfidf", "minilm", "scheme"), ("tfidf", "minilm", "minilm_knn"),
                        ("tfidf", "minilm", "minilm_knn", "scheme"), ("tfidf", "tfidf_all", "minilm", "scheme"),
                        ("tfidf", "tfidf_all", "minilm", "minilm_knn", "scheme"))
            if all(n in x for n in s)]
    rules: dict[str, dict] = {}

    def record(rule: str, k: int, te_idx: np.ndarray, out_te: np.ndarray, out_tr: np.ndarray | None = None,
               tr_idx: np.ndarray | None = None, extra: dict | None = None) -> None:
        r = rules.setdefault(rule, {"f1": [], "conf": [], "hit": [], "cov": [0.0, 0.0, 0.0], "extra": []})
        yt = y[te_idx]
        best = out_te.argmax(1)
        hit = yt[np.arange(len(te_idx)), best]
        r["f1"].append(f1_at_1(out_te, yt))
        r["conf"] += out_te[np.arange(len(te_idx)), best].tolist()
        r["hit"] += hit.astype(float).tolist()
        if out_tr is not None:
            c = conformal_at(out_tr, y[tr_idx], out_te, yt, labels)
            r["cov"] = [a + b for a, b in zip(r["cov"], c, strict=True)]
        if extra:
            r["extra"].append(extra)

    raw_scheme = x.get("scheme")
    for k in folds:
        te, tr = np.where(fold == k)[0], np.where(fold != k)[0]
        if raw_scheme is not None:  # the cold-start model's raw margins: calibrated on the tuning folds
            x["scheme"] = np.zeros_like(raw_scheme)
            x["scheme"][tr], x["scheme"][te] = calibrate(raw_scheme[tr], y[tr], raw_scheme[te], "margin")
        for n in names:
            record(f"{n} alone", k, te, x[n][te], x[n][tr], tr)
        for s in sets:
            tag = " + ".join(s)
            ins = [x[n] for n in s]
            gold_tr = [[labels[j] for j in np.flatnonzero(r)] for r in y[tr]]
            w, _ = tune_weights([a[tr] for a in ins], gold_tr, labels, 0.05)
            w = np.asarray(w)
            raw_tr, raw_te = combine([a[tr] for a in ins], w), combine([a[te] for a in ins], w)
            cal_tr, cal_te = calibrate(raw_tr, y[tr], raw_te)
            record(f"weights [{tag}]", k, te, cal_te, cal_tr, tr, {"weights": w.tolist()})
            grid = np.asarray(weight_grid(len(s), 0.1 if len(s) <= 3 else 0.25))
            for lam in (5.0, 20.0):
                wl = per_label_weights([a[tr] for a in ins], y[tr], w, grid, lam)
                f_tr = (np.stack([a[tr] for a in ins], -1) * wl[None]).sum(-1)
                f_te = (np.stack([a[te] for a in ins], -1) * wl[None]).sum(-1)
                c_tr, c_te = calibrate(f_tr, y[tr], f_te)
                record(f"per-label weights, lam {lam:g} [{tag}]", k, te, c_te, c_tr, tr)
            for c_reg in (1.0,):
                st = fit_stacker([a[tr] for a in ins], y[tr], doc_counts[tr], top_k=20, C=c_reg)
                p_tr = st.scores([a[tr] for a in ins], doc_counts[tr])
                p_te = st.scores([a[te] for a in ins], counts[k])
                record(f"stack raw, C {c_reg:g} [{tag}]", k, te, p_te, p_tr, tr,
                       {"coef": dict(zip(st.feature_names, np.round(st.coef, 3).tolist(), strict=True))})
                c_tr, c_te = calibrate(p_tr, y[tr], p_te)
                record(f"stack + calibrator, C {c_reg:g} [{tag}]", k, te, c_te, c_tr, tr)
        print(f"fold {k} done", file=sys.stderr, flush=True)
    alone = {n: np.mean(rules[f"{n} alone"]["f1"]) for n in names if n != "scheme"}
    ref = max(alone, key=alone.get)
    ref_f1 = np.asarray(rules[f"{ref} alone"]["f1"])
    print(f"reference (best single input by mean F1@1): {ref}\n")
    print("| rule | " + " | ".join(f"fold {k}" for k in folds)
          + " | mean F1@1 | vs best input (95 % t-interval) | ECE@1 | AUROC@1 | coverage@0.9 | mean set@0.9 |")
    print("|---|" + "---|" * (len(folds) + 6))
    summary = {}
    for rule, r in rules.items():
        f1 = np.asarray(r["f1"])
        mean, lo, hi = t_interval(f1 - ref_f1)
        conf, hit = np.asarray(r["conf"]), np.asarray(r["hit"])
        e, a = ece(conf, hit), auroc(conf, hit)
        cov, size, n = r["cov"]
        summary[rule] = {"f1": f1.tolist(), "mean": f1.mean(), "diff": mean, "lo": lo,
                         "hi": hi, "ece": e, "auroc": a, "coverage@0.9": cov / n if n else None,
                         "set@0.9": size / n if n else None, "extra": r["extra"]}
        print(f"| {rule} | " + " | ".join(f"{v:.3f}" for v in f1) + f" | {f1.mean():.4f} | {mean:+.4f} "
              f"[{lo:+.4f}, {hi:+.4f}] | {e:.3f} | {a:.3f} | "
              + (f"{cov / n:.3f} | {size / n:.1f} |" if n else "- | - |"))
    if json_out:
        Path(json_out).write_text(json.dumps({"reference": ref, "rules": summary}, indent=1, default=float))


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser()
    ap.add_argument("oof", nargs="?", default="/tmp/oof/oof.npz")
    ap.add_argument("--session22", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.session22:
        session22(args.oof)
    else:
        session25(args.oof, args.json)
