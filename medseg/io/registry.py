"""One place that chooses a reader by what the path is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.dicom import read_dicom_folder
from medseg.io.geometry import Geometry
from medseg.io.nifti import is_nifti, read_nifti
from medseg.io.tiff import is_tiff, read_tiff
from medseg.typing import PathLike


def read_image(path: PathLike, series: str | int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI file, a TIFF/OME-TIFF or a DICOM folder into ``(array, geometry)``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        return read_dicom_folder(path, series)
    if is_nifti(path):
        return read_nifti(path)
    if is_tiff(path):
        return read_tiff(path)
    raise InputError(f"{path}: unsupported image type (expected a NIfTI file, a TIFF or a DICOM folder)")
