"""Overlap-tile inference for unpadded networks (Ronneberger et al. 2015, Fig. 2).

An unpadded network maps an input tile to a smaller output tile (572 -> 388). Output tiles are
laid edge to edge over the image; each is predicted from the input tile around it, and context
missing at the image border is filled by mirroring the image. Every output pixel then has its
full receptive field, so the result does not depend on the tiling (tested: tiled equals one pass
over the whole mirrored image). MONAI's sliding-window inferers assume the network returns its
input's size (or a zoom of it), so they cannot place cropped outputs; hence this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import product

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from medseg.errors import InputError


def _output_tile(
    network: Callable, tile: Sequence[int], channels: int, device: torch.device
) -> tuple[int, ...]:
    """Output size of ``network`` for one input tile (a probe forward of zeros)."""
    probe = torch.zeros((1, channels, *tile), device=device)
    return tuple(network(probe).shape[2:])


def overlap_tile_inference(
    image: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor],
    tile_size: Sequence[int],
    batch_size: int = 4,
    mode: str = "reflect",
) -> torch.Tensor:
    """Predict ``image`` (N, C, *spatial) tile by tile; returns (N, C_out, *spatial).

    ``tile_size`` is the network's *input* tile (a valid size, see
    ``medseg.networks.unet_valid.valid_input_size``); ``mode`` is numpy's padding mode for the
    mirrored context ("reflect": mirror without repeating the edge pixel, as in the paper).
    """
    spatial = tuple(image.shape[2:])
    tile = tuple(int(t) for t in tile_size)
    if len(tile) != len(spatial):
        raise InputError(f"tile size {tile} does not match the image's {len(spatial)} spatial dimensions")
    out_tile = _output_tile(network, tile, image.shape[1], image.device)
    margins = [(t - o) // 2 for t, o in zip(tile, out_tile, strict=True)]
    counts = [math.ceil(s / o) for s, o in zip(spatial, out_tile, strict=True)]
    pads = [(m, m + n * o - s) for m, n, o, s in zip(margins, counts, out_tile, spatial, strict=True)]
    padded = np.pad(image.detach().cpu().numpy(), [(0, 0), (0, 0), *pads], mode=mode)
    padded = torch.from_numpy(padded).to(image.device)
    origins = list(product(*(range(0, n * o, o) for n, o in zip(counts, out_tile, strict=True))))
    result = None
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        for n in range(image.shape[0]):
            windows = torch.stack([padded[(n, slice(None), *_window(o, tile))] for o in chunk])
            predicted = network(windows)
            if result is None:
                shape = (
                    image.shape[0],
                    predicted.shape[1],
                    *(c * o for c, o in zip(counts, out_tile, strict=True)),
                )
                result = torch.zeros(shape, dtype=predicted.dtype, device=predicted.device)
            for origin, tile_out in zip(chunk, predicted, strict=True):
                result[(n, slice(None), *_window(origin, out_tile))] = tile_out
    return result[(slice(None), slice(None), *(slice(0, s) for s in spatial))]


def _window(origin: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(origin, size, strict=True))


class OverlapTileInferer(Inferer):
    """MONAI ``Inferer`` wrapper, for bundle configs: ``{"_target_":
    "medseg.inference.overlap_tile.OverlapTileInferer", "tile_size": [188, 188]}``.

    ``mirror_axes`` (spatial) averages the predictions of every mirrored copy of the image (the
    tiling does not change the result, so this is exactly as symmetric as the image); ``amp`` runs
    the network in bf16 (fp16 on GPUs without bf16) and returns float32.
    """

    def __init__(
        self,
        tile_size: Sequence[int],
        batch_size: int = 4,
        mode: str = "reflect",
        mirror_axes: Sequence[int] = (),
        amp: bool = False,
    ) -> None:
        super().__init__()
        self.tile_size, self.batch_size, self.mode = tile_size, batch_size, mode
        self.mirror_axes, self.amp = tuple(mirror_axes), amp

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        from medseg.inference.autocast import autocast_dtype
        from medseg.inference.sliding_window import mirror_sets

        dtype = autocast_dtype(inputs.device, self.amp)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(inputs.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return network(x, *args, **kwargs).float()

        passes = mirror_sets(self.mirror_axes)
        result = 0
        for axes in passes:
            dims = [2 + a for a in axes]
            flipped = torch.flip(inputs, dims) if dims else inputs
            predicted = overlap_tile_inference(flipped, run, self.tile_size, self.batch_size, self.mode)
            result = result + (torch.flip(predicted, dims) if dims else predicted)
        result = result / len(passes)
        if isinstance(inputs, MetaTensor):  # keep the image's meta (affine...) for post-processing
            result = MetaTensor(result, meta=inputs.meta, applied_operations=inputs.applied_operations)
        return result
