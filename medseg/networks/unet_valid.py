"""The original U-Net (Ronneberger et al. 2015): unpadded ("valid") convolutions, 2D and 3D.

MONAI's UNet, BasicUNet and DynUNet all pad their convolutions ("same"), so their output has
the input's size and the border pixels see zero padding. The paper's network does not pad: each
3x3 convolution trims one pixel per side, the output is smaller than the input (572 -> 388 for
the paper's depth 4) and every output pixel has its full context. That is what makes the
overlap-tile inference (``medseg.inference.overlap_tile``) seamless. This module is that network,
with configurable depth and width, and the arithmetic of valid input sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.errors import InputError


def _level_sizes(size: int, depth: int) -> list[int] | None:
    """Spatial size after each stage for one axis, or ``None`` if the size is not valid."""
    sizes = []
    for _ in range(depth):
        size -= 4  # two valid 3x3 convolutions
        if size <= 0 or size % 2:
            return None  # max-pooling needs an even size
        sizes.append(size)
        size //= 2
    size -= 4  # bottom convolutions
    if size <= 0:
        return None
    for _ in range(depth):
        size = size * 2 - 4  # up-convolution, then two valid convolutions
        if size <= 0:
            return None
    sizes.append(size)
    return sizes


def output_size(input_size: Sequence[int] | int, depth: int = 4) -> tuple[int, ...]:
    """Output size of the unpadded U-Net for ``input_size`` (per axis); error if not valid.

    >>> output_size((572, 572))
    (388, 388)
    """
    sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    out = []
    for s in sizes:
        levels = _level_sizes(int(s), depth)
        if levels is None:
            raise InputError(
                f"input size {s} is not valid for an unpadded U-Net of depth {depth}; "
                f"nearest valid sizes: {valid_input_size(s, depth, below=True)}, {valid_input_size(s, depth)}"
            )
        out.append(levels[-1])
    return tuple(out)


def valid_input_size(size: int, depth: int = 4, below: bool = False) -> int:
    """The smallest valid input size >= ``size`` (or the largest <= ``size`` with ``below``)."""
    step = -1 if below else 1
    candidate = max(int(size), 1)
    while _level_sizes(candidate, depth) is None:
        candidate += step
        if candidate < 1:
            return valid_input_size(1, depth)
    return candidate


def input_size_for_output(output: int, depth: int = 4) -> int:
    """The input size whose output is at least ``output`` pixels wide (smallest such valid size)."""
    size = valid_input_size(output, depth)
    while _level_sizes(size, depth)[-1] < output:
        size = valid_input_size(size + 1, depth)
    return size


def _conv_block(spatial_dims: int, in_ch: int, out_ch: int, norm: bool) -> nn.Sequential:
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    bn = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
    layers: list[nn.Module] = []
    for c_in in (in_ch, out_ch):
        layers += [conv(c_in, out_ch, 3, bias=not norm)]
        if norm:  # batch norm only: it is pointwise at inference, so tiles stay seamless
            layers.append(bn(out_ch))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the spatial centre of ``x`` (N, C, *spatial) to ``shape``."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], shape, strict=True):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


class UNetValid(nn.Module):
    """Unpadded U-Net: ``depth`` poolings, ``features * 2**level`` channels per level.

    The paper's network is ``UNetValid(2, 1, 2, features=64, depth=4)`` (input 572, output 388).
    Use ``output_size``/``valid_input_size`` to choose tile sizes; ``norm=True`` adds batch norm
    (not in the paper; it keeps inference pointwise, unlike instance norm, so overlap-tile
    results do not depend on the tiling).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: int = 64,
        depth: int = 4,
        norm: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims, self.depth = spatial_dims, depth
        widths = [features * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.down.append(_conv_block(spatial_dims, channels, width, norm))
            channels = width
        self.bottom = _conv_block(spatial_dims, widths[-2], widths[-1], norm)
        up_conv = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        self.up = nn.ModuleList(up_conv(w, w // 2, 2, stride=2) for w in reversed(widths[1:]))
        self.up_blocks = nn.ModuleList(
            _conv_block(spatial_dims, w, w // 2, norm) for w in reversed(widths[1:])
        )
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.head = conv(widths[0], out_channels, 1)
        self.pool = nn.MaxPool3d(2) if spatial_dims == 3 else nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output_size(x.shape[2:], self.depth)  # a clear error instead of a shape mismatch deep inside
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips), strict=True):
            x = up(x)
            x = block(torch.cat([center_crop(skip, x.shape[2:]), x], dim=1))
        return self.head(x)
