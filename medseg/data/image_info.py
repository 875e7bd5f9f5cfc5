"""What ``medseg data verify`` needs to know of a file: its shape and affine, cheaply, and its voxels
when it must; and whether two files lie on the same grid."""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import MedsegError
from medseg.typing import Affine, Array

# What reading a damaged or foreign file raises: nibabel (ImageFileError, HeaderDataError, and the
# zlib/gzip/EOF family on short data), tifffile and Pillow (ValueError, struct.error), SimpleITK
# (RuntimeError), pydicom (handled by medseg.io, which raises MedsegError), and the OS.
READ_ERRORS = (
    MedsegError,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    TypeError,
    KeyError,
    IndexError,
    MemoryError,
    struct.error,
    zlib.error,
    gzip.BadGzipFile,
    nib.filebasedimages.ImageFileError,
    nib.spatialimages.HeaderDataError,
)
# Two grids agree when every element of their (reoriented) affines differs by under this fraction of
# the smallest voxel: far above float32 rounding of header fields, far below any real misalignment.
GRID_TOLERANCE_VOXELS = 0.01


@dataclass(frozen=True)
class FileInfo:
    """Shape and affine of an image file; ``array`` when reading them meant reading the voxels."""

    shape: tuple[int, ...]
    affine: Affine
    array: Array | None = None

    def spatial_shape(self, spatial_dims: int) -> tuple[int, ...]:
        return self.shape[:spatial_dims]

    def squeezed_ndim(self, spatial_dims: int) -> int:
        """Dimensions, not counting trailing axes of length 1 beyond the spatial ones (NIfTI writers
        often store a 3D image as x*y*z*1)."""
        ndim = len(self.shape)
        while ndim > spatial_dims and self.shape[ndim - 1] == 1:
            ndim -= 1
        return ndim


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def read_info(path: Path) -> FileInfo:
    """NIfTI: the header only (nibabel reads no voxels here). Other formats and DICOM folders: through
    ``medseg.io.read_image``, which reads the voxels too (they are kept for the label check)."""
    if is_nifti(path):
        image = nib.load(path)
        return FileInfo(tuple(int(s) for s in image.shape), np.asarray(image.affine, dtype=np.float64))
    from medseg.io import read_image

    array, geometry = read_image(path)
    return FileInfo(tuple(int(s) for s in array.shape), np.asarray(geometry.affine), array)


def read_voxels(path: Path, info: FileInfo) -> Array:
    """The file's voxels (read once: a non-NIfTI file already holds them in ``info``)."""
    if info.array is not None:
        return info.array
    return np.asanyarray(nib.load(path).dataobj)


def canonical_grid(shape: tuple[int, ...], affine: Affine) -> tuple[tuple[int, ...], Affine]:
    """The grid reordered to the closest RAS axes, as ``nibabel.as_closest_canonical`` (and MONAI's
    ``Orientation``) would reorder the image: a label stored with flipped or swapped axes lies on the
    same grid as its image when the voxels land on the same world positions."""
    shape3 = tuple(shape[:3]) + (1,) * (3 - len(shape[:3]))
    ornt = nib.orientations.io_orientation(affine)
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape3)
    new_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        new_shape[int(target)] = shape3[axis]
    return tuple(new_shape), new_affine


def grid_difference(
    info: FileInfo, reference: FileInfo, spatial_dims: int, affine: bool = True, reference_name: str = "image"
) -> str | None:
    """How the grid of ``info`` differs from that of ``reference`` (``None`` when they agree): shape,
    then spacing, direction and origin (``affine=False`` compares shapes only). The text gives the
    value of ``info`` first: ``shape (10, 10, 12) vs image (10, 10, 10)``."""
    shape, ref_shape = info.spatial_shape(spatial_dims), reference.spatial_shape(spatial_dims)
    if not affine:
        return None if shape == ref_shape else f"shape {_fmt(shape)} vs {reference_name} {_fmt(ref_shape)}"
    (cshape, caff), (rshape, raff) = (
        canonical_grid(shape, info.affine),
        canonical_grid(ref_shape, reference.affine),
    )
    if cshape != rshape:
        if shape == ref_shape:
            return (
                f"axes in another order: shape {_fmt(cshape)} vs {reference_name} {_fmt(rshape)} in RAS order"
            )
        return f"shape {_fmt(shape)} vs {reference_name} {_fmt(ref_shape)}"
    spacing, ref_spacing = np.linalg.norm(caff[:3, :3], axis=0), np.linalg.norm(raff[:3, :3], axis=0)
    tolerance = GRID_TOLERANCE_VOXELS * float(min(ref_spacing[:spatial_dims]))
    if not np.allclose(spacing, ref_spacing, rtol=0, atol=tolerance):
        return (
            f"spacing {_fmt(spacing[:spatial_dims])} vs {reference_name} {_fmt(ref_spacing[:spatial_dims])}"
        )
    if not np.allclose(caff[:3, :3], raff[:3, :3], rtol=0, atol=tolerance):
        return f"direction differs from the {reference_name}'s (axes rotated against each other)"
    if not np.allclose(caff[:3, 3], raff[:3, 3], rtol=0, atol=tolerance):
        return f"origin {_fmt(caff[:3, 3])} vs {reference_name} {_fmt(raff[:3, 3])} (RAS corner, mm)"
    return None


def _fmt(values: tuple[int, ...] | np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" if isinstance(v, float | np.floating) else str(v) for v in values) + ")"
