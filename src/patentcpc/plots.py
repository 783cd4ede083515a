"""PNG plots (matplotlib, headless): label distribution, training curves, comparisons."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    from patentcpc.io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or None)
    finally:
        _plt().close(fig)
    return path


def plot_top_labels(label_counts: Sequence[tuple[str, int]], path: str | os.PathLike, top: int = 30,
                    title: str = "Top CPC subclasses") -> Path:
    """Bar chart of the ``top`` most frequent labels, with their share of all assignments."""
    plt = _plt()
    items = list(label_counts)[:top]
    total = sum(c for _, c in label_counts) or 1
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.bar([c for c, _ in items], [n for _, n in items], color="#3b6ea5")
    ax.set_ylabel("documents")
    share = sum(n for _, n in items) / total
    ax.set_title(f"{title}: the top {len(items)} of {len(label_counts)} labels hold {share:.0%} of assignments")
    ax.tick_params(axis="x", rotation=90)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_rank_frequency(label_counts: Sequence[tuple[str, int]], path: str | os.PathLike,
                        title: str = "CPC label frequency vs rank") -> Path:
    """Log-log rank/frequency plot of every label (the long tail)."""
    plt = _plt()
    counts = sorted((n for _, n in label_counts), reverse=True)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.loglog(range(1, len(counts) + 1), counts, marker=".", linestyle="-", color="#a53b3b")
    ax.set_xlabel("rank")
    ax.set_ylabel("frequency")
    ax.set_title(f"{title} ({len(counts)} labels)")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_training_curves(metrics_jsonl: str | os.PathLike, path: str | os.PathLike,
                         title: str = "Validation F1 during training") -> Path:
    """Micro and macro F1 (and f1@1) per evaluation from a trainer's ``metrics.jsonl`` log."""
    import json

    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text(encoding="utf-8").splitlines() if line]
    evals = [r for r in rows if "eval_micro_f1" in r]
    if not evals:
        raise ValueError(f"{metrics_jsonl}: no evaluation records")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = [r["step"] for r in evals]
    for key, label in (("eval_micro_f1", "micro F1"), ("eval_macro_f1", "macro F1"), ("eval_f1@1", "F1@1")):
        ax.plot(steps, [r.get(key, float("nan")) for r in evals], marker="o", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_reliability(bins: Sequence[dict], path: str | os.PathLike, ece: float | None = None,
                     title: str = "Top-1 reliability") -> Path:
    """Reliability diagram of the top-1 predictions: hit rate against mean probability per bin
    (``bins`` from :func:`patentcpc.calibration.reliability_bins`), with the documents per bin."""
    plt = _plt()
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
    acc = [b["accuracy"] if b["accuracy"] is not None else 0 for b in bins]
    ax.bar(centers, acc, width=width * 0.9, color="#3b6ea5", label="hit rate of the top-1 code")
    conf = [(c, b["confidence"]) for c, b in zip(centers, bins, strict=True) if b["confidence"] is not None]
    ax.plot([c for c, _ in conf], [v for _, v in conf], "o", color="#c0504d", label="mean probability")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("hit rate")
    ax.set_title(title + (f" (ECE@1 {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left", fontsize=8)
    axn.bar(centers, [b["n"] for b in bins], width=width * 0.9, color="#999999")
    axn.set_xlabel("probability of the top-1 code")
    axn.set_ylabel("documents")
    axn.set_xlim(0, 1)
    return _save(fig, path)
