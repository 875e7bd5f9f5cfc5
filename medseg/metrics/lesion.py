"""Lesion-wise Dice, HD95 and detection counts, by the BraTS 2023 lesion-wise rules.

The rules of the BraTS 2023 lesion-wise evaluation (Saluja et al.,
github.com/rachitsaluja/BraTS-2023-Metrics), on one binary mask pair (one label or region):

1. Lesions are the connected components of the reference and of the prediction, with full connectivity
   (26 neighbours in 3D, 8 in 2D).
2. The reference is dilated ``dilation`` times (18-neighbourhood structure in 3D, 8 in 2D); reference
   components whose dilations touch are one lesion (BraTS: "combined by dilation"). The dilation only
   groups and matches: each lesion's voxels are the reference's own.
3. A predicted component matches a reference lesion when it overlaps that lesion's dilated zone; it may
   match several. A lesion's Dice and HD95 are those of the lesion against the union of the predicted
   components that match it; a missed lesion scores Dice 0 and HD95 ``hd95_penalty`` (BraTS: 374 mm,
   about the diagonal of the 240 x 240 x 155 mm BraTS volume).
4. Reference lesions of volume ``<= min_volume`` (mm^3; mm^2 in 2D) are left out of the scores and of
   the TP/FN counts (BraTS: 50 for gliomas, meningiomas and paediatric tumours, 2 for metastases); a
   prediction that matches only such a lesion is not a false positive either.
5. Predicted components that match no reference lesion are false positives; each counts as one more
   lesion with Dice 0 and HD95 ``hd95_penalty``. Lesion-wise Dice = sum of the counted lesions' Dice /
   (counted lesions + false positives): 1 when both are 0; lesion-wise HD95 likewise, 0 when both are 0.

Detection counts follow BraTS: TP and FN count reference lesions (found or missed), FP counts predicted
components. Precision, recall and F1 (2 TP / (2 TP + FP + FN)) are NaN when their denominator is 0.
HD95 is MONAI's (``medseg.metrics.surface``), not the DeepMind ``surface_distance`` package BraTS uses: the
two weigh surface points differently and can differ by a fraction of a voxel.

Components come from ``scipy.ndimage.label`` (BraTS uses ``cc3d``, which labels the same components).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.metrics.surface import mask_dice, mask_hausdorff, scoring

BRATS_HD95_PENALTY = 374.0
BRATS_DILATION = 3  # BraTS-GLI, -SSA, -PED; 1 for BraTS-MEN and BraTS-MET
BRATS_MIN_VOLUME = 50.0  # mm^3; BraTS-GLI, -SSA, -MEN, -PED; 2 for BraTS-MET


@dataclass(frozen=True)
class Lesion:
    """One reference lesion: its number, size, the predicted components that match it and its scores."""

    lesion: int
    voxels: int
    volume: float
    pred_components: tuple[int, ...]
    dice: float
    hd95: float
    counted: bool  # larger than the minimum volume


@dataclass(frozen=True)
class LesionScores:
    """Lesion-wise scores of one mask pair; ``false_positives`` lists (component id, voxels)."""

    lesions: tuple[Lesion, ...]
    false_positives: tuple[tuple[int, int], ...]
    tp: int
    fp: int
    fn: int
    dice: float
    hd95: float
    precision: float
    recall: float
    f1: float

    def scores(self) -> dict[str, float]:
        """The per-case numbers, named as ``medseg evaluate`` writes them."""
        names = ("dice", "hd95", "tp", "fp", "fn", "precision", "recall", "f1")
        return {f"lesion_{name}": getattr(self, name) for name in names}


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask with full connectivity (26 in 3D, 8 in 2D)."""
    return ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))


def reference_lesions(reference: np.ndarray, dilation: int = BRATS_DILATION) -> tuple[np.ndarray, np.ndarray]:
    """``(lesions, zones)``: the reference's lesions (components merged where their dilations touch,
    numbered from 1) and each lesion's dilated zone, where predictions match it."""
    if dilation <= 0:
        zones, _ = components(reference)
        return zones, zones
    structure = ndimage.generate_binary_structure(reference.ndim, min(2, reference.ndim))
    grown = ndimage.binary_dilation(reference, structure=structure, iterations=dilation)
    # A zone is the dilation of its own lesion: the dilations of the reference components that make
    # one connected piece of the dilated reference are exactly the ones merged into that lesion.
    zones, _ = components(grown)
    return np.where(reference, zones, 0), zones


def _matches(zones: np.ndarray, pred_cc: np.ndarray, n_lesions: int) -> list[tuple[int, ...]]:
    """For each lesion (1..n), the predicted components overlapping its zone."""
    both = (zones > 0) & (pred_cc > 0)
    pairs = np.unique(np.stack([zones[both], pred_cc[both]]), axis=1) if both.any() else np.zeros((2, 0), int)
    found: list[list[int]] = [[] for _ in range(n_lesions + 1)]
    for zone, comp in pairs.T:
        found[int(zone)].append(int(comp))
    return [tuple(ids) for ids in found[1:]]


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True)
    )


