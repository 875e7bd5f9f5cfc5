"""COCO mask average precision (AP, AP50, AP75, AR) of scored instance label images, 2D or 3D.

The numbers are pycocotools' ``COCOeval(iouType="segm")`` with one area range ("all", no crowd
regions), computed from label images instead of RLE annotations; a 3D image is evaluated on voxels:

* A detection is a predicted object (a non-zero id of the predicted label image) with a score. Per class
  and image, the ``max_detections`` highest-scoring detections are kept (ties: in order of id).
* At each IoU threshold, per image, detections are taken by decreasing score and each is matched to the
  still unmatched true object of the same class with the highest IoU ``>= threshold`` (IoU ties: the
  one with the larger id), as COCOeval's greedy matching does. IoUs come from
  :func:`medseg.metrics.instance.pairwise_iou`.
* Per class, the detections of all images are sorted by score (stable: ties keep image order, then the
  order above, like COCOeval's mergesort) into a precision-recall curve; precision is made
  non-increasing and read at recall 0, 0.01, ..., 1 (pycocotools' ``np.linspace(0, 1, 101)``, whose
  0.35, 0.41, 0.47, 0.57, 0.69, 0.7, 0.82, 0.83, 0.94 and 0.95 are one float step above the decimal:
  kept so that the numbers equal pycocotools', detectron2's and torchmetrics'); their mean is the AP.
  Recall at the end of the curve is the AR.
* AP is the mean over IoU thresholds (0.5:0.05:0.95 as decimals, ``AP_THRESHOLDS``; pycocotools'
  ``np.linspace`` gives the same matches) and over classes; AP50 and AP75 at one threshold.

Empty cases (pycocotools writes -1 wherever a value is undefined and leaves it out of its means):

* A class with neither true objects nor detections in the dataset has AP and AR NaN and is left out of
  the means over classes, as pycocotools leaves its -1 out; with no class left the result is NaN (so
  no objects and no detections at all gives NaN where pycocotools gives -1).
* A class with detections but no true object has AP 0 (every detection is a false positive) and AR NaN
  (nothing to recall). pycocotools gives -1 and leaves the class out of the mean AP; medseg counts it.
* A class with true objects but no detection has AP 0 and AR 0, as in pycocotools.
* Images without objects or detections change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medseg.errors import InputError
from medseg.instance.labels import check_instances
from medseg.metrics.instance import AP_THRESHOLDS, PairwiseIoU, _check_threshold, match_dataset, pairwise_iou

COCO_RECALL_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 101)
"""pycocotools' 101 recall points, float steps and all (see the module notes)."""

PerObject = Mapping[int, float] | Sequence[float] | np.ndarray
"""A value per object: ``{id: value}``, or an array aligned with the image's sorted non-zero ids."""


@dataclass(frozen=True)
class MaskAP:
    """COCO mask AP of a dataset. NaN where undefined (pycocotools: -1); see the module notes.

    ``ap`` is the mean over ``iou_thresholds`` and ``classes``; ``ap50``/``ap75`` at IoU 0.5/0.75 (NaN
    when that threshold is not in ``iou_thresholds``); ``ar`` the recall with at most ``max_detections``
    per image and class, averaged like ``ap``. ``ap_per_threshold`` (mean over classes) is aligned with
    ``iou_thresholds``, ``ap_per_class`` (mean over thresholds) with ``classes``.
    """

    ap: float
    ap50: float
    ap75: float
    ar: float
    iou_thresholds: tuple[float, ...]
    max_detections: int
    classes: tuple[int, ...]
    ap_per_threshold: tuple[float, ...]
    ap_per_class: tuple[float, ...]


@dataclass(frozen=True)
class _Image:
    overlaps: PairwiseIoU
    true_classes: np.ndarray
    pred_classes: np.ndarray
    scores: np.ndarray


def _per_object(values: PerObject, ids: np.ndarray, what: str) -> np.ndarray:
    """``values`` for each of ``ids``: from a mapping or from an array aligned with ``ids``."""
    if isinstance(values, Mapping):
        missing = [int(i) for i in ids if int(i) not in values]
        if missing:
            raise InputError(f"{what}: no value for object id(s) {missing[:5]}; give one for every id")
        return np.array([values[int(i)] for i in ids], dtype=np.float64).reshape(-1)
    array = np.asarray(values, dtype=np.float64)
    if array.shape != ids.shape:
        raise InputError(
            f"{what}: {array.size} values for {ids.size} objects; give one per object, in order of id, "
            "or a mapping {id: value}"
        )
    return array


