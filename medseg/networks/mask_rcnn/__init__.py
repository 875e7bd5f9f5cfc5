"""Mask R-CNN (He et al., 2017) for 2D and 3D images, on MONAI's detection blocks.

MONAI gives the ResNet, the feature pyramid, anchors, the box coder, box IoU and NMS
(``monai.networks.nets.resnet``, ``monai.networks.blocks.feature_pyramid_network``,
``monai.apps.detection.utils``, ``monai.data.box_utils``); torchvision's Mask R-CNN is 2D only
and its compiled operators do not load with a CPU build of torch. What neither has is written
here: the backbone without torchvision's layer getter (``backbone``), IoU matching and balanced
sampling (``sampling``), the region proposal network (``rpn``), RoIAlign over pyramid levels and
the box and mask heads (``roi_heads``), and the model that joins them (``model``).

Boxes everywhere are MONAI's StandardMode corners ``x1, y1[, z1], x2, y2[, z2]``, the first
coordinate along the first spatial axis, in voxel-edge coordinates (voxel ``i`` spans
``[i, i + 1)``).
"""

from medseg.networks.mask_rcnn.model import MaskRCNN

__all__ = ["MaskRCNN"]
