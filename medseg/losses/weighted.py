"""Cross-entropy with a per-pixel weight map (the U-Net paper's loss), alone or with Dice.

MONAI's losses take class weights but no per-voxel weights, and MONAI's trainers call the loss
with ``(prediction, label)`` only. So the weight map travels with the label: pack it as a
second label channel (MONAI's ``ConcatItemsd(keys=["label", "weight"], name="label")``) and
these losses split it off again; or pass ``weight=`` when calling them directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


def split_target(
    target: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(class indices (B, 1, ...), weights (B, 1, ...) or None)`` from a target that may carry
    the weight map as its second channel."""
    if weight is None and target.shape[1] == 2:
        return target[:, :1], target[:, 1:]
    if target.shape[1] != 1:
        raise ValueError(
            f"target must have 1 channel (class indices) or 2 (plus weights), got {target.shape[1]}"
        )
    return target, weight


class WeightedCrossEntropyLoss(nn.Module):
    """``mean(w(x) * -log p_{l(x)}(x))`` over all pixels (``reduction="mean"``), as in the paper.

    ``input``: logits (B, C, ...); ``target``: class indices (B, 1, ...) or (B, 2, ...) with the
    weight map in channel 1; ``weight``: (B, 1, ...) weights, if not packed in the target.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.reduction = reduction

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        labels, weight = split_target(target, weight)
        loss = F.cross_entropy(input, labels[:, 0].long(), reduction="none")
        if weight is not None:
            loss = loss * weight[:, 0].to(loss.dtype)
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss


class WeightedDiceCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_ce * weighted CE``; Dice on softmax with one-hot targets (MONAI)."""

    def __init__(
        self, lambda_dice: float = 1.0, lambda_ce: float = 1.0, include_background: bool = True
    ) -> None:
        super().__init__()
        self.dice = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True)
        self.ce = WeightedCrossEntropyLoss()
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        labels, weight = split_target(target, weight)
        return self.lambda_dice * self.dice(input, labels) + self.lambda_ce * self.ce(input, labels, weight)
