"""MONAI's NMS (``monai.data.box_utils``, plain torch, 2D/3D) against a greedy reference in float64.

medseg does not reimplement NMS; these tests pin the semantics a Mask R-CNN user relies on:
- kept indices come in descending score order, equal scores in input order (stable sort);
- a box is dropped when its IoU with a kept box is strictly greater than the threshold;
- zero-volume boxes have IoU 0 with everything, so they never suppress or get suppressed;
- ``batched_nms`` separates classes by offsetting boxes by ``label * (max coordinate + 1)``, the
  coordinate trick of torchvision: it assumes non-negative coordinates (clip boxes to the image
  first, as torchvision's Mask R-CNN does), otherwise classes can suppress each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.box_utils import batched_nms, non_max_suppression


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two StandardMode boxes from per-axis interval overlaps."""
    dims = len(a) // 2
    inter = volume_a = volume_b = 1.0
    for axis in range(dims):
        inter *= max(0.0, min(a[axis + dims], b[axis + dims]) - max(a[axis], b[axis]))
        volume_a *= a[axis + dims] - a[axis]
        volume_b *= b[axis + dims] - b[axis]
    union = volume_a + volume_b - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(boxes, scores, threshold: float) -> list[int]:
    """Sort by score (ties: lower index first), keep the best, drop later boxes with IoU > threshold."""
    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep, dropped = [], set()
    for position, i in enumerate(order):
        if i in dropped:
            continue
        keep.append(i)
        dropped.update(j for j in order[position + 1 :] if iou(boxes[i], boxes[j]) > threshold)
    return keep


def clustered_boxes(rng, count: int, dims: int) -> np.ndarray:
    """Boxes around a few centres, so that many overlap, with random sizes."""
    centres = rng.uniform(10, 50, (4, dims))[rng.integers(0, 4, count)] + rng.normal(0, 1.5, (count, dims))
    half = rng.uniform(3, 7, (count, dims))
    return np.concatenate([centres - half, centres + half], 1)


def clear_of(boxes: np.ndarray, threshold: float) -> bool:
    """No pair's IoU within 1e-4 of the threshold: MONAI computes IoU in float32 (and adds eps)."""
    return all(abs(iou(a, b) - threshold) > 1e-4 for i, a in enumerate(boxes) for b in boxes[i + 1 :])


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("dims", [2, 3])
def test_matches_greedy_reference(dims, threshold):
    rng = np.random.default_rng(300 + dims * 10 + int(threshold * 10))  # no IoU near the threshold
    boxes = clustered_boxes(rng, 60, dims)
    scores = rng.uniform(0, 1, 60)
    scores[10:20] = scores[0]  # ties
    assert clear_of(boxes, threshold)
    expected = greedy_nms(boxes, scores, threshold)
    assert 1 < len(expected) < 60
    keep = non_max_suppression(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), threshold)
    assert keep.dtype == torch.long
    assert keep.tolist() == expected  # same boxes, same (score-descending) order
    assert isinstance(
        kept := non_max_suppression(boxes, scores, threshold), np.ndarray
    )  # numpy in, numpy out
    assert kept.tolist() == expected
    assert (
        non_max_suppression(torch.tensor(boxes), torch.tensor(scores), threshold, 5).tolist() == expected[:5]
    )


@pytest.mark.parametrize("dims", [2, 3])
def test_ties_identical_and_degenerate_boxes(dims):
    box = [1.0] * dims + [4.0] * dims
    flat = [2.0] * dims + [2.0] + [5.0] * (dims - 1)  # zero volume
    boxes = torch.tensor([box, box, box, flat, flat])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.8, 0.8])
    keep = non_max_suppression(boxes, scores, 0.5)
    assert keep.tolist() == greedy_nms(boxes.numpy(), scores.numpy(), 0.5) == [1, 3, 4]
    # IoU 1 is not above a threshold of 1: identical boxes survive it
    assert non_max_suppression(boxes, scores, 1.0).tolist() == [1, 2, 3, 4, 0]


