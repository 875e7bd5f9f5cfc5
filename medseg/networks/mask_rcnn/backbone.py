"""A MONAI ResNet with a MONAI feature pyramid on top, without torchvision.

MONAI's ``BackboneWithFPN`` takes its stages through torchvision's ``IntermediateLayerGetter``,
which is not there with a CPU-only torch install; the ResNet's stages are simply called in order.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from monai.networks.nets.resnet import ResNet, ResNetBlock
from torch import Tensor, nn


class ResNetFPN(nn.Module):
    """Feature maps at strides 2, 4, 8 and 16 (the last one max-pooled), ``fpn_channels`` each.

    The first convolution has stride 2 and there is no max-pool, so the finest level sees nuclei of
    a few voxels; ``channels`` are the widths of the three ResNet stages used.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
        fpn_channels: int = 64,
    ) -> None:
        super().__init__()
        resnet = ResNet(
            block=ResNetBlock,
            layers=[*blocks, 1],
            block_inplanes=[*channels, channels[-1]],
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=2,
            no_max_pool=True,
            feed_forward=False,
        )
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.act)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3])
        self.fpn = FeaturePyramidNetwork(
            spatial_dims, list(channels), fpn_channels, extra_blocks=LastLevelMaxPool(spatial_dims)
        )
        self.out_channels = fpn_channels
        self.strides = (2, 4, 8, 16)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.stem(images)
        stages = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            stages[str(i)] = x
        return list(self.fpn(stages).values())
