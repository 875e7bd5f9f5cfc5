"""Segmentation metrics: overlap now; surface distances and instance metrics follow."""

from __future__ import annotations

from medseg.metrics.overlap import dice_per_label

__all__ = ["dice_per_label"]
