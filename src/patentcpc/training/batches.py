"""Training data as the transformer trainer reads it: training/validation data, tokenized
``datasets.Dataset`` s, the multi-label batch collator and label matrices (dense or sparse)."""

from __future__ import annotations

import os

import numpy as np
import torch

from patentcpc.config import TrainConfig
from patentcpc.cpc import LabelVocab
from patentcpc.data import PatentData, load_data, split_data
from patentcpc.errors import ConfigError
from patentcpc.models.network import pad_batch

TOKENIZE_PROCS_MIN_ROWS = 200_000  # tokenize in several processes from this many documents


def load_train_eval(cfg: TrainConfig, data: str | None, eval_data: str | None) -> tuple[PatentData, PatentData]:
    """Training data and validation data (``eval_data`` or a stratified split of ``data``)."""
    if not data:
        raise ConfigError("--data is required to train a transformer")
    train = load_data(data, **cfg.data.load_kwargs())
    if len(train) < 2:
        raise ConfigError(f"{data}: need at least 2 labelled documents to train")
    if eval_data:  # the training text view, where the eval data has those fields
        return train, load_data(eval_data, **cfg.data.load_kwargs(), preferred_text_fields=train.text_fields)
    frac = cfg.transformer.valid_fraction
    train_part, valid = split_data(train, (1 - frac, frac), cfg.seed)
    train_part.n_skipped = train.n_skipped
    return train_part, valid


def encode(model, data: PatentData, vocab: LabelVocab, num_proc: int | None = None):
    """A ``datasets.Dataset`` with input_ids, attention_mask, length and label_ids: tokenized in
    batches of 1,000 (the fast tokenizer's own threads), in up to ``num_proc`` processes (default:
    the cores, from :data:`TOKENIZE_PROCS_MIN_ROWS` documents); a memory-mapped source caches the
    result beside its Arrow files. ``model``: anything with ``tokenize(texts)``."""
    index = vocab.index

    def fn(batch: dict) -> dict:
        enc = model.tokenize(batch["text"])
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "length": [len(x) for x in enc["input_ids"]],
                "label_ids": [[index[c] for c in labels if c in index] for labels in batch["labels"]]}

    kwargs = {}
    if not data.dataset.cache_files:  # in memory, nothing to cache: skip hashing fn (dill-pickles the tokenizer,
        import uuid  # seconds per call)

        kwargs["new_fingerprint"] = uuid.uuid4().hex
    if num_proc is None and len(data) >= TOKENIZE_PROCS_MIN_ROWS:
        num_proc = min(os.cpu_count() or 1, 8)
    ds = data.dataset.map(fn, batched=True, batch_size=1000, remove_columns=data.dataset.column_names,
                          num_proc=num_proc if num_proc and num_proc > 1 else None, desc="tokenizing", **kwargs)
    return ds


class MultiLabelCollator:
    """Pads a batch and turns label index lists into a float multi-hot ``labels`` tensor."""

    def __init__(self, pad_token_id: int, n_labels: int):
        self.pad, self.n_labels = pad_token_id, n_labels

    def __call__(self, features: list[dict]) -> dict:
        ids, mask = pad_batch([f["input_ids"] for f in features], self.pad)
        labels = torch.zeros((len(features), self.n_labels), dtype=torch.float32)
        for r, f in enumerate(features):
            labels[r, list(f["label_ids"])] = 1.0
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def multi_hot(label_ids: list[list[int]], n_labels: int) -> np.ndarray:
    y = np.zeros((len(label_ids), n_labels), dtype=np.float32)
    for i, cols in enumerate(label_ids):
        y[i, cols] = 1.0
    return y


def sparse_labels(ds, n_labels: int, batch_size: int = 100_000):
    """The ``label_ids`` column of an encoded dataset as a CSR float32 matrix (read in batches;
    never a dense documents x labels matrix)."""
    from scipy import sparse

    indptr, indices = [np.zeros(1, dtype=np.int64)], []
    offset = 0
    for batch in ds.select_columns(["label_ids"]).iter(batch_size=batch_size):
        rows = batch["label_ids"]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr.append(offset + np.cumsum(lengths))
        offset += int(lengths.sum())
        indices.append(np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(lengths.sum())))
    idx = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    y = sparse.csr_matrix((np.ones(len(idx), dtype=np.float32), idx, np.concatenate(indptr)),
                          shape=(len(ds), n_labels))
    y.sum_duplicates()
    y.data[:] = 1.0
    return y


def dense_rows(y, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of a dense or sparse label matrix, dense float32."""
    if rows is not None:
        y = y[rows]
    return y.toarray().astype(np.float32) if hasattr(y, "toarray") else np.asarray(y, dtype=np.float32)