def _classes(values: PerObject | None, ids: np.ndarray, labels: np.ndarray, what: str) -> np.ndarray:
    """Each object's class: one class by default, given per object, or voted from a class map."""
    if values is None:
        return np.ones(ids.size, dtype=np.int64)
    if not isinstance(values, Mapping) and np.shape(values) == labels.shape:
        # A class map: each object takes its most frequent class, as medseg.instance.table does.
        class_map = check_instances(values, f"{what} (class map)")
        n_classes = int(class_map.max(initial=0)) + 1
        inside = labels > 0
        codes = np.searchsorted(ids, labels[inside]) * n_classes + class_map[inside]
        votes = np.bincount(codes, minlength=ids.size * n_classes).reshape(ids.size, n_classes)
        return votes.argmax(axis=1) if ids.size else np.zeros(0, dtype=np.int64)
    classes = _per_object(values, ids, what)
    if not np.array_equal(classes, np.round(classes)):
        raise InputError(f"{what}: classes must be whole numbers")
    return classes.astype(np.int64)


def _prepare(
    true: np.ndarray,
    pred: np.ndarray,
    scores: PerObject,
    true_classes: PerObject | None,
    pred_classes: PerObject | None,
    n: int,
) -> _Image:
    """One image's IoUs, classes and scores, or an ``InputError`` naming the image and what is wrong."""
    overlaps = pairwise_iou(true, pred)
    true, pred = np.asarray(true), np.asarray(pred)
    s = _per_object(scores, overlaps.pred_ids, f"image {n}: scores")
    if not np.all(np.isfinite(s)):
        raise InputError(f"image {n}: scores must be finite numbers")
    return _Image(
        overlaps,
        _classes(true_classes, overlaps.true_ids, true, f"image {n}: true_classes"),
        _classes(pred_classes, overlaps.pred_ids, pred, f"image {n}: pred_classes"),
        s,
    )


