"""Audits of a synthetic corpus before it is trained on.

* **duplicates**: exact (normalized text) and near duplicates (MinHash LSH, ``datasketch``, on
  character 5-gram shingles of the normalized text; estimated Jaccard >= ``near_threshold``) of
  the real training and evaluation texts. :func:`filter_rows` drops them.
* **leakage**, per label: the share of synthetic texts that contain one of the code title's
  keywords next to the same share among the label's real texts (a synthetic share far above the
  real one means the generator writes the label name into the text), mentions of the code symbol,
  rows whose prompt named the label (instruction-level removal off) and rows masked.
* **fidelity**: MMD^2 (unbiased, RBF kernel, median-heuristic bandwidth on the real embeddings)
  between real and synthetic embeddings, per label and overall. Embeddings: TF-IDF + SVD (LSA)
  fitted on the real training texts (cheap), or any :func:`patentcpc.retrieval.embeddings.load_embedder`
  spec (e.g. a sentence-transformers folder).
* **diversity**: distinct-1/2 (unique n-grams / n-grams) and self-similarity (mean pairwise cosine
  of the embeddings) of the synthetic texts, next to the real ones.

:func:`write_report` writes ``audit.json``, ``audit.md`` and PNG plots.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patentcpc.numeric import l2_normalize
from patentcpc.synth.generators import LabelInfo, normalize_text

STOP = {"with", "from", "that", "this", "their", "other", "than", "such", "into", "used", "using", "means",
        "thereof", "therefor", "apparatus", "method", "methods", "devices", "device", "systems", "system",
        "general", "specially", "adapted", "particular", "elsewhere", "specified", "provided", "covered",
        "subclass", "subclasses", "class", "groups", "group", "based", "kind", "kinds", "making", "same"}


@dataclass
class AuditOptions:
    near_threshold: float = 0.8
    num_perm: int = 64
    embedder: str = "lsa:128"
    max_docs: int = 2000  # per side for the overall MMD and self-similarity
    seed: int = 0


# --------------------------------------------------------------------------- duplicates


def _shingles(text: str, n: int = 5) -> list[bytes]:
    t = normalize_text(text)
    if len(t) <= n:
        return [t.encode()]
    return [t[i: i + n].encode() for i in range(len(t) - n + 1)]


def _minhashes(texts: Sequence[str], num_perm: int, seed: int):
    from datasketch import MinHash

    return MinHash.bulk([_shingles(t) for t in texts], num_perm=num_perm, seed=seed)


def duplicate_flags(texts: Sequence[str], references: Mapping[str, Sequence[str]], near_threshold: float = 0.8,
                    num_perm: int = 64, seed: int = 1) -> dict[str, np.ndarray]:
    """Per reference set ``name``: ``exact_<name>`` and ``near_<name>`` boolean arrays over ``texts``."""
    from datasketch import MinHashLSH

    mh = _minhashes(texts, num_perm, seed) if texts else []
    out: dict[str, np.ndarray] = {}
    for name, ref in references.items():
        keys = {normalize_text(t) for t in ref}
        out[f"exact_{name}"] = np.array([normalize_text(t) in keys for t in texts], dtype=bool)
        lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm)
        for i, m in enumerate(_minhashes(ref, num_perm, seed)):
            lsh.insert(str(i), m, check_duplication=False)
        near = np.zeros(len(texts), dtype=bool)
        ref_mh = None
        for i, m in enumerate(mh):
            cands = lsh.query(m)
            if cands:
                if ref_mh is None:
                    ref_mh = _minhashes(ref, num_perm, seed)
                near[i] = any(m.jaccard(ref_mh[int(c)]) >= near_threshold for c in cands)
        out[f"near_{name}"] = near | out[f"exact_{name}"]
    return out


# --------------------------------------------------------------------------- fidelity and diversity


def mmd2(x: np.ndarray, y: np.ndarray, gamma: float) -> float | None:
    """Unbiased MMD^2 with the kernel ``exp(-gamma * |a - b|^2)``; None with fewer than 2 rows a side."""
    if len(x) < 2 or len(y) < 2:
        return None

    def k(a, b):
        d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-gamma * np.maximum(d, 0.0))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def median_gamma(x: np.ndarray, rng: np.random.Generator, max_rows: int = 1000) -> float:
    """``1 / median squared distance`` between rows (the median heuristic)."""
    if len(x) > max_rows:
        x = x[rng.choice(len(x), max_rows, replace=False)]
    d = (x * x).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * x @ x.T
    med = float(np.median(d[np.triu_indices(len(x), 1)])) if len(x) > 1 else 1.0
    return 1.0 / max(med, 1e-6)


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams, total = set(), 0
    for t in texts:
        w = normalize_text(t).split()
        g = [tuple(w[i: i + n]) for i in range(len(w) - n + 1)]
        grams.update(g)
        total += len(g)
    return len(grams) / total if total else 0.0


def self_similarity(x: np.ndarray) -> float | None:
    """Mean pairwise cosine between rows (None below 2 rows)."""
    if len(x) < 2:
        return None
    x = l2_normalize(x)
    s = x @ x.T
    n = len(x)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


def fit_embedder(spec: str, real_texts: Sequence[str], seed: int = 0):
    from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder

    emb = load_embedder(spec, EmbedOptions(seed=seed))
    if getattr(emb, "needs_fit", False):
        emb.fit(list(real_texts))
    return emb


def fidelity_diversity(real_texts: Sequence[str], real_labels: Sequence[Sequence[str]], syn_texts: Sequence[str],
                       syn_labels: Sequence[str], options: AuditOptions | None = None, embedder=None) -> dict:
    """MMD^2 overall and per label; distinct-n and self-similarity, real and synthetic."""
    o = options or AuditOptions()
    rng = np.random.default_rng(o.seed)
    emb = embedder or fit_embedder(o.embedder, real_texts, o.seed)
    xr = np.asarray(emb.encode(list(real_texts)), dtype=np.float64)
    xs = np.asarray(emb.encode(list(syn_texts)), dtype=np.float64) if len(syn_texts) else np.zeros((0, xr.shape[1]))
    gamma = median_gamma(xr, rng)

    def sub(x):
        return x[rng.choice(len(x), o.max_docs, replace=False)] if len(x) > o.max_docs else x

    per_label: dict[str, dict] = {}
    real_idx: dict[str, list[int]] = {}
    for i, ls in enumerate(real_labels):
        for c in ls:
            real_idx.setdefault(c, []).append(i)
    syn_idx: dict[str, list[int]] = {}
    for i, c in enumerate(syn_labels):
        syn_idx.setdefault(c, []).append(i)
    for c in sorted(syn_idx):
        r, s = real_idx.get(c, []), syn_idx[c]
        per_label[c] = {"n_real": len(r), "n_synthetic": len(s),
                        "mmd2": mmd2(xr[r], xs[s], gamma) if r else None,
                        "distinct_2_synthetic": distinct_n([syn_texts[i] for i in s], 2),
                        "distinct_2_real": distinct_n([real_texts[i] for i in r], 2) if r else None,
                        "self_similarity_synthetic": self_similarity(xs[s]),
                        "self_similarity_real": self_similarity(xr[r]) if r else None}
    return {
        "embedder": getattr(emb, "name", o.embedder), "gamma": gamma,
        "mmd2_overall": mmd2(sub(xr), sub(xs), gamma),
        "distinct_1": {"real": distinct_n(real_texts, 1), "synthetic": distinct_n(syn_texts, 1)},
        "distinct_2": {"real": distinct_n(real_texts, 2), "synthetic": distinct_n(syn_texts, 2)},
        "self_similarity": {"real": self_similarity(sub(xr)), "synthetic": self_similarity(sub(xs))},
        "per_label": per_label,
    }


# --------------------------------------------------------------------------- leakage


def title_keywords(title: str) -> set[str]:
    return {w for w in normalize_text(title).split() if len(w) >= 4 and w not in STOP and not w.isdigit()}


def leakage(rows: Sequence[dict], real_texts: Sequence[str], real_labels: Sequence[Sequence[str]],
            infos: Mapping[str, LabelInfo]) -> dict:
    """Per label: keyword overlap with the code title (synthetic vs real), code mentions, prompts
    that named the label, masked rows."""
    real_by: dict[str, list[str]] = {}
    for t, ls in zip(real_texts, real_labels, strict=True):
        for c in ls:
            real_by.setdefault(c, []).append(t)
    syn_by: dict[str, list[dict]] = {}
    for r in rows:
        syn_by.setdefault(r["source_label"], []).append(r)

    def rate(texts, kw):
        if not texts or not kw:
            return None
        return sum(bool(kw & set(normalize_text(t).split())) for t in texts) / len(texts)

    per_label = {}
    for c, rs in sorted(syn_by.items()):
        info = infos.get(c, LabelInfo(c))
        kw = title_keywords(info.title)
        code_rx = re.compile(rf"\b{re.escape(c)}\b", re.IGNORECASE)
        per_label[c] = {
            "title": info.title, "keywords": sorted(kw),
            "keyword_rate_synthetic": rate([r["text"] for r in rs], kw),
            "keyword_rate_real": rate(real_by.get(c, []), kw),
            "code_mentions": sum(bool(code_rx.search(r["text"])) for r in rs),
            "prompts_naming_label": sum(str(r.get("prompt_names_label")).lower() == "true" for r in rs),
            "masked": sum(str(r.get("masked")).lower() == "true" for r in rs), "n": len(rs)}
    vals = [(v["keyword_rate_synthetic"], v["keyword_rate_real"]) for v in per_label.values()
            if v["keyword_rate_synthetic"] is not None and v["keyword_rate_real"] is not None]
    n = len(rows) or 1
    return {"per_label": per_label,
            "mean_keyword_rate_synthetic": float(np.mean([a for a, _ in vals])) if vals else None,
            "mean_keyword_rate_real": float(np.mean([b for _, b in vals])) if vals else None,
            "labels_keyword_rate_above_real": sum(a > b for a, b in vals),
            "share_code_mentions": sum(v["code_mentions"] for v in per_label.values()) / n,
            "share_prompts_naming_label": sum(v["prompts_naming_label"] for v in per_label.values()) / n,
            "share_masked": sum(v["masked"] for v in per_label.values()) / n}


# --------------------------------------------------------------------------- the whole audit


def audit_rows(rows: Sequence[dict], train_texts: Sequence[str], train_labels: Sequence[Sequence[str]],
               eval_texts: Sequence[str] | None = None, options: AuditOptions | None = None,
               infos: Mapping[str, LabelInfo] | None = None, embedder=None) -> tuple[dict, list[dict]]:
    """The full audit; returns (report, rows kept after duplicate filtering)."""
    o = options or AuditOptions()
    texts = [r["text"] for r in rows]
    refs = {"train": list(train_texts)}
    if eval_texts:
        refs["eval"] = list(eval_texts)
    flags = duplicate_flags(texts, refs, o.near_threshold, o.num_perm)
    drop = np.zeros(len(rows), dtype=bool)
    for f in flags.values():
        drop |= f
    kept = [r for r, d in zip(rows, drop, strict=True) if not d]
    if infos is None:
        from patentcpc.synth.generators import label_infos

        infos = label_infos(sorted({r["source_label"] for r in rows}))
    report = {
        "n_synthetic": len(rows), "n_kept": len(kept), "near_threshold": o.near_threshold,
        "duplicates": {k: int(v.sum()) for k, v in flags.items()},
        "leakage": leakage(rows, train_texts, train_labels, infos),
        "fidelity": fidelity_diversity(train_texts, train_labels, [r["text"] for r in kept],
                                       [r["source_label"] for r in kept], o, embedder),
    }
    return report, kept


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def report_markdown(report: dict, top: int = 25) -> str:
    fid, leak = report["fidelity"], report["leakage"]
    lines = ["# Synthetic data audit", "",
             f"{report['n_synthetic']} synthetic rows; {report['n_kept']} kept after exact/near-duplicate "
             f"filtering (MinHash, Jaccard >= {report['near_threshold']}).", "",
             "| check | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["duplicates"].items()]
    lines += ["", "## Fidelity and diversity", "", f"Embeddings: `{fid['embedder']}`.", "",
              "| | real | synthetic |", "|---|---|---|",
              f"| distinct-1 | {_fmt(fid['distinct_1']['real'])} | {_fmt(fid['distinct_1']['synthetic'])} |",
              f"| distinct-2 | {_fmt(fid['distinct_2']['real'])} | {_fmt(fid['distinct_2']['synthetic'])} |",
              f"| self-similarity | {_fmt(fid['self_similarity']['real'])} | "
              f"{_fmt(fid['self_similarity']['synthetic'])} |", "",
              f"MMD^2 real vs synthetic, overall: {_fmt(fid['mmd2_overall'])}.", "",
              "## Leakage", "",
              f"Mean share of texts with a code-title keyword: synthetic {_fmt(leak['mean_keyword_rate_synthetic'])}, "
              f"real {_fmt(leak['mean_keyword_rate_real'])}; labels where synthetic exceeds real: "
              f"{leak['labels_keyword_rate_above_real']}. Rows mentioning the code: "
              f"{_fmt(leak['share_code_mentions'])}; prompts naming the label: "
              f"{_fmt(leak['share_prompts_naming_label'])}; masked rows: {_fmt(leak['share_masked'])}.", "",
              f"## Per label (the {top} with most synthetic rows)", "",
              "| label | real | synthetic kept | MMD^2 | distinct-2 syn/real | keyword rate syn/real | code mentions |",
              "|---|---|---|---|---|---|---|"]
    per = fid["per_label"]
    for c in sorted(per, key=lambda c: -per[c]["n_synthetic"])[:top]:
        p, lk = per[c], leak["per_label"].get(c, {})
        lines.append(f"| {c} | {p['n_real']} | {p['n_synthetic']} | {_fmt(p['mmd2'])} | "
                     f"{_fmt(p['distinct_2_synthetic'])} / {_fmt(p['distinct_2_real'])} | "
                     f"{_fmt(lk.get('keyword_rate_synthetic'))} / {_fmt(lk.get('keyword_rate_real'))} | "
                     f"{lk.get('code_mentions', '–')} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | os.PathLike, stem: str = "audit") -> list[Path]:
    """The folder ``out_dir``: ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``, all appearing at once
    (:func:`patentcpc.io.atomic_dir`); only a new or empty folder, or an earlier audit, is replaced.
    Returns the files' final paths."""
    from patentcpc.io import atomic_dir

    final = Path(out_dir)
    with atomic_dir(final, kind="synth-audit") as tmp:
        names = [p.name for p in _write_report_files(report, tmp, stem)]
    return [final / name for name in names]


