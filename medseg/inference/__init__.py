"""Inference: predictor, sliding window, mixed precision, post-processing, statistics."""

from __future__ import annotations

import importlib

_WHERE = {
    "AutocastInferer": "autocast",
    "autocast_dtype": "autocast",
    "label_stats": "stats",
    "OverlapTileInferer": "overlap_tile",
    "SlidingWindowPredictor": "predictor",
    "sliding_window_predict": "predictor",
    "postprocess_labels": "postprocess",
    "PostprocessLabelsd": "postprocess",
    "write_table": "stats",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):  # lazy: the statistics need numpy only, the inferer needs MONAI
    if name in _WHERE:
        return getattr(importlib.import_module(f"medseg.inference.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'medseg.inference' has no attribute {name!r}")
