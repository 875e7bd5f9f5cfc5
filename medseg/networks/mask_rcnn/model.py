"""Mask R-CNN for ``spatial_dims`` 2 or 3: ResNet-FPN, RPN, RoIAlign, box and mask heads."""

from __future__ import annotations

from collections.abc import Sequence

from monai.data import MetaTensor
from torch import Tensor, nn

from medseg.networks.mask_rcnn.backbone import ResNetFPN
from medseg.networks.mask_rcnn.roi_heads import RoIHeads
from medseg.networks.mask_rcnn.rpn import RegionProposalNetwork


class MaskRCNN(nn.Module):
    """Instance segmentation: ``model(images)`` gives, per image, ``boxes`` ``(K, 2D)``, ``scores``,
    ``labels`` (1..num_classes) and ``masks`` ``(K, *mask_size)`` (probabilities in each box's frame;
    ``medseg.instance.targets.detections_to_instances`` pastes them into a label map). In training,
    ``model(images, targets)`` gives the paper's five losses; a target holds ``boxes``, ``labels``
    and either ``masks`` ``(K, *S)`` or ``instances`` ``(*S)`` with its ``ids`` ``(K,)``.

    ``images`` is ``(B, C, *S)`` with each spatial size divisible by 16 (pad first). Anchors are
    cubes (squares in 2D) of ``anchor_sizes`` voxels, one size per pyramid level (strides 2, 4, 8,
    16), with ``aspect_ratios`` (MONAI's AnchorGenerator convention). The box head's two fully
    connected layers are ``box_hidden`` wide; their input is ``fpn_channels * box_roi_size^D``,
    so in 3D they hold most of the weights (64 instead of 256 makes a 3D model 4x smaller).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        fpn_channels: int = 64,
        anchor_sizes: Sequence[int] = (8, 16, 32, 64),
        aspect_ratios: Sequence | None = None,
        box_roi_size: int = 7,
        mask_roi_size: int | None = None,
        box_hidden: int = 256,
        detections_per_image: int = 100,
        score_threshold: float = 0.05,
        rpn_post_nms_top_n: tuple[int, int] = (1000, 500),
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if aspect_ratios is None:
            aspect_ratios = (0.5, 1.0, 2.0) if spatial_dims == 2 else ((1.0, 1.0),)
        if mask_roi_size is None:
            mask_roi_size = 14 if spatial_dims == 2 else 7  # 28^2 and 14^3 masks, as memory allows
        self.spatial_dims = spatial_dims
        self.backbone = ResNetFPN(spatial_dims, in_channels, channels, fpn_channels=fpn_channels)
        self.rpn = RegionProposalNetwork(
            spatial_dims, fpn_channels, [(s,) for s in anchor_sizes], aspect_ratios,
            post_nms_top_n=rpn_post_nms_top_n,
        )  # fmt: skip
        self.roi_heads = RoIHeads(
            spatial_dims, fpn_channels, self.backbone.strides[:3], num_classes, box_roi_size, mask_roi_size,
            box_hidden, score_threshold=score_threshold, detections_per_image=detections_per_image,
        )  # fmt: skip

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        if isinstance(images, MetaTensor):  # its batched metadata cannot follow boxes and RoIs
            images = images.as_tensor()
        features = self.backbone(images)
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, head_losses = self.roi_heads(features[:3], proposals, images.shape[2:], targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return detections
