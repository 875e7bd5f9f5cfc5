"""Segmentation metrics: overlap (Dice), surface distances (HD95, NSD), lesion-wise scores (BraTS 2023)
and instance matching (AP, F1, panoptic quality)."""

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
from medseg.metrics.lesion import Lesion, LesionScores, lesion_scores
from medseg.metrics.overlap import dice_per_label
from medseg.metrics.surface import hausdorff_per_label, surface_dice_per_label, surface_scores

__all__ = [
    "AP_THRESHOLDS",
    "AveragePrecision",
    "Lesion",
    "LesionScores",
    "MaskAP",
    "Matching",
    "PairwiseIoU",
    "average_precision",
    "detection_scores",
    "dice_per_label",
    "hausdorff_per_label",
    "lesion_scores",
    "mask_average_precision",
    "match_dataset",
    "match_instances",
    "pairwise_iou",
    "surface_dice_per_label",
    "surface_scores",
]
