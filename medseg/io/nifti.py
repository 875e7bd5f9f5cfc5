"""NIfTI reading and writing through nibabel, with errors that name the file."""

from __future__ import annotations

import gzip
import itertools
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import GeometryError, InputError
from medseg.io.atomic import atomic_path
from medseg.io.budget import check_voxels
from medseg.io.geometry import Geometry
from medseg.typing import Affine, PathLike

SUFFIXES = (".nii", ".nii.gz")
HEADER_BYTES = 348  # a NIfTI-1 header
FORMS_TOLERANCE_VOXELS = 0.1  # see _check_forms_agree
# What nibabel raises on a damaged file: EOFError, OSError, zlib.error and gzip.BadGzipFile (short or
# corrupt data), ValueError (data size or dtype the header contradicts), OverflowError (vox_offset
# infinite or beyond any file), and its own HeaderDataError (header fields it cannot fix, e.g.
# vox_offset inside the header) and HeaderTypeError (unknown datatype).
_READ_ERRORS = (
    EOFError,
    OSError,
    OverflowError,
    zlib.error,
    gzip.BadGzipFile,
    ValueError,
    nib.spatialimages.HeaderDataError,
    nib.spatialimages.HeaderTypeError,
)


def is_nifti(path: PathLike) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def read_nifti(path: PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI file into ``(array, geometry)``; the array keeps the file's voxel order."""
    path = Path(path)
    try:
        image = nib.load(path)  # the header only: the pixels are read below, once the size is checked
        check_voxels(path, image.shape, image.get_data_dtype())
        array = np.asanyarray(image.dataobj)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except _READ_ERRORS as err:
        raise InputError(f"{path}: not a readable NIfTI file ({_short(err)})") from None
    except nib.filebasedimages.ImageFileError as err:
        raise InputError(f"{path}: not a NIfTI image ({_header_problem(path) or _short(err)})") from None
    return array, _geometry(path, image)


def _geometry(path: Path, image: nib.Nifti1Image) -> Geometry:
    """The affine nibabel chose (sform, else qform), refused when it cannot place the voxels."""
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise GeometryError(f"{path}: the affine (sform/qform) holds NaN or infinite values; fix the header")
    if np.linalg.matrix_rank(affine[:3, :3]) < 3:
        spacing = ", ".join(f"{s:.3g}" for s in np.linalg.norm(affine[:3, :3], axis=0))
        raise GeometryError(
            f"{path}: the affine is singular (axis lengths {spacing} mm, or two parallel axes): voxel "
            "positions are unknown; fix the header's sform/qform"
        )
    _check_forms_agree(path, image.header, image.shape)
    return Geometry(affine)


def _check_forms_agree(path: Path, header: nib.Nifti1Header, shape: tuple[int, ...]) -> None:
    """With both forms set, nibabel, MONAI and ITK place the image by the sform, but ITK falls back to
    the qform when the sform is not orthonormal, and other tools (AFNI, older converters) read the
    qform. A file whose forms disagree is shown in different places by different viewers, and so would
    its segmentation be: refused rather than guessed. Agreement is up to a tenth of a voxel at every
    corner of the volume, far above float32 rounding of the quaternion (about 1e-4 mm)."""
    sform, scode = header.get_sform(coded=True)
    try:
        qform, qcode = header.get_qform(coded=True)
    except ValueError as err:  # nibabel: quaternion b, c, d that are no rotation ("w2 should be positive")
        raise GeometryError(
            f"{path}: the qform is not a rotation ({_short(err)}); fix it or set qform_code to 0"
        ) from None
    if not qcode or not scode or not np.isfinite(qform).all():
        return
    extent = [max(int(n) - 1, 0) for n in (*shape[:3], 1, 1)][:3]
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, e) for e in extent])]).T
    apart = float(np.linalg.norm(((qform - sform) @ corners)[:3], axis=0).max())
    if apart > FORMS_TOLERANCE_VOXELS * float(np.linalg.norm(sform[:3, :3], axis=0).min()):
        raise GeometryError(
            f"{path}: qform and sform disagree (they place voxels up to {apart:.3g} mm apart), so viewers "
            "would show the image, and its segmentation, in different places; make them equal (e.g. "
            "fslorient -copysform2qform, or nibabel set_qform(get_sform())) and retry"
        )


def _header_problem(path: Path) -> str:
    """Why nibabel found no header (it only says it "cannot work out the file type"); "" if unknown."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:  # to the end: a gzip stream cut short fails only there
            size = sum(iter(lambda: len(f.read(1 << 20)), 0))
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        return f"damaged or truncated gzip data: {_short(err)}"
    if size == 0:
        return "empty file"
    return f"{size} bytes, shorter than a NIfTI header" if size < HEADER_BYTES else ""


def write_nifti(path: PathLike, array: np.ndarray, affine: Affine) -> Path:
    """Write ``array`` with ``affine`` (RAS) atomically; label maps keep their integer dtype."""
    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return Path(path)


def _short(err: BaseException) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__
