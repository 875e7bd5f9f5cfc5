"""Hand a case that medseg has already read to a bundle's preprocessing, in place of its loader.

The bundle's own ``LoadImaged`` stays in its ``Compose`` and still does what it does after reading
(dtype, metadata pruning, ``ensure_channel_first``, ``image_only``, meta dicts): MONAI's
``LoadImage`` accepts a reader per call, and ours returns the array read before. The case travels in
the data dict, so preprocessing cases in a background thread shares no mutable state.
"""

from __future__ import annotations

import numpy as np
from monai.data import ImageReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapTransform
from monai.utils import MetaKeys, SpaceKeys

from medseg.io.case import CaseImage

CASE_KEY = "_medseg_case"


class CaseReader(ImageReader):
    """A MONAI reader that 'reads' a ``CaseImage``: one channel comes without a channel axis,
    several channel-first (as MONAI stacks several files), or channel-last where the bundle says its
    images have their channels last (``EnsureChannelFirstd(channel_dim=-1)``, written for a reader
    that gives an RGB file that way)."""

    def __init__(self, case: CaseImage, channel_last: bool = False) -> None:
        super().__init__()
        self.case, self.channel_last = case, channel_last

    def verify_suffix(self, filename) -> bool:
        return True

    def read(self, data, **kwargs) -> CaseImage:
        return self.case

    def get_data(self, img: CaseImage) -> tuple[np.ndarray, dict]:
        several = img.array.ndim > img.spatial_dims
        array = img.array if self.channel_last or not several else img.channel_first()
        channel_dim = (-1 if self.channel_last else 0) if several else float("nan")  # nan: none
        affine = np.asarray(img.geometry.affine, dtype=np.float64)
        meta = {
            MetaKeys.AFFINE: affine.copy(),
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(img.spatial_shape),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: channel_dim,
            "filename_or_obj": str(img.path),
        }
        return array, meta


class LoadCased(MapTransform):
    """Wraps a bundle's ``LoadImaged``: loads ``data[CASE_KEY]`` with it instead of the file."""

    def __init__(self, load: LoadImaged, channel_last: bool = False) -> None:
        super().__init__(load.keys, allow_missing_keys=True)
        self.load, self.channel_last = load, channel_last

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        case = d.pop(CASE_KEY, None)
        if case is None:  # a path, as the bundle expects: read as the bundle would
            return self.load(d)
        return self.load(d, reader=CaseReader(case, self.channel_last))


def channels_last(transform) -> bool:
    """Whether the bundle's first ``EnsureChannelFirstd`` says that images have their channels last."""
    for step in getattr(transform, "transforms", []):
        if isinstance(step, EnsureChannelFirstd):
            return step.adjuster.input_channel_dim == -1
        if isinstance(step, Compose) and (found := channels_last(step)):
            return found
    return False


def replace_loaders(transform, channel_last: bool | None = None) -> list[LoadCased]:
    """Wrap every ``LoadImaged`` of a (nested) ``Compose`` in place; returns the wrappers.

    In place, because a bundle's ``Invertd`` holds the same ``Compose`` object.
    """
    if not isinstance(transform, Compose):
        return []
    if channel_last is None:
        channel_last = channels_last(transform)
    found, steps = [], []
    for step in transform.transforms:
        if isinstance(step, LoadImaged):
            step = LoadCased(step, channel_last)
            found.append(step)
        else:
            found += replace_loaders(step, channel_last)
        steps.append(step)
    transform.transforms = tuple(steps) if isinstance(transform.transforms, tuple) else steps
    return found
