"""The brain mask of a template from its tissue probability maps: grey + white matter, holes filled.

Filling the holes puts the ventricles (and CSF enclosed by tissue) inside the brain, as brain
extraction tools (BET, SynthStrip, HD-BET) define it; the largest component drops specks.
MONAI has ``FillHoles`` and ``KeepLargestConnectedComponent`` for label maps; on one boolean mask
scipy's ``binary_fill_holes`` and one ``label`` call do both directly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage


def brain_from_tissue(*maps: np.ndarray, threshold: float = 0.5, scale: float = 1.0) -> np.ndarray:
    """Boolean brain mask: ``sum(maps) / scale > threshold``, largest component, holes filled.

    Example:
        >>> gm = np.zeros((9, 9, 9)); gm[2:7, 2:7, 2:7] = 1; gm[4, 4, 4] = 0
        >>> int(brain_from_tissue(gm).sum())
        125
    """
    total = np.sum([np.asarray(m, np.float32) for m in maps], axis=0) / scale
    mask = total > threshold
    labels, count = ndimage.label(mask)
    if count > 1:
        mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(mask)


class BrainFromTissued(MapTransform):
    """Add ``label_key``: ``brain_from_tissue`` of the maps in ``keys`` (``(1, ...)`` uint8, their grid)."""

    def __init__(
        self, keys: KeysCollection, label_key: str = "label", threshold: float = 0.5, scale: float = 255.0
    ) -> None:
        super().__init__(keys)
        self.label_key, self.threshold, self.scale = label_key, threshold, scale

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        maps = [d[key] for key in self.key_iterator(d)]
        arrays = [convert_to_numpy(m)[0] for m in maps]
        mask = brain_from_tissue(*arrays, threshold=self.threshold, scale=self.scale)[None].astype(np.uint8)
        d[self.label_key] = convert_to_dst_type(mask, maps[0], dtype=torch.uint8)[0]
        return d
