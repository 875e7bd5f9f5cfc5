"""Instance segmentation metrics: one-to-one matching by IoU, the DSB/StarDist "AP", F1 and panoptic quality.

The numbers are the ones StarDist (``stardist.matching.matching``) and Cellpose (``cellpose.metrics``)
print, so that a microscopist can compare medseg's results with theirs:

* Objects are the non-zero ids of a label image (2D, 3D, any integer ids; 0 is background). A predicted
  object is a true positive when it is paired with a true object and their IoU is ``>= iou_threshold``.
* The pairing is one-to-one and optimal among the pairs with IoU ``>= t``: first the largest number of
  pairs, then the largest total IoU of those pairs (``linear_sum_assignment`` on each connected group of
  such pairs). The count is the one StarDist's and Cellpose's cost ``-(IoU >= t) - IoU / (2 n)``
  maximises, so tp, fp, fn, precision, recall, F1 and AP always agree with theirs.
* Above 0.5 an object has at most one partner over the threshold (at exactly 0.5, an object cut in two
  exact halves has two), so the pairing is unique and StarDist and MONAI give the same pairs and IoUs.
  Below 0.5 StarDist's cost lets the IoU of pairs *under* the threshold break ties, so in rare cases its
  true positives have a lower total IoU than medseg's (same counts, lower ``mean_matched_score`` and
  ``panoptic_quality``); MONAI's ``compute_panoptic_quality`` maximises the total IoU of all pairs first
  and can find fewer true positives. MONAI, like Kirillov et al., counts IoU ``> t`` rather than ``>= t``:
  the same unless an IoU equals the threshold exactly.
* Scores with a zero denominator are 0, and every score is 0 when there is no true positive; so two empty
  images score 0, not 1 or NaN (StarDist's convention; the counts in :class:`Matching` tell the cases apart).
* Over a dataset the counts are summed before the scores are computed (StarDist's
  ``matching_dataset(..., by_image=False)``), so every object weighs the same whatever its image.

IoUs come from a sparse contingency of the two label images (``np.unique`` over the pairs of ids of the
overlapping pixels), so a 3D image with thousands of objects costs a few passes, not a mask per object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from medseg.errors import InputError
from medseg.instance.labels import check_instances

AP_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""0.5:0.05:0.95 as decimals: with ``np.arange``'s 0.6000000000000001 an IoU of exactly 0.6 would miss."""


