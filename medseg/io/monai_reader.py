"""A MONAI ``ImageReader`` over medseg's readers, so ``LoadImaged`` reads every type ``read_image`` reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from medseg.io.nifti import is_nifti
from medseg.io.raster import is_raster
from medseg.io.registry import read_image
from medseg.io.sitk_image import is_sitk_image, sitk_spatial_dims
from medseg.io.tiff import is_tiff, tiff_spatial_dims
from medseg.typing import PathLike


class MedsegReader(ImageReader):
    """Read NIfTI, NRRD/MetaImage (2D or 3D), TIFF/OME-TIFF (2D or 3D), PNG/JPEG/BMP (2D) and DICOM
    series folders with medseg's geometry checks.

    Example (bundle config): ``{"_target_": "LoadImaged", "keys": "image",
    "reader": {"_target_": "medseg.io.MedsegReader"}}``.
    """

    def __init__(self, series: str | int | None = None, dtype: np.dtype | type = np.float32) -> None:
        super().__init__()
        self.series = series
        self.dtype = dtype

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = [filename] if isinstance(filename, str | Path) else list(filename)
        readable = (is_nifti, is_sitk_image, is_tiff, is_raster)
        return all(Path(n).is_dir() or any(is_type(n) for is_type in readable) for n in names)

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
    """TIFF, NRRD and MetaImage may be 2D or 3D; PNG/JPEG are 2D; NIfTI and DICOM volumes are 3D
    (a 4th axis is channels)."""
    if is_tiff(path):
        return tiff_spatial_dims(path)
    if is_sitk_image(path):
        return sitk_spatial_dims(path)
    return 2 if is_raster(path) else 3
