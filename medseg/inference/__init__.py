"""Inference: predictor, sliding window, mixed precision, post-processing, statistics."""

from __future__ import annotations

from medseg.inference.autocast import AutocastInferer, autocast_dtype

__all__ = ["AutocastInferer", "autocast_dtype"]
