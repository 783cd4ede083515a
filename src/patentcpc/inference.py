"""Prediction: scores -> ranked CPC codes with titles and hierarchy paths; files in, JSON Lines out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from patentcpc.cpc import hierarchy_path, title
from patentcpc.metrics import top_k_indices
from patentcpc.models.base import CPCModel


def format_predictions(model: CPCModel, scores: np.ndarray, top_k: int = 5) -> list[dict]:
    """For each row of ``scores``: the labels above their threshold plus the top k, best first."""
    scores = np.asarray(scores)
    thresholds = model.thresholds
    labels = model.labels
    top = top_k_indices(scores, top_k) if len(scores) else np.zeros((0, 0), dtype=int)
    out = []
    for i in range(scores.shape[0]):
        above = set(np.flatnonzero(scores[i] >= thresholds).tolist())
        chosen = list(dict.fromkeys(top[i].tolist() + sorted(above, key=lambda j: -scores[i, j])))
        chosen.sort(key=lambda j: -scores[i, j])
        preds = []
        for j in chosen:
            code = labels[j]
            preds.append({
                "code": code,
                "score": round(float(scores[i, j]), 6),
                "above_threshold": j in above,
                "title": title(code),
                "path": hierarchy_path(code),
            })
        out.append({"labels": [labels[j] for j in chosen if j in above], "predictions": preds})
    return out


def predict_texts(model: CPCModel, texts: Sequence[str], top_k: int = 5, batch_size: int = 64) -> list[dict]:
    """Predictions for raw texts (see :func:`format_predictions`)."""
    return format_predictions(model, model.scores(list(texts), batch_size=batch_size), top_k)


def iter_predictions(model: CPCModel, data, top_k: int = 5, chunk_size: int = 2048,
                     batch_size: int = 64) -> Iterator[dict]:
    """Predictions for a :class:`~patentcpc.data.PatentData`, chunk by chunk, with ids."""
    for batch in data.dataset.iter(batch_size=chunk_size):
        results = predict_texts(model, batch["text"], top_k, batch_size)
        for doc_id, res in zip(batch["id"], results):
            yield {"id": doc_id, **res}


def write_jsonl(records: Iterator[dict], path: str | os.PathLike, progress=None) -> int:
    """Write records as JSON Lines atomically (a temporary file renamed at the end)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
                if progress is not None:
                    progress(1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def predict_logits(model, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Logits of a :class:`~patentcpc.models.transformer.TransformerCPCModel` for ``texts``.

    Documents are sorted by token length and batched so that padding is small; output rows are in
    input order.
    """
    import torch  # noqa: PLC0415

    texts = list(texts)
    n_labels = len(model.labels)
    if not texts:
        return np.zeros((0, n_labels), dtype=np.float32)
    enc = model.tokenize(texts)
    ids = enc["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(texts), n_labels), dtype=np.float32)
    net = model.network
    net.eval()
    pad = model.tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            batch = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                batch[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            logits = net(batch.to(model.device), mask.to(model.device))
            out[idx] = logits.float().cpu().numpy()
    return out
