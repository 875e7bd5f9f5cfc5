"""The lungs of a chest CT from intensity alone, to crop to them and to place pasted lesions.

Lung parenchyma is air-filled tissue (about -900 to -500 HU) enclosed by the body; the air around
the patient touches the border of every axial slice. So: voxels below ``threshold`` HU, minus the
air connected to each slice's border (``skimage.segmentation.clear_border``), keeping the 3D
components of at least ``min_fraction`` of the largest one (both lungs and the airways; bowel gas
and noise are smaller). The lungmask package does this with a U-Net whose weights it downloads at
run time, so it cannot be used here; MONAI has no lung mask.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage
from skimage.segmentation import clear_border

LUNG_THRESHOLD_HU = -400.0


def lung_mask(
    image: np.ndarray, threshold: float = LUNG_THRESHOLD_HU, min_fraction: float = 0.1
) -> np.ndarray:
    """Boolean lung mask of a ``(C, x, y, z)`` or ``(x, y, z)`` CT in HU (axial slices along the last axis).

    Returns all False where no enclosed air is found (not a chest CT).

    Example:
        >>> ct = np.full((40, 40, 5), 40.0); ct[:, :, :] = -1000; ct[5:35, 5:35] = 40; ct[10:18, 10:30] = -850
        >>> int(lung_mask(ct).sum())
        800
    """
    volume = np.asarray(image)
    volume = volume[0] if volume.ndim == 4 else volume
    air = volume < threshold
    enclosed = np.stack([clear_border(air[..., z]) for z in range(air.shape[-1])], axis=-1)
    labels, count = ndimage.label(enclosed)
    if count == 0:
        return enclosed
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)


def lung_region(image: np.ndarray | torch.Tensor, threshold: float = LUNG_THRESHOLD_HU) -> np.ndarray:
    """The lungs, or everything where none are found: cropping to it never leaves an empty image
    (MONAI's ``CropForegroundd`` crops an all-background mask to size 0)."""
    array = convert_to_numpy(image)
    mask = lung_mask(array, threshold)
    if not mask.any():
        mask = np.ones_like(mask)
    return mask[None] if array.ndim == 4 else mask


class LungMaskd(MapTransform):
    """Add ``mask_key``: ``lung_region`` of ``keys`` (a CT in HU), a ``(1, ...)`` uint8 image on its grid."""

    def __init__(
        self, keys: KeysCollection, mask_key: str = "lung", threshold: float = LUNG_THRESHOLD_HU
    ) -> None:
        super().__init__(keys)
        self.mask_key = mask_key
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = lung_region(d[key][0], self.threshold)[None].astype(np.uint8)
            d[self.mask_key] = convert_to_dst_type(mask, d[key], dtype=torch.uint8)[0]
        return d
