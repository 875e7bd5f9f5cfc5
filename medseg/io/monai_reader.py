"""A MONAI ``ImageReader`` over medseg's readers, so ``LoadImaged`` reads DICOM folders, NIfTI and TIFF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from medseg.io.nifti import is_nifti
from medseg.io.registry import read_image
from medseg.io.tiff import is_tiff, tiff_spatial_dims
from medseg.typing import PathLike


class MedsegReader(ImageReader):
    """Read NIfTI files, TIFF/OME-TIFF (2D or 3D) and DICOM series folders with medseg's geometry checks.

    Example (bundle config): ``{"_target_": "LoadImaged", "keys": "image",
    "reader": {"_target_": "medseg.io.MedsegReader"}}``.
    """

    def __init__(self, series: str | int | None = None, dtype: np.dtype | type = np.float32) -> None:
        super().__init__()
        self.series = series
        self.dtype = dtype

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = [filename] if isinstance(filename, str | Path) else list(filename)
        return all(Path(n).is_dir() or is_nifti(n) or is_tiff(n) for n in names)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs):
        names = [data] if isinstance(data, str | Path) else list(data)
        return [(Path(n), *read_image(n, self.series), _spatial_dims(n)) for n in names]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        if len(img) != 1:
            raise ValueError("MedsegReader reads one image per key")
        path, array, geometry, spatial_dims = img[0]
        meta = {
            MetaKeys.AFFINE: geometry.affine.copy(),
            MetaKeys.ORIGINAL_AFFINE: geometry.affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape[:spatial_dims]),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if array.ndim == spatial_dims else -1,
            "filename_or_obj": str(path),
        }
        return np.asarray(array, dtype=self.dtype), meta


def _spatial_dims(path: PathLike) -> int:
    """TIFFs may be 2D; NIfTI and DICOM volumes are 3D (a 4th axis is channels)."""
    return tiff_spatial_dims(path) if is_tiff(path) else 3
