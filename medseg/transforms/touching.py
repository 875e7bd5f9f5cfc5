"""MONAI dictionary transform: instance mask -> 3-class touching-cells target (``medseg.instance``)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.instance.touching import instances_to_classes


class InstancesToClassesd(MapTransform):
    """Write background/interior/border classes of ``keys`` (channel-first, one channel) to ``name``.

    With several keys, ``name`` is a suffix (``"instances" -> "instances_classes"``).
    """

    def __init__(self, keys: KeysCollection, name: str = "label", border_width: int = 1) -> None:
        super().__init__(keys)
        self.name, self.border_width = name, border_width

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            classes = np.stack([instances_to_classes(channel, self.border_width) for channel in array])
            out_key = self.name if len(self.keys) == 1 else f"{key}_{self.name}"
            if isinstance(mask, MetaTensor):
                d[out_key] = MetaTensor(torch.from_numpy(classes), meta=mask.meta)
            else:
                d[out_key] = classes
        return d
