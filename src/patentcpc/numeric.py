"""Small numeric helpers shared by every layer: one sigmoid, one L2 normalisation, one pooling.

NumPy only at import time; :func:`pool` works on torch tensors without importing torch itself.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("cls", "mean", "last")  # last: the last non-padding token (decoder-only models)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function of logits, without overflow warnings for large negative logits."""
    x = np.asarray(x)
    out = np.empty_like(x, dtype=np.result_type(x.dtype, np.float32))
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (rows of zeros stay zero)."""
    x = np.asarray(x)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def pool(hidden, attention_mask, pooling: str = "cls"):
    """Pooled vector of a (batch, seq, width) hidden-state tensor: the first token (``cls``), the
    mean over the tokens the mask keeps (``mean``) or each row's last kept token (``last``: left- or
    right-padded batches)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        import torch

        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * (positions + 1)).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if pooling != "mean":
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not '{pooling}'")
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def knn_label_votes(sims: np.ndarray, train_y: np.ndarray, k: int, weighting: str = "softmax",
                    temperature: float = 0.05) -> np.ndarray:
    """Label scores (queries x labels) from similarities to the training documents (queries x
    train) and their label matrix (train x labels): the weighted share of the ``k`` nearest
    neighbours that carry each label, in [0, 1]. ``weighting``: ``uniform``, ``similarity``
    (cosine) or ``softmax`` (exp(sim / temperature))."""
    sims = np.asarray(sims, dtype=np.float64)
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, axis=1)
    if weighting == "uniform":
        w = np.ones_like(s)
    elif weighting == "similarity":
        w = np.clip(s, 1e-6, None)
    else:
        w = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    w = w / w.sum(axis=1, keepdims=True)
    return np.einsum("qk,qkl->ql", w, train_y[top].astype(np.float64))
