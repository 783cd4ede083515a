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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
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