def _box(slices: Sequence[tuple[slice, ...] | None], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The union of some bounding boxes plus one voxel, clipped to ``shape``."""
    found = [s for s in slices if s is not None]
    return tuple(
        slice(max(min(s[d].start for s in found) - 1, 0), min(max(s[d].stop for s in found) + 1, n))
        for d, n in enumerate(shape)
    )


def _score_lesions(
    lesions: np.ndarray,
    pred_cc: np.ndarray,
    matches: list[tuple[int, ...]],
    spacing: Sequence[float],
    penalty: float,
) -> list[tuple[int, float, float]]:
    """``(voxels, dice, hd95)`` of each lesion against the union of its matching components."""
    lesion_boxes, pred_boxes = ndimage.find_objects(lesions), ndimage.find_objects(pred_cc)
    out = []
    for number, ids in enumerate(matches, start=1):
        box = _box([lesion_boxes[number - 1], *(pred_boxes[i - 1] for i in ids)], lesions.shape)
        ref = lesions[box] == number
        pred = np.isin(pred_cc[box], ids) if ids else np.zeros_like(ref)
        hd95 = mask_hausdorff(pred, ref, spacing) if ids else math.inf
        out.append((int(ref.sum()), mask_dice(pred, ref), penalty if math.isinf(hd95) else hd95))
    return out


def lesion_scores(
    pred: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    dilation: int = BRATS_DILATION,
    min_volume: float = BRATS_MIN_VOLUME,
    hd95_penalty: float = BRATS_HD95_PENALTY,
) -> LesionScores:
    """Lesion-wise scores of a predicted mask against a reference mask (non-zero = lesion), by the
    BraTS 2023 rules in the module notes; ``spacing`` in mm gives volumes in mm^3 and HD95 in mm.

    Example:
        >>> ref = np.zeros((30, 30), bool); ref[2:10, 2:10] = ref[20:28, 20:28] = True
        >>> pred = np.zeros_like(ref); pred[2:10, 2:10] = pred[12:14, 25:27] = True
        >>> s = lesion_scores(pred, ref, spacing=(1.0, 1.0), dilation=0, min_volume=0)
        >>> s.tp, s.fp, s.fn, round(s.dice, 3), round(s.f1, 3)
        (1, 1, 1, 0.333, 0.5)
    """
    pred, reference = np.asarray(pred) != 0, np.asarray(reference) != 0
    if pred.shape != reference.shape or len(spacing) != pred.ndim:
        raise ValueError(f"shapes {pred.shape}, {reference.shape} and spacing {tuple(spacing)} disagree")
    # Nothing beyond the masks' box plus the dilation matters: crop (components and dilations at the
    # image border are unchanged, as the box is clipped there).
    found = ndimage.find_objects((pred | reference).view(np.uint8))
    if found:
        crop = _grow(found[0], dilation + 1, pred.shape)
        pred, reference = pred[crop], reference[crop]
    else:
        pred = reference = np.zeros((1,) * pred.ndim, bool)
    lesions, zones = reference_lesions(reference, dilation)
    pred_cc, n_pred = components(pred)
    matches = _matches(zones, pred_cc, int(lesions.max()))
    voxel_size = float(np.prod(spacing))
    with scoring():
        scored = _score_lesions(lesions, pred_cc, matches, spacing, hd95_penalty)
    lesions_found = tuple(
        Lesion(n, v, v * voxel_size, ids, d, h, v * voxel_size > min_volume)
        for n, (ids, (v, d, h)) in enumerate(zip(matches, scored, strict=True), start=1)
    )
    matched = {i for ids in matches for i in ids}
    sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)
    false_positives = tuple((i, int(sizes[i])) for i in range(1, n_pred + 1) if i not in matched)
    return _summarise(lesions_found, false_positives, hd95_penalty)


def _summarise(
    lesions: tuple[Lesion, ...], false_positives: tuple[tuple[int, int], ...], penalty: float
) -> LesionScores:
    counted = [x for x in lesions if x.counted]
    tp = sum(1 for x in counted if x.pred_components)
    fp, fn = len(false_positives), sum(1 for x in counted if not x.pred_components)
    n = len(counted) + fp
    return LesionScores(
        lesions=lesions,
        false_positives=false_positives,
        tp=tp,
        fp=fp,
        fn=fn,
        dice=sum(x.dice for x in counted) / n if n else 1.0,
        hd95=(sum(x.hd95 for x in counted) + fp * penalty) / n if n else 0.0,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
    )


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan
