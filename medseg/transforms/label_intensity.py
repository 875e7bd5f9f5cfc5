"""Shift the intensity of each labelled structure by its own offset.

Contrast agent raises organs by different amounts (portal-venous CT: liver and spleen
+40-60 HU over native), so a model trained on one contrast phase fails on another. MONAI's
intensity transforms (RandShiftIntensity, RandHistogramShift, RandAdjustContrast) act on the
whole image alike; none shifts labelled regions independently, so this does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage


def shift_label_intensity(
    image: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    offsets: Mapping[int, float],
    sigma: float = 1.0,
) -> np.ndarray | torch.Tensor:
    """Return ``image`` plus ``offsets[l]`` inside each label ``l``, softened at borders.

    Args:
        image: ``(C, *spatial)`` intensities (e.g. HU).
        label: ``(1, *spatial)`` integer label map on the same grid.
        offsets: label id -> intensity offset; labels not named are left unchanged.
        sigma: Gaussian blur (voxels) of the offset field, so borders stay natural.

    Example:
        >>> img = np.zeros((1, 4, 4)); lab = np.zeros((1, 4, 4), int); lab[0, :2] = 1
        >>> shift_label_intensity(img, lab, {1: 50.0}, sigma=0)[0, 0, 0]
        50.0
    """
    lab = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label)[0]
    field = np.zeros(lab.shape, np.float32)
    for value, offset in offsets.items():
        field[lab == value] = offset
    if sigma > 0:
        field = ndimage.gaussian_filter(field, sigma)
    if isinstance(image, torch.Tensor):
        return image + torch.as_tensor(field, dtype=image.dtype, device=image.device)
    return image + field.astype(image.dtype, copy=False)


class RandLabelIntensityShiftd(RandomizableTransform, MapTransform):
    """With probability ``prob``, shift each label of ``label_key`` in ``keys`` by a random offset.

    Offsets are drawn per label from ``offset_range`` (uniform), independently each call.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str,
        labels: Sequence[int],
        offset_range: tuple[float, float] = (-30.0, 70.0),
        sigma: float = 1.0,
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.labels = [int(v) for v in labels]
        self.offset_range = offset_range
        self.sigma = sigma
        self._offsets: dict[int, float] = {}

    def randomize(self, data=None) -> None:
        super().randomize(None)
        low, high = self.offset_range
        self._offsets = {v: float(self.R.uniform(low, high)) for v in self.labels}

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = shift_label_intensity(d[key], d[self.label_key], self._offsets, self.sigma)
        return d
