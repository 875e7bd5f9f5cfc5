"""One place that chooses a reader by what the path is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.geometry import Geometry
from medseg.typing import PathLike

# The kind of a path chooses its reader, and output label maps follow the input's kind. Each
# reader's library (pydicom and highdicom, SimpleITK, tifffile, Pillow) is imported when a file of
# its kind is read: a NIfTI run does not pay for the DICOM stack.
_KINDS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "mha",
    ".mhd": "mha",
    ".ome.tiff": "tiff",
    ".ome.tif": "tiff",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".png": "raster",
    ".jpg": "raster",
    ".jpeg": "raster",
    ".bmp": "raster",
}


def image_kind(path: PathLike) -> str:
    """``dicom`` (a folder), ``nifti``, ``nrrd``, ``mha``, ``tiff`` or ``raster`` (PNG/JPEG)."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    return next((kind for suffix, kind in _KINDS.items() if name.endswith(suffix)), "unknown")


def image_stem(path: PathLike) -> str:
    """The file name without its image suffix (``ct.nii.gz`` -> ``ct``); a folder's name as is."""
    name = Path(path).name
    lower = name.lower()
    suffix = next((s for s in _KINDS if lower.endswith(s)), "")
    return name[: len(name) - len(suffix)] if suffix and len(suffix) < len(name) else name


def read_image(path: PathLike, series: str | int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read an image file or a DICOM folder into ``(array, geometry)``, choosing the reader by type.

    Accepted: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``),
    TIFF/OME-TIFF (``.tif``, ``.tiff``), PNG/JPEG/BMP (2D), and a folder of DICOM files. The array is in
    voxel index order ``(x, y[, z][, c])``; ``geometry.affine`` maps it to RAS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    kind = image_kind(path)
    if kind == "dicom":
        from medseg.io.dicom import read_dicom_folder

        return read_dicom_folder(path, series)
    if kind == "nifti":
        from medseg.io.nifti import read_nifti

        return read_nifti(path)
    if kind in ("nrrd", "mha"):
        from medseg.io.sitk_image import read_sitk_image

        return read_sitk_image(path)
    if kind == "tiff":
        from medseg.io.tiff import read_tiff

        return read_tiff(path)
    if kind == "raster":
        from medseg.io.raster import read_raster

        return read_raster(path)
    raise InputError(
        f"{path}: unsupported image type (expected NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MetaImage "
        ".mha/.mhd, TIFF .tif/.tiff, PNG, JPEG or BMP, or a DICOM folder)"
    )
