"""Weighted cross-entropy and Dice+CE against torch/MONAI and a hand-written reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from medseg.losses import WeightedCrossEntropyLoss, WeightedDiceCELoss


def reference_weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> float:
    """mean over pixels of w(x) * -log softmax(x)[l(x)], in float64 numpy."""
    z = logits.double().numpy()
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    picked = np.take_along_axis(log_p, labels.long().numpy(), axis=1)[:, 0]
    return float(np.mean(weight.double().numpy()[:, 0] * -picked))


@pytest.mark.parametrize("spatial", [(7, 9), (4, 5, 6)])
def test_weighted_ce_equals_reference(spatial):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, *spatial, generator=g)
    labels = torch.randint(0, 3, (2, 1, *spatial), generator=g)
    weight = torch.rand(2, 1, *spatial, generator=g) * 10
    loss = WeightedCrossEntropyLoss()(logits, labels, weight)
    assert loss.item() == pytest.approx(reference_weighted_ce(logits, labels, weight), rel=1e-5)
    packed = WeightedCrossEntropyLoss()(logits, torch.cat([labels.float(), weight], dim=1))
    assert packed.item() == pytest.approx(loss.item(), rel=1e-6)


def test_unit_weights_equal_torch_and_monai():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    labels = torch.randint(0, 3, (2, 1, 8, 8), generator=g)
    ce = WeightedCrossEntropyLoss()(logits, labels)
    assert ce.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels[:, 0]).item(), rel=1e-6
    )
    ours = WeightedDiceCELoss()(logits, labels, torch.ones(2, 1, 8, 8))
    monai = DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)
    assert ours.item() == pytest.approx(monai.item(), rel=1e-5)


def test_zero_weight_pixels_get_no_gradient():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    labels = torch.randint(0, 2, (1, 1, 4, 4))
    weight = torch.zeros(1, 1, 4, 4)
    weight[..., 0, 0] = 5.0
    WeightedCrossEntropyLoss()(logits, labels, weight).backward()
    grad = logits.grad.abs().sum(1)[0]
    assert grad[0, 0] > 0 and grad.sum() == grad[0, 0]


def test_target_with_three_channels_is_refused():
    with pytest.raises(ValueError, match="1 channel"):
        WeightedCrossEntropyLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