def _write_report_files(report: dict, out: Path, stem: str) -> list[Path]:
    from patentcpc.models.artifact import atomic_write_text
    from patentcpc.plots import _plt, _save

    atomic_write_text(out / f"{stem}.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(out / f"{stem}.md", report_markdown(report))
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    plt = _plt()
    fid, leak = report["fidelity"], report["leakage"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    mmds = [v["mmd2"] for v in fid["per_label"].values() if v["mmd2"] is not None]
    axes[0].hist(mmds or [0], bins=30, color="#3b6ea5")
    axes[0].set_title(f"per-label MMD^2 (overall {_fmt(fid['mmd2_overall'])})")
    axes[0].set_xlabel("MMD^2 real vs synthetic")
    pts = [(v["keyword_rate_real"], v["keyword_rate_synthetic"]) for v in leak["per_label"].values()
           if v["keyword_rate_real"] is not None and v["keyword_rate_synthetic"] is not None]
    if pts:
        axes[1].scatter(*zip(*pts, strict=True), s=10, alpha=0.6)
    axes[1].plot([0, 1], [0, 1], color="grey", lw=1)
    axes[1].set_xlabel("real texts with a code-title keyword")
    axes[1].set_ylabel("synthetic texts with one")
    axes[1].set_title("leakage: keyword overlap per label")
    names = ["distinct-1", "distinct-2", "self-sim."]
    real = [fid["distinct_1"]["real"], fid["distinct_2"]["real"], fid["self_similarity"]["real"] or 0]
    syn = [fid["distinct_1"]["synthetic"], fid["distinct_2"]["synthetic"], fid["self_similarity"]["synthetic"] or 0]
    xs = np.arange(3)
    axes[2].bar(xs - 0.2, real, 0.4, label="real")
    axes[2].bar(xs + 0.2, syn, 0.4, label="synthetic")
    axes[2].set_xticks(xs, names)
    axes[2].legend()
    axes[2].set_title("diversity")
    paths.append(_save(fig, out / f"{stem}.png"))
    return paths
