"""Losses MONAI does not ship: cross-entropy with a per-pixel weight map, alone or with Dice."""

from __future__ import annotations

from medseg.losses.weighted import WeightedCrossEntropyLoss, WeightedDiceCELoss, split_target

__all__ = ["WeightedCrossEntropyLoss", "WeightedDiceCELoss", "split_target"]