@dataclass(frozen=True)
class PairwiseIoU:
    """IoU of every pair of overlapping objects; pairs that do not overlap (IoU 0) are left out.

    ``true_ids``/``pred_ids`` are the object ids, sorted; ``true_index``/``pred_index`` point into them,
    one entry per overlapping pair, next to that pair's ``iou``.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_index: np.ndarray
    pred_index: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class Matching:
    """Counts and scores of a one-to-one matching at one IoU threshold (StarDist's names, score -> iou).

    ``accuracy`` is tp / (tp + fp + fn): what the Data Science Bowl 2018, StarDist and Cellpose call
    "average precision" (not COCO's area under the precision-recall curve). ``mean_matched_iou`` is the
    mean IoU of the true positives and ``mean_true_iou`` the same sum over all true objects.
    ``panoptic_quality`` is Kirillov et al.'s PQ (CVPR 2019, eq. 1): segmentation quality
    (``mean_matched_iou``) times recognition quality (tp / (tp + fp/2 + fn/2), which equals ``f1``).
    ``iou_sum`` (the true positives' IoUs added up) lets one pool matchings as MONAI's confusion matrix does.
    ``pairs`` lists the true positives as (true id, predicted id, IoU), by true id; empty for a dataset.
    """

    iou_threshold: float
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    mean_true_iou: float
    mean_matched_iou: float
    panoptic_quality: float
    iou_sum: float
    pairs: tuple[tuple[int, int, float], ...] = ()

    @property
    def segmentation_quality(self) -> float:
        return self.mean_matched_iou

    @property
    def recognition_quality(self) -> float:
        return self.f1

    def scores(self) -> dict[str, float]:
        """What an evaluator reports: precision, recall, f1, panoptic_quality and the counts."""
        names = ("precision", "recall", "f1", "panoptic_quality", "n_true", "n_pred", "tp", "fp", "fn")
        return {name: getattr(self, name) for name in names}


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    return check_instances(labels, f"{name}: label image")


def _check_threshold(iou_threshold: float) -> float:
    # A threshold of 0 would pair objects that do not touch at all (StarDist does); nobody means that.
    if not 0.0 < iou_threshold <= 1.0:
        raise InputError(f"iou_threshold {iou_threshold} is outside (0, 1]")
    return float(iou_threshold)


def _object_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted object ids, each pixel's index into them (-1 on background) and each object's size."""
    # np.unique with return_inverse sorts every pixel; finding the few ids first and then each pixel's
    # place among them is several times faster on 3D images.
    ids = np.unique(labels)
    index = np.searchsorted(ids, labels.ravel())
    background = int(ids.size > 0 and ids[0] == 0)
    return ids[background:], index - background, np.bincount(index, minlength=ids.size)[background:]


def pairwise_iou(true: np.ndarray, pred: np.ndarray) -> PairwiseIoU:
    """IoU of every overlapping (true object, predicted object) pair of two label images of one shape."""
    true, pred = _as_labels(true, "true"), _as_labels(pred, "pred")
    if true.shape != pred.shape:
        raise InputError(f"shapes differ: true {true.shape}, pred {pred.shape}")
    true_ids, t, true_size = _object_index(true)
    pred_ids, p, pred_size = _object_index(pred)
    both = (t >= 0) & (p >= 0)
    codes, intersection = np.unique(t[both] * pred_ids.size + p[both], return_counts=True)
    rows, cols = np.divmod(codes, max(pred_ids.size, 1))
    iou = intersection / (true_size[rows] + pred_size[cols] - intersection)
    return PairwiseIoU(true_ids, pred_ids, rows, cols, iou)


def _assign(rows: np.ndarray, cols: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Most pairs, then largest total IoU, within one connected group of candidate pairs."""
    true_ids, r = np.unique(rows, return_inverse=True)
    pred_ids, c = np.unique(cols, return_inverse=True)
    weight = np.zeros((true_ids.size, pred_ids.size))
    # Each pair is worth 1 plus a tie-breaker; the tie-breakers of a matching add up to at most 1/2,
    # so no IoU gain can buy a lost pair (StarDist's and Cellpose's cost, on candidate pairs only).
    weight[r, c] = 1 + iou / (2 * min(weight.shape))
    edge = np.full(weight.shape, -1)
    edge[r, c] = np.arange(rows.size)
    chosen = edge[linear_sum_assignment(weight, maximize=True)]
    return chosen[chosen >= 0]


def _matched_edges(overlaps: PairwiseIoU, iou_threshold: float) -> np.ndarray:
    """Indices of the overlapping pairs that the optimal one-to-one matching keeps as true positives."""
    candidates = np.flatnonzero(overlaps.iou >= iou_threshold)
    rows, cols = overlaps.true_index[candidates], overlaps.pred_index[candidates]
    n_true, n_pred = overlaps.true_ids.size, overlaps.pred_ids.size
    # Objects only compete with the candidates they share. Above 0.5 an object has at most one
    # candidate, so every group is a single pair and nothing is left to solve; below, each group gets
    # its own small assignment instead of one dense, cubic n_true x n_pred problem.
    graph = coo_matrix((np.ones(rows.size), (rows, n_true + cols)), shape=(n_true + n_pred,) * 2)
    group = connected_components(graph, directed=False)[1][rows]
    alone = np.bincount(group, minlength=1)[group] == 1
    shared = np.flatnonzero(~alone)
    shared = shared[np.argsort(group[shared], kind="stable")]
    chosen = [np.flatnonzero(alone)]
    for edges in np.split(shared, np.flatnonzero(np.diff(group[shared])) + 1):
        if edges.size:
            chosen.append(edges[_assign(rows[edges], cols[edges], overlaps.iou[candidates[edges]])])
    return candidates[np.sort(np.concatenate(chosen))]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _summary(
    iou_threshold: float,
    n_true: int,
    n_pred: int,
    tp: int,
    iou_sum: float,
    pairs: tuple[tuple[int, int, float], ...] = (),
) -> Matching:
    fp, fn = n_pred - tp, n_true - tp
    return Matching(
        iou_threshold=iou_threshold,
        n_true=n_true,
        n_pred=n_pred,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=_ratio(tp, tp + fp + fn),
        mean_true_iou=_ratio(iou_sum, n_true),
        mean_matched_iou=_ratio(iou_sum, tp),
        panoptic_quality=_ratio(iou_sum, tp + fp / 2 + fn / 2),
        iou_sum=iou_sum,
        pairs=pairs,
    )


def _match(overlaps: PairwiseIoU, iou_threshold: float) -> Matching:
    edges = _matched_edges(overlaps, iou_threshold)
    true_ids = overlaps.true_ids[overlaps.true_index[edges]].tolist()
    pred_ids = overlaps.pred_ids[overlaps.pred_index[edges]].tolist()
    ious = overlaps.iou[edges]
    pairs = tuple(zip(true_ids, pred_ids, ious.tolist(), strict=True))
    return _summary(
        iou_threshold, overlaps.true_ids.size, overlaps.pred_ids.size, edges.size, float(ious.sum()), pairs
    )


def _pool(matchings: Sequence[Matching]) -> Matching:
    """One matching for a dataset: counts and IoU sums added over its images, then the scores."""
    return _summary(
        matchings[0].iou_threshold,
        sum(m.n_true for m in matchings),
        sum(m.n_pred for m in matchings),
        sum(m.tp for m in matchings),
        sum(m.iou_sum for m in matchings),
    )


def match_instances(true: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> Matching:
    """Match the objects of two label images one-to-one by IoU (see the module notes for the conventions).

    Args:
        true: reference label image, 2D or 3D, 0 = background, any non-negative integer ids.
        pred: predicted label image of the same shape.
        iou_threshold: a pair is a true positive when its IoU is at least this, in (0, 1].

    Example:
        >>> true = np.zeros((8, 8), int); true[:4, :4] = 1
        >>> pred = np.zeros((8, 8), int); pred[:4, :3] = 7
        >>> m = match_instances(true, pred)
        >>> m.tp, m.fp, m.fn, m.pairs
        (1, 0, 0, ((1, 7, 0.75),))
    """
    return _match(pairwise_iou(true, pred), _check_threshold(iou_threshold))


def _image_pairs(
    true: np.ndarray | Sequence[np.ndarray], pred: np.ndarray | Sequence[np.ndarray]
) -> list[PairwiseIoU]:
    """IoUs of one image pair, or of each pair of a dataset given as two lists (or tuples) of images."""
    if not isinstance(true, list | tuple) and not isinstance(pred, list | tuple):
        return [pairwise_iou(true, pred)]
    if not isinstance(true, list | tuple) or not isinstance(pred, list | tuple):
        raise InputError("give true and pred both as one label image or both as a list of label images")
    if len(true) != len(pred) or not true:
        raise InputError(
            f"need as many true as pred label images, and at least one: {len(true)}, {len(pred)}"
        )
    return [pairwise_iou(t, p) for t, p in zip(true, pred, strict=True)]


def match_dataset(
    true: Sequence[np.ndarray], pred: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> Matching:
    """:func:`match_instances` over a list of image pairs, counts pooled over the dataset (``pairs`` empty).

    Equals StarDist's ``matching_dataset(true, pred, thresh, by_image=False)``. A stacked array counts as
    a list of images along its first axis.
    """
    iou_threshold = _check_threshold(iou_threshold)
    return _pool([_match(overlaps, iou_threshold) for overlaps in _image_pairs(list(true), list(pred))])


class AveragePrecision(TypedDict):
    """What :func:`average_precision` returns: tuples aligned with ``thresholds``, and their mean AP."""

    thresholds: tuple[float, ...]
    ap: tuple[float, ...]
    f1: tuple[float, ...]
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    mean_ap: float


def average_precision(
    true: np.ndarray | Sequence[np.ndarray],
    pred: np.ndarray | Sequence[np.ndarray],
    thresholds: Sequence[float] = AP_THRESHOLDS,
) -> AveragePrecision:
    """The DSB 2018 / StarDist / Cellpose "average precision" tp / (tp + fp + fn) and F1 at each threshold.

    This "AP" is the detection accuracy of the Data Science Bowl 2018 as StarDist
    (``matching(...).accuracy``) and Cellpose (``metrics.average_precision``) report it, not COCO's mask
    AP (the area under a precision-recall curve over detection scores; use pycocotools for that).

    Args:
        true: a reference label image, or a list of them (a dataset: counts are pooled over its images).
        pred: the predicted label image(s), matching ``true``.
        thresholds: IoU thresholds; by default 0.5:0.05:0.95.

    Returns:
        ``{"thresholds", "ap", "f1", "tp", "fp", "fn"}`` as tuples aligned with ``thresholds``, and
        ``"mean_ap"``, the mean of ``"ap"`` over the thresholds (AP@[.5:.95] with the default ones).
    """
    thresholds = tuple(_check_threshold(t) for t in thresholds)
    if not thresholds:
        raise InputError("thresholds is empty")
    overlaps = _image_pairs(true, pred)
    pooled = [_pool([_match(o, t) for o in overlaps]) for t in thresholds]
    ap = tuple(m.accuracy for m in pooled)
    return AveragePrecision(
        thresholds=thresholds,
        ap=ap,
        f1=tuple(m.f1 for m in pooled),
        tp=tuple(m.tp for m in pooled),
        fp=tuple(m.fp for m in pooled),
        fn=tuple(m.fn for m in pooled),
        mean_ap=float(np.mean(ap)),
    )
