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
    p = torch.as_tensor(np.where(pred < num_classes, pred, 0).astype(np.int64))[None, None]
    r = torch.as_tensor(np.where(reference < num_classes, reference, 0).astype(np.int64))[None, None]
    scores = compute_dice(
        one_hot(p, num_classes), one_hot(r, num_classes), include_background=True, ignore_empty=True
    )[0]
    return {label: float(scores[label]) for label in labels}
