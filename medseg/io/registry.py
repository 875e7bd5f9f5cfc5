"""One place that chooses a reader by what the path is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.dicom import read_dicom_folder
from medseg.io.geometry import Geometry
from medseg.io.nifti import is_nifti, read_nifti
from medseg.io.raster import is_raster, read_raster
from medseg.io.sitk_image import is_sitk_image, read_sitk_image
from medseg.io.tiff import is_tiff, read_tiff
from medseg.typing import PathLike


def read_image(path: PathLike, series: str | int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read an image file or a DICOM folder into ``(array, geometry)``, choosing the reader by type.

    Accepted: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``),
    TIFF/OME-TIFF (``.tif``, ``.tiff``), PNG/JPEG/BMP (2D), and a folder of DICOM files. The array is in
    voxel index order ``(x, y[, z][, c])``; ``geometry.affine`` maps it to RAS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        return read_dicom_folder(path, series)
    if is_nifti(path):
        return read_nifti(path)
    if is_sitk_image(path):
        return read_sitk_image(path)
    if is_tiff(path):
        return read_tiff(path)
    if is_raster(path):
        return read_raster(path)
    raise InputError(
        f"{path}: unsupported image type (expected NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MetaImage "
        ".mha/.mhd, TIFF .tif/.tiff, PNG, JPEG or BMP, or a DICOM folder)"
    )
