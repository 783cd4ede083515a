"""Multi-label losses: values, class weights, and a hierarchical penalty that really trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.nn import functional as F

from patentcpc.errors import ConfigError
from patentcpc.losses import FocalLoss, HierarchicalLoss, build_loss, class_weights, label_counts

LABELS = ["A01B", "A01C", "A61K", "H01L"]


def _targets(rows):
    y = torch.zeros(len(rows), len(LABELS))
    for i, cols in enumerate(rows):
        y[i, cols] = 1
    return y


def test_bce_matches_torch():
    logits = torch.randn(3, 4)
    y = _targets([[0], [1, 2], [3]])
    assert torch.allclose(build_loss("bce", LABELS)(logits, y), F.binary_cross_entropy_with_logits(logits, y))


def test_balanced_weights_match_sklearn():
    y = _targets([[0], [0], [0, 1], [2], [3], [0]]).numpy()
    counts = label_counts(y)
    flat = np.concatenate([np.flatnonzero(r) for r in y])
    expected = compute_class_weight("balanced", classes=np.arange(4), y=flat)
    assert np.allclose(class_weights(counts, "balanced"), expected)
    inv = class_weights(counts, "inv_sqrt")
    assert np.isclose(inv.mean(), 1.0) and inv[0] < inv[1]


def test_weighted_loss_upweights_rare_positives():
    y = _targets([[0], [0], [0], [1]])
    loss = build_loss("weighted", LABELS, y.numpy())
    logits = torch.zeros(4, 4)
    plain = F.binary_cross_entropy_with_logits(logits, y)
    assert loss(logits, y) != plain
    assert loss.pos_weight[1] > loss.pos_weight[0]
    with pytest.raises(ConfigError):
        build_loss("weighted", LABELS, None)


def test_focal_loss_gamma_zero_is_bce_and_downweights_easy_examples():
    logits = torch.tensor([[4.0, -4.0, 0.0, 0.0]])
    y = _targets([[0]])
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, y), F.binary_cross_entropy_with_logits(logits, y))
    assert FocalLoss(gamma=2.0)(logits, y) < F.binary_cross_entropy_with_logits(logits, y)
    alpha = FocalLoss(gamma=2.0, alpha=0.25)(logits, y)
    assert torch.isfinite(alpha)


def test_hierarchical_costs_follow_the_cpc_tree():
    loss = build_loss("hierarchical", LABELS)
    costs = loss.costs(_targets([[0], []]))
    # gold A01B: A01C is in the same class (2/6), A61K the same section (4/6), H01L elsewhere (6/6)
    assert costs[0].tolist() == pytest.approx([0.0, 2 / 6, 4 / 6, 1.0])
    assert costs[1].tolist() == [0.0] * 4  # no gold label in the vocabulary: no penalty
    near = torch.tensor([[0.0, 5.0, -5.0, -5.0]])  # mass on A01C
    far = torch.tensor([[0.0, -5.0, -5.0, 5.0]])  # mass on H01L
    y = _targets([[0]])
    assert loss.penalty(near, y) < loss.penalty(far, y)


def test_hierarchical_penalty_has_a_gradient_and_it_trains():
    loss = HierarchicalLoss(np.array([[0, 2, 4, 6], [2, 0, 4, 6], [4, 4, 0, 6], [6, 6, 6, 0]]), weight=1.0)
    logits = torch.tensor([[0.5, 1.0, -1.0, 2.0]], requires_grad=True)
    y = _targets([[0]])
    penalty = loss.penalty(logits, y)
    penalty.backward()
    grad = logits.grad
    assert grad is not None and grad.abs().sum() > 0
    assert grad[0, 3] > 0 and grad[0, 0] < 0  # push the far label (H01L) down, the gold label up
    # a few gradient steps on the penalty alone lower it
    x = torch.tensor([[0.5, 1.0, -1.0, 2.0]], requires_grad=True)
    opt = torch.optim.SGD([x], lr=1.0)
    before = loss.penalty(x, y).item()
    for _ in range(20):
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
    assert loss.penalty(x, y).item() < before


def test_unknown_loss():
    with pytest.raises(ConfigError):
        build_loss("nope", LABELS)
