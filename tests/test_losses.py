"""Each loss ignores unlabelled pixels and matches a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vision_mtl.losses import (
    BalancedBCELoss,
    BalancedCrossEntropyLoss,
    CrossEntropyLoss,
    MaskedL1Loss,
    NormalsL1Loss,
)


def test_cross_entropy_ignores_255():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # 1x2x1x2
    target = torch.tensor([[[0, 255]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(CrossEntropyLoss()(logits, target)) == pytest.approx(expected, rel=1e-5)
    assert float(CrossEntropyLoss()(logits, torch.full((1, 1, 2), 255))) == 0.0


def test_masked_l1_skips_invalid_depth():
    pred = torch.tensor([[[[1.0, 5.0, 2.0]]]])
    target = torch.tensor([[[[2.0, 0.0, 2.0]]]])
    assert float(MaskedL1Loss()(pred, target)) == pytest.approx(0.5)
    empty = MaskedL1Loss()(pred.requires_grad_(), torch.zeros_like(target))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_normals_loss_normalizes_prediction_and_masks_zero_gt():
    pred = torch.tensor([[[[3.0, 1.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])  # (1,0,0) after norm
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # second pixel invalid
    assert float(NormalsL1Loss()(pred, target)) == pytest.approx(0.0, abs=1e-6)


def test_balanced_bce_weights_positives():
    logits = torch.zeros(1, 1, 1, 4)
    target = torch.tensor([[[1, 0, 0, 255]]])
    per = math.log(2)
    expected = (0.95 * per + 2 * 0.05 * per) / 3
    assert float(BalancedBCELoss(0.95)(logits, target)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="pos_weight"):
        BalancedBCELoss(1.5)


def test_balanced_ce_weights_by_batch_share():
    logits = torch.randn(1, 2, 2, 2)
    target = torch.tensor([[[1, 0], [0, 0]]])
    per = F.cross_entropy(logits, target, reduction="none")[0]
    pos = target[0] == 1
    # positives weighted by the negative share (3/4), negatives by the positive share (1/4)
    expected = (per[pos].sum() * 0.75 + per[~pos].sum() * 0.25) / 4
    assert float(BalancedCrossEntropyLoss()(logits, target)) == pytest.approx(
        float(expected), rel=1e-5
    )
