"""The straightforward U-Net border weight map that the weight-map tests compare medseg against."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def reference_weight_map(
    labels: np.ndarray, spacing=None, w0: float = 10.0, sigma: float = 5.0, class_weights=None
) -> np.ndarray:
    """The paper's formula written out in float64: one full-image EDT per cell, the two smallest
    per pixel."""
    if class_weights is None:  # N / (K n_c) over the K classes present
        counts = [np.sum(labels == 0), np.sum(labels > 0)]
        k = sum(c > 0 for c in counts)
        class_weights = [labels.size / (k * c) if c else 1.0 for c in counts]
    weights = np.where(labels > 0, class_weights[1], class_weights[0]).astype(np.float64)
    ids = [i for i in np.unique(labels) if i != 0]
    if len(ids) >= 2:
        dist = np.sort([ndimage.distance_transform_edt(labels != i, sampling=spacing) for i in ids], axis=0)
        weights += w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2)) * (labels == 0)
    return weights
