"""Per-label Dice, 95th-percentile Hausdorff distance and normalised surface distance, in physical units.

Thin wrappers over MONAI's ``compute_dice``, ``compute_hausdorff_distance`` and ``compute_surface_dice``
for label maps (not one-hot) with an explicit ``spacing``. Each label is scored on its own boolean mask,
cropped to the bounding box of the label in either map plus one voxel (MONAI crops the same way inside
``get_mask_edges``, and Dice only counts voxels inside that box), so a 100-label CT is never turned into
a 100-channel one-hot volume (``medseg.metrics.dice_per_label`` does that, which suits a few labels).

Conventions are MONAI's, except one:

* Dice: NaN when the reference has none of the label (``ignore_empty=True``, MONAI's default).
* NSD (surface Dice at ``tolerance``): NaN when neither map has the label, 0 when only one has it.
* HD95: the larger of the two directed 95th percentiles of the distances between edge voxels; NaN when
  neither map has the label. When only one has it, the distance is infinite: MONAI returns ``inf``
  without a percentile but NaN with one (the quantile of infinities), which would silently drop a
  missed label from an average; here it is ``inf`` in both cases.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

DEFAULT_NSD_TOLERANCE = 2.0
"""mm; the tolerance many organ-segmentation papers use when no per-organ value is known."""


def label_crops(
    pred: np.ndarray, reference: np.ndarray, labels: Sequence[int]
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(label, pred_mask, reference_mask)`` for each label: boolean masks cropped to the label's
    bounding box in either map plus one voxel (clipped to the image); a label in neither map gives two
    all-False masks of one voxel each."""
    if pred.shape != reference.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, reference {reference.shape}")
    top = max(labels, default=0)
    # One pass over each map finds every label's box (find_objects skips labels above max_label).
    boxes = [ndimage.find_objects(a, max_label=top) if top > 0 else [] for a in (pred, reference)]
    for label in labels:
        found = [b[label - 1] for b in boxes if 0 < label <= len(b) and b[label - 1] is not None]
        if not found:
            empty = np.zeros((1,) * pred.ndim, bool)
            yield label, empty, empty
            continue
        box = tuple(
            slice(max(min(s[d].start for s in found) - 1, 0), min(max(s[d].stop for s in found) + 1, n))
            for d, n in enumerate(pred.shape)
        )
        yield label, pred[box] == label, reference[box] == label


def _tensors(pred: np.ndarray, reference: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.as_tensor(np.ascontiguousarray(m), dtype=torch.float32)[None, None] for m in (pred, reference)
    )


def mask_dice(pred: np.ndarray, reference: np.ndarray) -> float:
    """MONAI's Dice of two boolean masks; NaN when the reference is empty."""
    p, r = _tensors(pred, reference)
    return float(compute_dice(p, r, include_background=True, ignore_empty=True)[0, 0])


def mask_hausdorff(
    pred: np.ndarray, reference: np.ndarray, spacing: Sequence[float], percentile: float | None = 95.0
) -> float:
    """MONAI's symmetric Hausdorff distance (``percentile`` of it, None for the maximum) of two boolean
    masks in the units of ``spacing``; NaN when both are empty, ``inf`` when one is."""
    has_pred, has_ref = bool(pred.any()), bool(reference.any())
    if has_pred != has_ref:
        return math.inf
    p, r = _tensors(pred, reference)
    spacing = [float(s) for s in spacing]
    return float(
        compute_hausdorff_distance(p, r, include_background=True, percentile=percentile, spacing=spacing)
    )


def mask_surface_dice(
    pred: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    tolerance: float = DEFAULT_NSD_TOLERANCE,
) -> float:
    """MONAI's normalised surface distance (surface Dice) of two boolean masks at ``tolerance`` (units of
    ``spacing``): NaN when both are empty, 0 when one is."""
    p, r = _tensors(pred, reference)
    spacing = [float(s) for s in spacing]
    return float(
        compute_surface_dice(p, r, [float(tolerance)], include_background=True, spacing=spacing)[0, 0]
    )


def surface_scores(
    pred: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[int],
    spacing: Sequence[float],
    tolerance: float | Mapping[int, float] = DEFAULT_NSD_TOLERANCE,
    percentile: float | None = 95.0,
) -> dict[int, dict[str, float]]:
    """``{label: {"dice", "hd95", "nsd"}}`` of two label maps on the same grid (see the module notes).

    Args:
        pred, reference: integer label maps of the same shape, spatial axes only.
        labels: label values to score (0 would be scored as any other value).
        spacing: voxel size per axis (mm); distances come out in the same unit.
        tolerance: NSD tolerance, one value or one per label (labels not in it get the default).
        percentile: Hausdorff percentile; None for the maximum distance.

    Example:
        >>> ref = np.zeros((20, 20), int); ref[5:15, 5:15] = 1
        >>> pred = np.roll(ref, 2, axis=0)
        >>> s = surface_scores(pred, ref, [1], spacing=(0.5, 0.5))[1]
        >>> round(s["dice"], 2), s["hd95"], s["nsd"]
        (0.8, 1.0, 1.0)
    """
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match {pred.ndim} spatial axes")
    scores = {}
    with scoring():
        for label, p, r in label_crops(pred, reference, labels):
            tol = tolerance.get(label, DEFAULT_NSD_TOLERANCE) if isinstance(tolerance, Mapping) else tolerance
            scores[label] = {
                "dice": mask_dice(p, r),
                "hd95": mask_hausdorff(p, r, spacing, percentile),
                "nsd": mask_surface_dice(p, r, spacing, tol),
            }
    return scores


def hausdorff_per_label(
    pred: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[int],
    spacing: Sequence[float],
    percentile: float | None = 95.0,
) -> dict[int, float]:
    """Hausdorff distance (``percentile``) per label of two label maps, in the units of ``spacing``."""
    with scoring():
        return {
            label: mask_hausdorff(p, r, spacing, percentile)
            for label, p, r in label_crops(pred, reference, labels)
        }


def surface_dice_per_label(
    pred: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[int],
    spacing: Sequence[float],
    tolerance: float = DEFAULT_NSD_TOLERANCE,
) -> dict[int, float]:
    """Normalised surface distance per label of two label maps at ``tolerance`` (units of ``spacing``)."""
    with scoring():
        return {
            label: mask_surface_dice(p, r, spacing, tolerance)
            for label, p, r in label_crops(pred, reference, labels)
        }


@contextlib.contextmanager
def scoring() -> Iterator[None]:
    """Run MONAI's metrics on one torch thread and without their warnings.

    The per-label crops are small, and on 2 busy cores torch's intra-op threads made the metrics 10x
    slower (61 TotalSegmentator labels: 11 s vs 1 s, measured). MONAI warns on every empty mask, a case
    these functions define (module notes), and on a deprecated argument it passes to itself.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        torch.set_num_threads(threads)
