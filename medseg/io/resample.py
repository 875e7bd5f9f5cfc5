"""Bring a label map onto another image's grid by world coordinates (never by array index)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from medseg.typing import Affine


def label_to_grid(
    label: np.ndarray, affine: Affine, shape: tuple[int, ...], target_affine: Affine
) -> np.ndarray:
    """Nearest-neighbour resampling of ``label`` (with ``affine``) onto ``(shape, target_affine)``.

    nibabel does the work; when the grids differ only by axis flips/permutations (a NIfTI written
    LAS next to a DICOM series read LPS) every voxel maps exactly onto one voxel.
    """
    image = nib.Nifti1Image(np.asarray(label).astype(np.int16), np.asarray(affine, float))
    out = resample_from_to(image, (tuple(shape), np.asarray(target_affine, float)), order=0, cval=0)
    return np.asarray(out.dataobj).astype(label.dtype)