def _match_image(
    image: _Image, cls: int, thresholds: np.ndarray, max_detections: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """One class in one image: its kept detections' scores (by decreasing score), which of them match
    at each threshold (T, D), and its number of true objects."""
    o = image.overlaps
    detections = np.flatnonzero(image.pred_classes == cls)
    kept = detections[np.argsort(-image.scores[detections], kind="mergesort")][:max_detections]
    rank = np.full(o.pred_ids.size, -1)
    rank[kept] = np.arange(kept.size)
    pair_rank = rank[o.pred_index]
    usable = (pair_rank >= 0) & (image.true_classes[o.true_index] == cls)
    matched = np.zeros((thresholds.size, kept.size), dtype=bool)
    for t, threshold in enumerate(thresholds):
        candidates = np.flatnonzero(usable & (o.iou >= threshold))
        # By detection rank, then best IoU, then the later true object: COCOeval's loop, pair by pair.
        order = candidates[np.lexsort((-o.true_index[candidates], -o.iou[candidates], pair_rank[candidates]))]
        taken: set[int] = set()
        for pair in order:
            if not matched[t, pair_rank[pair]] and o.true_index[pair] not in taken:
                matched[t, pair_rank[pair]] = True
                taken.add(int(o.true_index[pair]))
    return image.scores[kept], matched, int(np.count_nonzero(image.true_classes == cls))


def _curve(scores: np.ndarray, matched: np.ndarray, n_true: int) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold: AP (101-point interpolated precision) and final recall of one class."""
    n_thresholds, n_det = matched.shape
    if n_true == 0:
        value = 0.0 if n_det else math.nan
        return np.full(n_thresholds, value), np.full(n_thresholds, math.nan)
    if n_det == 0:
        return np.zeros(n_thresholds), np.zeros(n_thresholds)
    matched = matched[:, np.argsort(-scores, kind="mergesort")]
    tp = np.cumsum(matched, axis=1)
    recall = tp / n_true
    precision = tp / np.arange(1, n_det + 1)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = np.empty(n_thresholds)
    for t in range(n_thresholds):
        index = np.searchsorted(recall[t], COCO_RECALL_THRESHOLDS, side="left")
        ap[t] = np.where(index < n_det, precision[t, np.minimum(index, n_det - 1)], 0.0).mean()
    return ap, recall[:, -1]


def _mean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) values, NaN (without a warning) when none is."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def mask_average_precision(
    true: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
    scores: Sequence[PerObject],
    true_classes: Sequence[PerObject] | None = None,
    pred_classes: Sequence[PerObject] | None = None,
    max_detections: int = 100,
    iou_thresholds: Sequence[float] = AP_THRESHOLDS,
) -> MaskAP:
    """COCO mask AP, AP50, AP75 and AR of a dataset of scored instance label images (2D or 3D).

    Args:
        true: reference label images, one per image (0 = background, any integer ids).
        pred: predicted label images, same shapes.
        scores: per image, each predicted object's score: ``{id: score}`` or an array in order of id.
        true_classes: per image, each true object's class: ``{id: class}``, an array in order of id, or
            a class map of the image's shape (an object takes its most frequent class). None: one class.
        pred_classes: the same for the predicted objects.
        max_detections: detections kept per image and class (COCO's ``maxDets``), highest scores first.
            COCO's 100 caps the recall at 100 / n on an image of n > 100 objects (a field of nuclei):
            raise it there, or AP measures the cap.
        iou_thresholds: IoU thresholds, in (0, 1]; by default 0.5:0.05:0.95.

    Example:
        >>> true = np.zeros((10, 10), int); true[:, :5] = 1; true[:, 5:] = 2
        >>> pred = np.zeros((10, 10), int); pred[:, :5] = 3; pred[:6, 5:] = 4
        >>> r = mask_average_precision([true], [pred], [{3: 0.9, 4: 0.8}])
        >>> round(r.ap, 4), r.ap50, round(r.ap75, 4), r.ar   # object 4 has IoU 0.6 with object 2
        (0.6535, 1.0, 0.505, 0.65)
    """
    true, pred, scores = list(true), list(pred), list(scores)
    n_images = len(true)
    if not n_images or len(pred) != n_images or len(scores) != n_images:
        raise InputError(
            f"need as many true images, pred images and score sets, at least one: "
            f"{len(true)}, {len(pred)}, {len(scores)}"
        )
    for name, values in (("true_classes", true_classes), ("pred_classes", pred_classes)):
        if values is not None and len(values) != n_images:
            raise InputError(f"{name} has {len(values)} entries for {n_images} images")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int | np.integer):
        raise InputError(f"max_detections must be a whole number, not {max_detections!r}")
    if max_detections < 1:
        raise InputError(f"max_detections must be at least 1, not {max_detections}")
    thresholds = np.array([_check_threshold(t) for t in iou_thresholds])
    if not thresholds.size:
        raise InputError("iou_thresholds is empty")
    no_classes = [None] * n_images
    true_classes = no_classes if true_classes is None else list(true_classes)
    pred_classes = no_classes if pred_classes is None else list(pred_classes)
    images = [
        _prepare(*inputs, n)
        for n, inputs in enumerate(zip(true, pred, scores, true_classes, pred_classes, strict=True))
    ]
    classes = np.unique(np.concatenate([c for i in images for c in (i.true_classes, i.pred_classes)]))
    ap = np.full((thresholds.size, classes.size), math.nan)
    ar = np.full((thresholds.size, classes.size), math.nan)
    for k, cls in enumerate(classes):
        per_image = [_match_image(image, int(cls), thresholds, int(max_detections)) for image in images]
        ap[:, k], ar[:, k] = _curve(
            np.concatenate([s for s, _, _ in per_image]),
            np.concatenate([m for _, m, _ in per_image], axis=1),
            sum(n for _, _, n in per_image),
        )
    at = {round(float(t), 10): i for i, t in enumerate(thresholds)}
    return MaskAP(
        ap=_mean(ap),
        ap50=_mean(ap[at[0.5]]) if 0.5 in at else math.nan,
        ap75=_mean(ap[at[0.75]]) if 0.75 in at else math.nan,
        ar=_mean(ar),
        iou_thresholds=tuple(float(t) for t in thresholds),
        max_detections=int(max_detections),
        classes=tuple(int(c) for c in classes),
        ap_per_threshold=tuple(_mean(row) for row in ap),
        ap_per_class=tuple(_mean(column) for column in ap.T),
    )


def detection_scores(
    true: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
    scores: Sequence[PerObject],
    true_classes: Sequence[PerObject] | None = None,
    pred_classes: Sequence[PerObject] | None = None,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """COCO mask AP and the one-to-one matching scores of a dataset, in one flat dict for an evaluator.

    Returns:
        ``mask_ap``, ``mask_ap50``, ``mask_ap75``, ``mask_ar`` from :func:`mask_average_precision`, and
        from :func:`medseg.metrics.instance.match_dataset` at ``iou_threshold`` (class-agnostic, every
        predicted object whatever its score; counts pooled over images): ``precision``, ``recall``,
        ``f1``, ``panoptic_quality`` and the counts ``n_true``, ``n_pred``, ``tp``, ``fp``, ``fn``.
    """
    ap = mask_average_precision(true, pred, scores, true_classes, pred_classes, max_detections)
    m = match_dataset(true, pred, iou_threshold)
    return {
        "mask_ap": ap.ap,
        "mask_ap50": ap.ap50,
        "mask_ap75": ap.ap75,
        "mask_ar": ap.ar,
        **m.scores(),
    }
