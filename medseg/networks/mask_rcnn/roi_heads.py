"""RoIAlign over the pyramid, the box head (class and class-specific box) and the mask head
(a per-class binary mask per RoI), their losses and the final detections (paper, section 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.data.box_utils import clip_boxes_to_image
from monai.networks.layers.factories import Conv
from torch import Tensor, nn

from medseg.networks.mask_rcnn.sampling import match, sample
from medseg.networks.nms import batched_nms
from medseg.networks.roi_align import roi_align


def box_sizes(boxes: Tensor, spatial_dims: int) -> Tensor:
    """The geometric mean side length of each box."""
    sides = (boxes[:, spatial_dims:] - boxes[:, :spatial_dims]).clamp(min=1e-6)
    return sides.log().mean(dim=1).exp()


class PyramidRoIAlign(nn.Module):
    """RoIAlign of each box on the pyramid level whose stride makes it about ``cells`` cells wide
    (the paper's level rule, with the canonical size set by the head's resolution)."""

    def __init__(
        self, spatial_dims: int, strides: Sequence[int], output_size: int, cells: float = 10.0
    ) -> None:
        super().__init__()
        self.spatial_dims, self.strides = spatial_dims, tuple(strides)
        self.output_size = (output_size,) * spatial_dims
        self.cells = cells

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        channels = features[0].shape[1]
        out = features[0].new_zeros((len(rois), channels, *self.output_size))
        if len(rois) == 0:
            return out
        level = torch.floor(torch.log2(box_sizes(rois[:, 1:], self.spatial_dims) / self.cells) + 1e-6)
        level = (level - math.log2(self.strides[0])).clamp(0, len(self.strides) - 1).long()
        for lv, stride in enumerate(self.strides):
            idx = torch.nonzero(level == lv).flatten()
            if len(idx):
                out[idx] = roi_align(features[lv], rois[idx], self.output_size, 1.0 / stride, 2, True)
        return out


class BoxHead(nn.Module):
    """Two fully connected layers, then class logits and class-specific box deltas."""

    def __init__(self, spatial_dims: int, channels: int, roi_size: int, num_classes: int, hidden: int = 256):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * roi_size**spatial_dims, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip
        self.logits = nn.Linear(hidden, num_classes + 1)
        self.deltas = nn.Linear(hidden, (num_classes + 1) * 2 * spatial_dims)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.fc(pooled)
        return self.logits(hidden), self.deltas(hidden)


class MaskHead(nn.Module):
    """Four 3^D convolutions, a stride-2 transposed convolution, then one mask logit map per class."""

    def __init__(self, spatial_dims: int, channels: int, num_classes: int, layers: int = 4):
        super().__init__()
        conv, up = Conv[Conv.CONV, spatial_dims], Conv[Conv.CONVTRANS, spatial_dims]
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [conv(channels, channels, kernel_size=3, padding=1), nn.ReLU()]
        blocks += [
            up(channels, channels, kernel_size=2, stride=2),
            nn.ReLU(),
            conv(channels, num_classes + 1, 1),
        ]
        self.net = nn.Sequential(*blocks)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled)


class RoIHeads(nn.Module):
    """Box and mask heads on the proposals: losses in training, detections in inference."""

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        strides: Sequence[int],
        num_classes: int,
        box_roi_size: int = 7,
        mask_roi_size: int = 14,
        box_hidden: int = 256,
        fg_iou: float = 0.5,
        batch_per_image: int = 128,
        positive_fraction: float = 0.25,
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        detections_per_image: int = 100,
    ) -> None:
        super().__init__()
        self.spatial_dims, self.num_classes = spatial_dims, num_classes
        self.box_pool = PyramidRoIAlign(spatial_dims, strides, box_roi_size)
        self.mask_pool = PyramidRoIAlign(spatial_dims, strides, mask_roi_size)
        self.box_head = BoxHead(spatial_dims, channels, box_roi_size, num_classes, box_hidden)
        self.mask_head = MaskHead(spatial_dims, channels, num_classes)
        self.mask_size = (2 * mask_roi_size,) * spatial_dims
        self.coder = BoxCoder(weights=(10.0,) * spatial_dims + (5.0,) * spatial_dims)
        self.fg_iou, self.batch_per_image, self.positive_fraction = fg_iou, batch_per_image, positive_fraction
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.detections_per_image = detections_per_image

    def forward(self, features, proposals, image_size, targets=None) -> tuple[list[dict], dict[str, Tensor]]:
        if self.training:
            return [], self._losses(features, proposals, targets)
        return self._detect(features, proposals, image_size), {}

    def _losses(self, features, proposals, targets) -> dict[str, Tensor]:
        rois, labels, box_targets, matched_gt = [], [], [], []
        for boxes, target in zip(proposals, targets, strict=True):
            gt = target["boxes"].to(boxes)
            boxes = torch.cat([boxes, gt])  # the paper adds the ground truth to the proposals
            matched = match(gt, boxes, self.fg_iou, self.fg_iou, best_for_each=False)
            pos, neg = sample(matched, self.batch_per_image, self.positive_fraction)
            keep = torch.cat([pos, neg])
            rois.append(boxes[keep])
            gt_index = matched[keep].clamp(min=0)
            cls = target["labels"].to(torch.long).to(boxes.device)[gt_index] if len(gt) else gt_index
            labels.append(torch.where(matched[keep] >= 0, cls, torch.zeros_like(cls)))
            box_targets.append(
                self.coder.encode_single(gt[gt_index], boxes[keep]) if len(gt) else boxes[keep]
            )
            matched_gt.append(torch.where(matched[keep] >= 0, gt_index, torch.full_like(gt_index, -1)))
        class_logits, deltas = self.box_head(self.box_pool(features, rois))
        labels_all, count = torch.cat(labels), max(sum(len(r) for r in rois), 1)
        positive = torch.nonzero(labels_all > 0).flatten()
        deltas = deltas.view(len(deltas), -1, 2 * self.spatial_dims)[positive, labels_all[positive]]
        losses = {
            "loss_classifier": F.cross_entropy(class_logits, labels_all, reduction="sum") / count,
            "loss_box_reg": F.smooth_l1_loss(
                deltas, torch.cat(box_targets)[positive], beta=1 / 9, reduction="sum"
            )
            / count,
        }
        losses["loss_mask"] = self._mask_loss(features, rois, labels, matched_gt, targets)
        return losses

    def _mask_loss(self, features, rois, labels, matched_gt, targets) -> Tensor:
        """Per-class binary cross-entropy on positive RoIs only, against the ground-truth mask
        sampled on each RoI's mask grid (RoIAlign of the binary mask, as torchvision does)."""
        pos_boxes = [r[lb > 0] for r, lb in zip(rois, labels, strict=True)]
        if sum(len(b) for b in pos_boxes) == 0:
            return sum(f.sum() * 0 for f in features)  # keeps the graph whole
        logits = self.mask_head(self.mask_pool(features, pos_boxes))
        goals = []
        for boxes, lb, gt_index, target in zip(rois, labels, matched_gt, targets, strict=True):
            pos = lb > 0
            goal = boxes.new_zeros((int(pos.sum()), *self.mask_size))
            for j in gt_index[pos].unique():
                which = torch.nonzero(gt_index[pos] == j).flatten()
                mask = _gt_mask(target, int(j)).to(boxes)[None, None]
                rois_j = torch.cat([torch.zeros_like(boxes[pos][which][:, :1]), boxes[pos][which]], dim=1)
                goal[which] = roi_align(mask, rois_j, self.mask_size, 1.0, 2, True)[:, 0]
            goals.append(goal)
        classes = torch.cat([lb[lb > 0] for lb in labels])
        chosen = logits[torch.arange(len(classes)), classes]
        return F.binary_cross_entropy_with_logits(chosen, torch.cat(goals))

    @torch.no_grad()
    def _detect(self, features, proposals, image_size) -> list[dict]:
        class_logits, deltas = self.box_head(self.box_pool(features, proposals))
        scores_all = F.softmax(class_logits, dim=-1)
        boxes_all = self.coder.decode_single(deltas, torch.cat(proposals)) if len(deltas) else deltas
        results, start = [], 0
        for props in proposals:
            end = start + len(props)
            results.append(self._select(boxes_all[start:end], scores_all[start:end], image_size))
            start = end
        boxes = [r["boxes"] for r in results]
        if sum(len(b) for b in boxes):
            masks = torch.sigmoid(self.mask_head(self.mask_pool(features, boxes)))
            start = 0
            for r in results:
                end = start + len(r["boxes"])
                r["masks"] = masks[torch.arange(start, end), r["labels"]]
                start = end
        else:
            for r in results:
                r["masks"] = boxes[0].new_zeros((0, *self.mask_size))
        return results

    def _select(self, boxes: Tensor, scores: Tensor, image_size) -> dict[str, Tensor]:
        """Per class: boxes above the score threshold, clipped, NMS per class, the best N."""
        n, d2 = len(boxes), 2 * self.spatial_dims
        boxes = boxes.reshape(n, -1, d2)[:, 1:].reshape(-1, d2)
        labels = torch.arange(1, self.num_classes + 1, device=scores.device).repeat(n)
        scores = scores[:, 1:].reshape(-1)
        keep = torch.nonzero(scores > self.score_threshold).flatten()
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        boxes, inside = clip_boxes_to_image(boxes, image_size, remove_empty=True)
        scores, labels = scores[inside], labels[inside]
        kept = batched_nms(boxes, scores, labels, self.nms_iou)[: self.detections_per_image]
        return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}


def _gt_mask(target: dict, index: int) -> Tensor:
    """The binary mask of ground-truth object ``index``: from ``masks`` ``(K, *S)`` or from the
    instance map ``instances`` ``(*S)`` and its ``ids`` (no K full-size masks held in 3D)."""
    if "masks" in target:
        return target["masks"][index].float()
    return (target["instances"] == target["ids"][index]).float()
