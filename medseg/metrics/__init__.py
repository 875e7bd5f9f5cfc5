"""Segmentation metrics: overlap (Dice) and instance matching (AP, F1, panoptic quality)."""

from __future__ import annotations

from medseg.metrics.detection import MaskAP, detection_scores, mask_average_precision
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
    "MaskAP",
    "Matching",
    "PairwiseIoU",
    "average_precision",
    "detection_scores",
    "dice_per_label",
    "mask_average_precision",
    "match_dataset",
    "match_instances",
    "pairwise_iou",
]
