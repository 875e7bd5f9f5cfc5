"""Readers and writers: every reader returns ``(array, Geometry)`` with a RAS affine."""

from __future__ import annotations

import importlib

# Imported on use, so that reading a NIfTI file never loads pydicom, highdicom or SimpleITK.
_WHERE = {
    "atomic_dir": "atomic",
    "atomic_path": "atomic",
    "DicomSeries": "dicom",
    "find_series": "dicom",
    "read_dicom_folder": "dicom",
    "read_series": "dicom",
    "Geometry": "geometry",
    "read_nifti": "nifti",
    "write_nifti": "nifti",
    "read_raster": "raster",
    "read_image": "registry",
    "label_to_grid": "resample",
    "read_sitk_image": "sitk_image",
    "write_sitk_image": "sitk_image",
    "MedsegReader": "monai_reader",  # MONAI loads only when a bundle asks for the reader
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"medseg.io.{_WHERE[name]}"), name)
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
