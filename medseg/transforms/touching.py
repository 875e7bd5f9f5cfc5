"""MONAI dictionary transform: instance mask -> 3-class touching-cells target (``medseg.instance``)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy

from medseg.errors import InputError
from medseg.instance.touching import BORDER, classes_to_instances, instances_to_classes


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
            array = convert_to_numpy(mask)
            classes = np.stack([instances_to_classes(channel, self.border_width) for channel in array])
            out_key = self.name if len(self.keys) == 1 else f"{key}_{self.name}"
            if isinstance(mask, MetaTensor):
                d[out_key] = MetaTensor(torch.from_numpy(classes), meta=mask.meta)
            else:
                d[out_key] = classes
        return d


class ClassesToInstancesd(MapTransform):
    """Write instance ids of the class probabilities in ``keys`` to ``name`` (``medseg.instance``).

    ``keys`` hold per-class probabilities, channel-first ``(3, *spatial)``: background, interior,
    border (e.g. after ``Activationsd(softmax=True)``). The argmax gives the classes; cells meet
    where the border probability is highest (``classes_to_instances``). The output is
    ``(1, *spatial)`` int32, a MetaTensor with the input's metadata when the input is one. With
    several keys, ``name`` is a suffix (``"pred" -> "pred_instances"``).

    Example:
        >>> probs = np.zeros((3, 1, 5), np.float32); probs[1, 0, [0, 4]] = 1; probs[0, 0, 1:4] = 1
        >>> ClassesToInstancesd("pred")({"pred": probs})["instances"].tolist()
        [[[1, 0, 0, 0, 2]]]
    """

    def __init__(
        self,
        keys: KeysCollection,
        name: str = "instances",
        min_size: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.name, self.min_size = name, min_size

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            probs = d[key]
            array = convert_to_numpy(probs)
            if array.shape[0] != 3:
                raise InputError(
                    f"ClassesToInstancesd: {key!r} must hold 3 class probabilities (background, interior, "
                    f"border) along axis 0; got shape {array.shape}"
                )
            classes = np.argmax(array, axis=0)
            instances = classes_to_instances(classes, array[BORDER], self.min_size).astype(np.int32)[None]
            out_key = self.name if len(self.keys) == 1 else f"{key}_{self.name}"
            if isinstance(probs, MetaTensor):
                d[out_key] = MetaTensor(torch.from_numpy(instances), meta=dict(probs.meta))
            else:
                d[out_key] = instances
        return d
