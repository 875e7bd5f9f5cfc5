"""IoU matching and balanced sampling, as Mask R-CNN trains its RPN and box head.

MONAI's detection utilities have the ATSS matcher and a hard-negative sampler (RetinaNet's); the
paper's scheme is simpler: an anchor or proposal is foreground at IoU >= ``fg_iou`` with a ground
truth box, background below ``bg_iou``, ignored between; each ground truth box also claims the
anchors it overlaps most (so small objects get positives); then a fixed number is sampled with at
most a fraction of positives.
"""

from __future__ import annotations

import torch
from monai.data.box_utils import box_iou
from torch import Tensor

BACKGROUND, IGNORE = -1, -2


def match(gt_boxes: Tensor, boxes: Tensor, fg_iou: float, bg_iou: float, best_for_each: bool) -> Tensor:
    """For each box, the index of its ground truth box, ``BACKGROUND`` or ``IGNORE``."""
    if gt_boxes.numel() == 0:
        return torch.full((len(boxes),), BACKGROUND, dtype=torch.long, device=boxes.device)
    iou = box_iou(gt_boxes, boxes)  # (G, N)
    best, matched = iou.max(dim=0)
    matched = matched.clone()
    matched[best < fg_iou] = IGNORE
    matched[best < bg_iou] = BACKGROUND
    if best_for_each:
        top = iou.max(dim=1, keepdim=True).values
        gt, box = torch.nonzero((iou == top) & (top > 0), as_tuple=True)
        matched[box] = gt
    return matched


def sample(matched: Tensor, count: int, positive_fraction: float, generator=None) -> tuple[Tensor, Tensor]:
    """Indices of the sampled positives and negatives (random, at most ``count`` together)."""
    positive = torch.nonzero(matched >= 0).flatten()
    negative = torch.nonzero(matched == BACKGROUND).flatten()
    n_pos = min(len(positive), int(count * positive_fraction))
    n_neg = min(len(negative), count - n_pos)
    pick_pos = torch.randperm(len(positive), generator=generator, device="cpu")[:n_pos].to(positive.device)
    pick_neg = torch.randperm(len(negative), generator=generator, device="cpu")[:n_neg].to(negative.device)
    return positive[pick_pos], negative[pick_neg]
