"""The region proposal network: objectness and box deltas per anchor on every pyramid level,
proposals by decoding, clipping and per-level NMS, and its two losses (paper, section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.apps.detection.utils.anchor_utils import AnchorGenerator
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.data.box_utils import clip_boxes_to_image
from monai.networks.layers.factories import Conv
from torch import Tensor, nn

from medseg.networks.mask_rcnn.sampling import match, sample
from medseg.networks.nms import batched_nms


class RPNHead(nn.Module):
    """A 3^D convolution, then 1^D convolutions to ``anchors`` objectness logits and box deltas."""

    def __init__(self, spatial_dims: int, channels: int, anchors: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv = conv(channels, channels, kernel_size=3, padding=1)
        self.logits = conv(channels, anchors, kernel_size=1)
        self.deltas = conv(channels, anchors * 2 * spatial_dims, kernel_size=1)
        for layer in (self.conv, self.logits, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [F.relu(self.conv(f)) for f in features]
        return [self.logits(h) for h in hidden], [self.deltas(h) for h in hidden]


def _flatten(logits: Tensor, deltas: Tensor, spatial_dims: int) -> tuple[Tensor, Tensor]:
    """``(B, A, *S)`` and ``(B, A * 2D, *S)`` -> ``(B, S * A)`` and ``(B, S * A, 2D)``, location-major
    as MONAI's AnchorGenerator orders its anchors."""
    batch, anchors = logits.shape[:2]
    order = (0, *range(2, 2 + spatial_dims), 1)
    logits = logits.permute(order).reshape(batch, -1)
    deltas = deltas.view(batch, anchors, 2 * spatial_dims, *deltas.shape[2:])
    deltas = deltas.permute(0, *range(3, 3 + spatial_dims), 1, 2).reshape(batch, -1, 2 * spatial_dims)
    return logits, deltas


class RegionProposalNetwork(nn.Module):
    """Proposals per image (boxes sorted by objectness) and, in training, the RPN losses."""

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        anchor_sizes: Sequence[Sequence[int]],
        aspect_ratios: Sequence,
        fg_iou: float = 0.7,
        bg_iou: float = 0.3,
        batch_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: tuple[int, int] = (2000, 1000),  # (training, inference), per level
        post_nms_top_n: tuple[int, int] = (1000, 500),
        nms_iou: float = 0.7,
        min_size: float = 1.0,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.anchors = AnchorGenerator(anchor_sizes, [aspect_ratios] * len(anchor_sizes))
        self.head = RPNHead(spatial_dims, channels, self.anchors.num_anchors_per_location()[0])
        self.coder = BoxCoder(weights=(1.0,) * (2 * spatial_dims))
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self.batch_per_image, self.positive_fraction = batch_per_image, positive_fraction
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_iou, self.min_size = nms_iou, min_size

    def forward(
        self, images: Tensor, features: list[Tensor], targets: list[dict] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        logits, deltas = self.head(features)
        anchors = self.anchors(images, features)[0]
        flat = [_flatten(lg, dl, self.spatial_dims) for lg, dl in zip(logits, deltas, strict=True)]
        levels = torch.cat(
            [torch.full((f[0].shape[1],), i, device=images.device) for i, f in enumerate(flat)]
        )
        objectness = torch.cat([f[0] for f in flat], dim=1)
        box_deltas = torch.cat([f[1] for f in flat], dim=1)
        image_size = images.shape[2:]
        proposals = [
            self._proposals(objectness[b].detach(), box_deltas[b].detach(), anchors, levels, image_size)
            for b in range(images.shape[0])
        ]
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("Mask R-CNN needs targets in training")
            losses = self._losses(objectness, box_deltas, anchors, targets)
        return proposals, losses

    def _proposals(self, scores, deltas, anchors, levels, image_size) -> Tensor:
        top_n = self.pre_nms_top_n[0 if self.training else 1]
        keep = torch.cat(
            [
                idx[scores[idx].topk(min(top_n, len(idx))).indices]
                for idx in (torch.nonzero(levels == lv).flatten() for lv in levels.unique())
            ]
        )
        boxes = self.coder.decode_single(deltas[keep], anchors[keep])
        boxes, inside = clip_boxes_to_image(boxes, image_size, remove_empty=True)
        scores, lv = scores[keep][inside], levels[keep][inside]
        big = (boxes[:, self.spatial_dims :] - boxes[:, : self.spatial_dims]).min(
            dim=1
        ).values >= self.min_size
        boxes, scores, lv = boxes[big], scores[big], lv[big]
        post_n = self.post_nms_top_n[0 if self.training else 1]
        kept = batched_nms(boxes, scores, lv, self.nms_iou)[:post_n]
        return boxes[kept]

    def _losses(self, objectness, box_deltas, anchors, targets) -> dict[str, Tensor]:
        labels, picked, box_targets, box_preds = [], [], [], []
        for b, target in enumerate(targets):
            gt = target["boxes"].to(anchors)
            matched = match(gt, anchors, self.fg_iou, self.bg_iou, best_for_each=True)
            pos, neg = sample(matched, self.batch_per_image, self.positive_fraction)
            picked.append(objectness[b, torch.cat([pos, neg])])
            labels.append(torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(objectness))
            box_preds.append(box_deltas[b, pos])
            box_targets.append(self.coder.encode_single(gt[matched[pos]], anchors[pos]))
        logits, labels = torch.cat(picked), torch.cat(labels)
        count = max(len(labels), 1)
        return {
            "loss_objectness": F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / count,
            "loss_rpn_box": F.smooth_l1_loss(
                torch.cat(box_preds), torch.cat(box_targets), beta=1 / 9, reduction="sum"
            )
            / count,
        }
