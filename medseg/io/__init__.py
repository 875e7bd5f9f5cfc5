"""Readers and writers: every reader returns ``(array, Geometry)`` with a RAS affine."""

from __future__ import annotations

from medseg.io.atomic import atomic_dir, atomic_path
from medseg.io.dicom import DicomSeries, find_series, read_dicom_folder, read_series
from medseg.io.geometry import Geometry
from medseg.io.nifti import read_nifti, write_nifti
from medseg.io.raster import read_raster
from medseg.io.registry import read_image
from medseg.io.resample import label_to_grid
from medseg.io.sitk_image import read_sitk_image, write_sitk_image


def __getattr__(name: str):  # MONAI loads only when a bundle asks for the reader
    if name == "MedsegReader":
        from medseg.io.monai_reader import MedsegReader

        return MedsegReader
    raise AttributeError(f"module 'medseg.io' has no attribute {name!r}")


__all__ = [
    "DicomSeries",
    "Geometry",
    "MedsegReader",
    "atomic_dir",
    "atomic_path",
    "find_series",
    "label_to_grid",
    "read_dicom_folder",
    "read_image",
    "read_nifti",
    "read_raster",
    "read_series",
    "read_sitk_image",
    "write_nifti",
    "write_sitk_image",
]
