"""NIfTI reading and writing through nibabel, with errors that name the file."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import InputError
from medseg.io.atomic import atomic_path
from medseg.io.geometry import Geometry
from medseg.typing import Affine, PathLike

SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: PathLike) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def read_nifti(path: PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI file into ``(array, geometry)``; the array keeps the file's voxel order."""
    path = Path(path)
    try:
        image = nib.load(path)
        array = np.asanyarray(image.dataobj)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise InputError(f"{path}: not a readable NIfTI file ({_short(err)})") from None
    except nib.filebasedimages.ImageFileError as err:
        raise InputError(f"{path}: not a NIfTI image ({_short(err)})") from None
    return array, Geometry(np.asarray(image.affine, dtype=np.float64))


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