@pytest.mark.parametrize("dims", [2, 3])
def test_threshold_is_exclusive(dims):
    """IoU exactly 0.5 (a box and its half) is kept at threshold 0.5 and dropped below it."""
    big = [0.0] * dims + [2.0] + [1.0] * (dims - 1)
    half = [0.0] * dims + [1.0] * dims
    boxes, scores = torch.tensor([big, half]), torch.tensor([0.9, 0.8])
    assert iou(np.array(big), np.array(half)) == 0.5
    assert non_max_suppression(boxes, scores, 0.5).tolist() == [0, 1]
    assert non_max_suppression(boxes, scores, 0.49).tolist() == [0]


@pytest.mark.parametrize("dims", [2, 3])
def test_empty_and_invalid_input(dims):
    empty = torch.zeros(0, 2 * dims)
    for keep in (
        non_max_suppression(empty, torch.zeros(0), 0.5),
        batched_nms(empty, torch.zeros(0), [], 0.5),
    ):
        assert keep.shape == (0,) and keep.dtype == torch.long
    with pytest.raises(ValueError, match="non-negative"):  # x2 < x1
        non_max_suppression(torch.tensor([[3.0] * dims + [1.0] * dims] * 2), torch.ones(2), 0.5)


@pytest.mark.parametrize("dims", [2, 3])
def test_batched_nms_keeps_classes_apart(dims):
    rng = np.random.default_rng(dims)
    boxes = clustered_boxes(rng, 80, dims)
    scores = rng.uniform(0, 1, 80)
    labels = rng.integers(0, 3, 80)
    assert all(clear_of(boxes[labels == c], 0.4) for c in range(3))
    per_class = [
        np.flatnonzero(labels == c)[greedy_nms(boxes[labels == c], scores[labels == c], 0.4)]
        for c in range(3)
    ]
    expected = sorted(np.concatenate(per_class).tolist(), key=lambda i: (-scores[i], i))
    keep = batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(labels), 0.4)
    assert keep.tolist() == expected
    assert len(expected) > len(greedy_nms(boxes, scores, 0.4))  # classes did protect boxes
    # the same box in two classes: both kept
    same = torch.tensor([[1.0] * dims + [9.0] * dims] * 2)
    assert batched_nms(same, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5).tolist() == [0, 1]


@pytest.mark.xfail(strict=True, reason="batched_nms's class offset assumes non-negative coordinates")
def test_batched_nms_with_negative_coordinates():
    """A box reaching past the image's low edge (an unclipped proposal) in two classes: the offset
    label * (max + 1) = 6 is smaller than the box, so the classes overlap (IoU 0.41) and suppress.
    Clip boxes to the image before batched_nms (torchvision's Mask R-CNN does)."""
    boxes = torch.tensor([[-20.0, -20.0, 5.0, 5.0]] * 2)
    assert batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.3).tolist() == [0, 1]


# medseg's own NMS (the fixed-point form Mask R-CNN uses) against the same greedy reference.


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("dims", [2, 3])
def test_medseg_nms_matches_greedy_reference(dims, threshold):
    from medseg.networks.nms import nms

    for seed in range(100):  # the first random set with no IoU within float32 rounding of the threshold
        rng = np.random.default_rng(seed)
        boxes = clustered_boxes(rng, 150, dims)  # long chains of suppression
        if clear_of(boxes, threshold):
            break
    scores = rng.uniform(0, 1, 150)
    scores[10:40] = scores[0]  # ties: lower index first
    keep = nms(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), threshold)
    assert keep.tolist() == greedy_nms(boxes, scores, threshold)


@pytest.mark.parametrize("dims", [2, 3])
def test_medseg_batched_nms_per_group_with_negative_coordinates(dims):
    from medseg.networks.nms import batched_nms, nms

    rng = np.random.default_rng(dims)
    boxes = clustered_boxes(rng, 80, dims) - 30  # negative coordinates are fine per group
    scores, groups = rng.uniform(0, 1, 80), rng.integers(0, 3, 80)
    expected = [
        i
        for g in range(3)
        for i in np.flatnonzero(groups == g)[greedy_nms(boxes[groups == g], scores[groups == g], 0.4)]
    ]
    expected = sorted(expected, key=lambda i: (-scores[i], i))
    keep = batched_nms(
        torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(groups), 0.4
    )
    assert keep.tolist() == expected
    empty = torch.zeros(0, 2 * dims)
    assert (
        nms(empty, torch.zeros(0), 0.5).tolist()
        == batched_nms(empty, torch.zeros(0), torch.zeros(0), 0.5).tolist()
        == []
    )
