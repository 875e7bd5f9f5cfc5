"""Crop each item of a datalist to its own region, given in the datalist itself.

A datalist that mixes whole images with parts of images (train on the left of one image, evaluate
on its right; use other images whole) needs a crop per item. MONAI's ``SpatialCropd`` takes one
region for every item (checked: ``monai.transforms`` croppad dictionary transforms), so this one
reads ``roi_start`` / ``roi_end`` from the item and hands them to MONAI's ``SpatialCrop``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform, SpatialCrop


class ItemCropd(MapTransform):
    """Crop ``keys`` to ``[data[start_key], data[end_key])`` (spatial voxel indices, channel
    excluded) where the item has them; items without them pass whole.

    Example:
        >>> import torch
        >>> item = {"image": torch.zeros(1, 8, 6), "roi_start": [2, 0], "roi_end": [5, 6]}
        >>> ItemCropd("image")(item)["image"].shape
        torch.Size([1, 3, 6])
    """

    def __init__(
        self,
        keys: KeysCollection,
        start_key: str = "roi_start",
        end_key: str = "roi_end",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.start_key, self.end_key = start_key, end_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if d.get(self.start_key) is None and d.get(self.end_key) is None:
            return d
        crop = SpatialCrop(roi_start=d[self.start_key], roi_end=d[self.end_key])
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        return d
