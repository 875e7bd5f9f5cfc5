"""Overlap metrics per label, on label maps (not one-hot), computed with MONAI's ``compute_dice``."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot


def dice_per_label(pred: np.ndarray, reference: np.ndarray, labels: list[int]) -> dict[int, float]:
    """Dice of each label in ``labels``; NaN where the reference has none of that label."""
    if pred.shape != reference.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, reference {reference.shape}")
    num_classes = max(labels) + 1
    # Values above the labels asked for share one extra class; counted as 0, they would change
    # the background's Dice.
    p, r = (
        torch.as_tensor(np.where(a < num_classes, a, num_classes).astype(np.int64))[None, None]
        for a in (pred, reference)
    )
    scores = compute_dice(
        one_hot(p, num_classes + 1), one_hot(r, num_classes + 1), include_background=True, ignore_empty=True
    )[0]
    return {label: float(scores[label]) for label in labels}
