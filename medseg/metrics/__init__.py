"""Segmentation metrics: overlap (Dice) and instance matching (AP, F1, panoptic quality)."""

from __future__ import annotations

from medseg.metrics.instance import (
    AP_THRESHOLDS,
    AveragePrecision,
    Matching,
    PairwiseIoU,
    average_precision,
    match_dataset,
    match_instances,
    pairwise_iou,
)
from medseg.metrics.overlap import dice_per_label

__all__ = [
    "AP_THRESHOLDS",
    "AveragePrecision",
    "Matching",
    "PairwiseIoU",
    "average_precision",
    "dice_per_label",
    "match_dataset",
    "match_instances",
    "pairwise_iou",
]
