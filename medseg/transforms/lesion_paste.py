"""Paste a copy of a labelled lesion, resized, turned and shifted in density, elsewhere in an organ.

With one training case the model sees one lesion of one size. Copy-paste augmentation (Ghiasi et
al., CVPR 2021; lesion pasting for nodule detection as in Yang et al., MICCAI 2021) shows it the
same lesion at other sizes and places, inside the region where such lesions occur (the lungs), so
it learns "a soft-tissue blob in the parenchyma" rather than "this tumour at this position".
MONAI and TorchIO have no copy-paste transform (checked MONAI 1.6.1 ``monai.transforms``,
TorchIO 0.20 ``torchio.transforms``); this is one.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage


def lesion_crop(image: np.ndarray, label: np.ndarray, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box (plus ``margin`` voxels) of ``label > 0`` in ``(x, y, z)`` arrays: (image, mask)."""
    where = np.argwhere(label > 0)
    low = np.maximum(where.min(0) - margin, 0)
    high = np.minimum(where.max(0) + margin + 1, label.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    return image[box].astype(np.float32), (label[box] > 0).astype(np.float32)


def paste_lesion(
    image: np.ndarray,
    label: np.ndarray,
    lesion: tuple[np.ndarray, np.ndarray],
    centre: tuple[int, ...],
    scale: float,
    offset: float = 0.0,
    sigma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image, label)`` with ``lesion`` (image, mask) scaled by ``scale``, centred at ``centre``.

    The lesion's intensities (plus ``offset``) replace the image's where its mask, blurred by
    ``sigma`` voxels, is 1, and mix with them at its border; the label gets 1 where the scaled mask
    is above 0.5. Parts falling outside the image are dropped. Inputs are not modified.
    """
    # grid_mode: voxels scale as areas, not as corner-to-corner grids (which shrinks small lesions)
    source, mask = (ndimage.zoom(a, scale, order=1, grid_mode=True, mode="nearest") for a in lesion)
    weight = np.clip(ndimage.gaussian_filter(mask, sigma) if sigma > 0 else mask, 0.0, 1.0)
    image, label = image.copy(), label.copy()
    start = [c - s // 2 for c, s in zip(centre, mask.shape, strict=True)]
    dst = tuple(
        slice(max(a, 0), min(a + s, n)) for a, s, n in zip(start, mask.shape, image.shape, strict=True)
    )
    src = tuple(slice(d.start - a, d.stop - a) for d, a in zip(dst, start, strict=True))
    w = weight[src]
    image[dst] = (w * (source[src] + offset) + (1 - w) * image[dst]).astype(image.dtype)
    label[dst] = np.where(mask[src] > 0.5, 1, label[dst]).astype(label.dtype)
    return image, label


def erase_lesion(
    image: np.ndarray, label: np.ndarray, fill: np.ndarray, sigma: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image, label)`` with the lesion of ``label`` (dilated by one voxel) replaced by
    ``fill`` (same shape as ``image``), mixed at its border by a Gaussian of ``sigma`` voxels, and
    the label cleared there. Shows the model the lesion's surroundings without the lesion.
    """
    mask = ndimage.binary_dilation(label > 0).astype(np.float32)
    weight = np.clip(ndimage.gaussian_filter(mask, sigma) if sigma > 0 else mask, 0.0, 1.0)
    out = (weight * fill + (1 - weight) * image).astype(image.dtype)
    return out, np.where(mask > 0, 0, label).astype(label.dtype)


class RandLesionPasted(RandomizableTransform, MapTransform):
    """With probability ``prob``, paste 1 to ``max_count`` copies of the lesion of ``label_key``
    into the region ``region_key``.

    Each copy is flipped along random axes, scaled by a factor from ``scale_range`` (same on every
    axis, so its physical shape is kept on a resampled grid), shifted in intensity by an offset from
    ``offset_range`` and centred on a random voxel of the region. ``keys`` is the image (one channel).
    With probability ``erase_prob`` the original lesion is first erased (``erase_lesion``), filled
    with intensities drawn from the region, so its surroundings are also seen without it.
    Nothing happens where the label holds no lesion.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        region_key: str = "lung",
        max_count: int = 3,
        scale_range: tuple[float, float] = (0.2, 1.0),
        offset_range: tuple[float, float] = (0.0, 0.0),
        sigma: float = 1.0,
        erase_prob: float = 0.0,
        prob: float = 0.5,
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key, self.region_key = label_key, region_key
        self.max_count, self.scale_range = max_count, scale_range
        self.offset_range, self.sigma, self.erase_prob = offset_range, sigma, erase_prob

    def _draw(self, region: np.ndarray, ndim: int) -> list[dict]:
        candidates = np.flatnonzero(region)
        if candidates.size == 0:
            return []
        draws = []
        for _ in range(int(self.R.randint(1, self.max_count + 1))):
            centre = np.unravel_index(candidates[self.R.randint(candidates.size)], region.shape)
            draws.append(
                {
                    "centre": tuple(int(c) for c in centre),
                    "scale": float(self.R.uniform(*self.scale_range)),
                    "offset": float(self.R.uniform(*self.offset_range)),
                    "flips": [ax for ax in range(ndim) if self.R.rand() < 0.5],
                }
            )
        return draws

    def _erase(self, image: np.ndarray, label: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """``erase_lesion`` on the lesion's box (plus a margin), filled with ``values`` drawn at random."""
        where = np.argwhere(label > 0)
        box = tuple(slice(max(a - 4, 0), b + 5) for a, b in zip(where.min(0), where.max(0), strict=True))
        fill = ndimage.gaussian_filter(self.R.choice(values, size=image[box].shape).astype(np.float32), 0.7)
        image, label = image.copy(), label.copy()
        image[box], label[box] = erase_lesion(image[box], label[box], fill, self.sigma)
        return image, label

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        label = convert_to_numpy(d[self.label_key])[0]
        if not label.any():
            return d
        region = convert_to_numpy(d[self.region_key])[0] > 0
        erase = self.erase_prob > 0 and self.R.rand() < self.erase_prob  # no draw when off
        for key in self.key_iterator(d):
            image = convert_to_numpy(d[key])[0]
            lesion = lesion_crop(image, label)
            new_label = label
            if erase and region.any():
                image, new_label = self._erase(image, label, image[region])
            for draw in self._draw(region, image.ndim):
                flipped = tuple(np.flip(a, draw["flips"]) if draw["flips"] else a for a in lesion)
                image, new_label = paste_lesion(
                    image, new_label, flipped, draw["centre"], draw["scale"], draw["offset"], self.sigma
                )
            d[key] = convert_to_dst_type(image[None], d[key])[0]
            d[self.label_key] = convert_to_dst_type(new_label[None], d[self.label_key])[0]
        return d
