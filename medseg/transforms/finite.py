"""Refuse images holding NaN or infinite values before they reach a network.

A NaN in the input turns every output pixel it reaches into NaN, and the arg-max of NaN is
class 0: the result is a silently empty segmentation. MONAI has no such check (checked:
``monai.transforms`` utility and intensity transforms), so this one says which image and how
many voxels.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from medseg.errors import InputError


def check_finite(image: np.ndarray | torch.Tensor, name: str = "image") -> None:
    """Raise ``InputError`` naming ``name`` if ``image`` holds NaN or infinite values."""
    values = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if values.is_floating_point():
        bad = int((~torch.isfinite(values)).sum())
        if bad:
            what = "1 voxel is" if bad == 1 else f"{bad} voxels are"
            raise InputError(f"{name}: {what} NaN or infinite; fill or mask them before segmenting")


class CheckFinited(MapTransform):
    """Dictionary version of ``check_finite``; the message names the file the image came from."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            meta = getattr(d[key], "meta", {}) or {}
            check_finite(d[key], str(meta.get("filename_or_obj", key)))
        return d
