"""Leakage checks: documents shared by training and evaluation data (same id or the same text).

A patent that is in both the training and the evaluation data inflates every score. Analysts'
exports overlap easily (two searches, one family), so ``train --eval-data`` and ``evaluate``
count the shared ids and identical texts and warn with the counts.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from patentcpc.data import PatentData

# ``evaluate`` re-reads the training file named in a model's manifest only up to this size
MAX_TRAINING_FILE_BYTES = 512 * 1024 * 1024


@dataclass
class Overlap:
    """Evaluation documents that also occur in the training data."""

    n_eval: int
    shared_ids: int  # evaluation documents whose id is a training id (0 when either side has no id column)
    shared_texts: int  # evaluation documents whose text (case and spacing ignored) is a training text
    ids_compared: bool
    examples: list[str]  # a few shared ids (or texts, shortened)

    @property
    def any(self) -> bool:
        return bool(self.shared_ids or self.shared_texts)

    def message(self, train_name: str, eval_name: str) -> str:
        parts = []
        if self.shared_ids:
            parts.append(f"{self.shared_ids} share an id")
        if self.shared_texts:
            parts.append(f"{self.shared_texts} have a text identical to a training text")
        example = f" (e.g. {', '.join(self.examples[:3])})" if self.examples else ""
        return (f"{eval_name} overlaps the training data {train_name}: of {self.n_eval} evaluation documents, "
                f"{' and '.join(parts)}{example}; the scores are optimistic")

    def to_dict(self) -> dict:
        return {"n_eval": self.n_eval, "shared_ids": self.shared_ids, "shared_texts": self.shared_texts,
                "ids_compared": self.ids_compared}


def text_key(text: str) -> bytes:
    """A 16-byte digest of a text with case and spacing ignored."""
    return hashlib.blake2b(re.sub(r"\s+", " ", text).strip().lower().encode(), digest_size=16).digest()


def _keys(data: PatentData, with_ids: bool) -> tuple[set[str], set[bytes]]:
    ids: set[str] = set()
    texts: set[bytes] = set()
    for batch in data.dataset.iter(batch_size=10_000):
        if with_ids:
            ids.update(batch["id"])
        texts.update(text_key(t) for t in batch["text"])
    return ids, texts


def find_overlap(train: PatentData, evaluation: PatentData, max_examples: int = 5) -> Overlap:
    """Count the evaluation documents that share an id (when both sides have an id column) or an
    identical text (case and spacing ignored) with the training data."""
    with_ids = train.id_field is not None and evaluation.id_field is not None
    train_ids, train_texts = _keys(train, with_ids)
    shared_ids = shared_texts = 0
    examples: list[str] = []
    for batch in evaluation.dataset.iter(batch_size=10_000):
        for doc_id, text in zip(batch["id"], batch["text"], strict=True):
            id_hit = with_ids and doc_id in train_ids
            text_hit = text_key(text) in train_texts
            shared_ids += id_hit
            shared_texts += text_hit
            if (id_hit or text_hit) and len(examples) < max_examples:
                examples.append(doc_id if with_ids else repr(text[:40] + ("…" if len(text) > 40 else "")))
    return Overlap(len(evaluation), shared_ids, shared_texts, with_ids, examples)


def training_overlap(model, evaluation: PatentData) -> tuple[Overlap | None, str | None]:
    """Overlap of ``evaluation`` with the training data a model's manifest names, where that file is
    still on this machine, at most :data:`MAX_TRAINING_FILE_BYTES`, and unchanged (its fingerprint
    matches the manifest's); ``(None, why not)`` otherwise."""
    from patentcpc.config import DataConfig, from_dict
    from patentcpc.data import load_data
    from patentcpc.errors import PatentCPCError

    info = getattr(model.manifest, "training_data", None) or {}
    source = info.get("source")
    if not source or not isinstance(source, str) or not info.get("fingerprint"):
        return None, "the model's manifest names no training file"
    path = Path(source)
    if not path.exists():
        return None, f"the training data {source} is not on this machine"
    if path.is_file() and os.path.getsize(path) > MAX_TRAINING_FILE_BYTES:
        return None, f"the training data {source} is too large to re-read for the check"
    try:
        cfg = from_dict(DataConfig, dict((getattr(model.manifest, "config", None) or {}).get("data") or {}), "data")
        train = load_data(source, **cfg.load_kwargs())
    except PatentCPCError as exc:
        return None, f"the training data could not be re-read ({exc})"
    if train.fingerprint() != info["fingerprint"]:
        return None, f"the training data {source} changed since the model was trained"
    return find_overlap(train, evaluation), None
