"""Multi-label losses over logits ``(batch, n_labels)`` and multi-hot targets of the same shape.

* ``bce``: binary cross-entropy, averaged over labels and documents.
* ``weighted``: BCE whose positive terms are weighted per label: ``balanced`` weights are
  scikit-learn's ``compute_class_weight("balanced")`` over the label assignments
  (``n_assignments / (n_labels * count_j)``), ``inv_sqrt`` weights are ``1 / sqrt(count_j)``
  scaled to mean 1.
* ``focal``: sigmoid focal loss (Lin et al., 2017), ``(1 - p_t)^gamma`` times BCE, optionally
  alpha-balanced.
* ``hierarchical``: BCE plus the *expected hierarchical cost* of the prediction: the labels'
  sigmoid probabilities are normalized into a distribution ``q`` over the label set and each label
  costs its CPC tree distance to the nearest gold label, divided by the largest distance::

      L = BCE + lambda * sum_j q_j * min_{g in gold} d(j, g) / d_max

  This is the hierarchical cost of Deng et al. (2010, "What does classifying more than 10,000
  image categories tell us?"), taken in expectation under the model's distribution so that it is
  differentiable, as in the expected-cost ("soft") formulations discussed by Bertinetto et al.
  (2020, "Making better mistakes"). Probability mass on A01C when the gold label is A01B costs
  2/6; on H01L it costs 6/6. Unlike a penalty computed from an argmax under ``no_grad``, it has a
  gradient with respect to every logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from patentcpc.errors import ConfigError

LOSSES = ("bce", "weighted", "focal", "hierarchical")


def label_counts(targets) -> np.ndarray:
    """Positives per label column of a multi-hot matrix (dense, or a SciPy sparse matrix)."""
    if hasattr(targets, "tocsr"):  # scipy.sparse
        return np.asarray(targets.sum(axis=0)).ravel().astype(np.float64)
    return np.asarray(targets).sum(axis=0).astype(np.float64)


def class_weights(counts: Sequence[float], scheme: str = "balanced") -> np.ndarray:
    """Per-label weights from label counts: ``balanced`` (as sklearn) or ``inv_sqrt``. Labels
    never seen count as seen once."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if scheme == "balanced":
        return counts.sum() / (len(counts) * counts)
    if scheme == "inv_sqrt":
        w = 1.0 / np.sqrt(counts)
        return w / w.mean()
    raise ConfigError(f"class weights must be 'balanced' or 'inv_sqrt', not '{scheme}'")


class BCELoss(nn.Module):
    """Mean binary cross-entropy with optional per-label positive weights."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pw = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pw)


class FocalLoss(nn.Module):
    """Sigmoid focal loss: ``alpha_t * (1 - p_t)^gamma * BCE`` averaged over all entries."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss.mean()


class HierarchicalLoss(nn.Module):
    """BCE + ``weight`` * expected normalized CPC tree distance to the nearest gold label (see the
    module docstring). ``distances`` is the (n_labels, n_labels) tree-distance matrix."""

    def __init__(self, distances: torch.Tensor | np.ndarray, weight: float = 1.0):
        super().__init__()
        d = torch.as_tensor(np.asarray(distances), dtype=torch.float32)
        self.register_buffer("distances", d / d.max().clamp(min=1.0), persistent=False)
        self.weight = weight

    def costs(self, targets: torch.Tensor) -> torch.Tensor:
        """(batch, n_labels): each label's normalized distance to the document's nearest gold
        label (0 for documents without a gold label in the vocabulary). Vectorised: the rows of
        the distance matrix of each document's (at most K) gold labels, gathered as (batch, K,
        n_labels), padding rows at +inf, then the minimum over K: O(batch * K * n_labels)."""
        t = targets.bool()
        n_gold = t.sum(dim=1)
        k = max(int(n_gold.max().item()) if len(t) else 0, 1)
        # each row's gold columns first (a stable descending sort of the 0/1 mask)
        cols = torch.sort(t.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k]
        d = self.distances.to(targets.device)[cols]  # (batch, k, n_labels)
        valid = torch.arange(k, device=targets.device)[None, :] < n_gold[:, None]
        d = torch.where(valid.unsqueeze(-1), d, torch.full_like(d, float("inf")))
        costs = d.min(dim=1).values
        return torch.where((n_gold > 0).unsqueeze(1), costs, torch.zeros_like(costs))

    def penalty(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(logits.float())
        q = probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-8)
        return (q * self.costs(targets)).sum(dim=1).mean()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
        return bce + self.weight * self.penalty(logits, targets).to(bce.dtype)


def build_loss(name: str, labels: Sequence[str], targets: np.ndarray | None = None, *,
               class_weight: str = "balanced", focal_gamma: float = 2.0, focal_alpha: float | None = None,
               hierarchy_weight: float = 1.0) -> nn.Module:
    """The loss ``name`` for a label vocabulary; ``targets`` (training multi-hot matrix) gives the
    label counts that ``weighted`` needs."""
    if name == "bce":
        return BCELoss()
    if name == "weighted":
        if targets is None:
            raise ConfigError("the weighted loss needs the training labels")
        w = class_weights(label_counts(targets), class_weight)
        return BCELoss(torch.as_tensor(w, dtype=torch.float32))
    if name == "focal":
        return FocalLoss(focal_gamma, focal_alpha)
    if name == "hierarchical":
        from patentcpc.cpc import distance_matrix

        return HierarchicalLoss(np.asarray(distance_matrix(list(labels))), hierarchy_weight)
    raise ConfigError(f"unknown loss '{name}' (choose from {', '.join(LOSSES)})")
