"""PNG plots (matplotlib, headless): label distribution, training curves, comparisons."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    from patentcpc.io import atomic_path  # noqa: PLC0415

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
    import json  # noqa: PLC0415

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
