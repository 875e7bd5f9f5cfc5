"""Shared by the brain extraction test and benchmark: rigid moves of a head, Dice, and the
template-in-world-coordinates baseline (SimpleITK does the resampling)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.data import sample_path
from medseg.transforms import brain_from_tissue

MOVES = {  # name: (rotation about x, y, z in degrees, shift in mm)
    "moved A": ((25.0, -20.0, 30.0), (25.0, -20.0, 15.0)),
    "moved B": ((-30.0, 20.0, -25.0), (-20.0, 30.0, -25.0)),
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def rigid_move(path: str, rotation_deg, shift_mm, nearest: bool, like: str | None = None) -> sitk.Image:
    """``path`` turned about its centre and shifted, on an axis-aligned 1 mm grid that holds the
    moved head (the non-zero voxels of ``like``, default ``path``) with 10 mm to spare."""
    image = sitk.ReadImage(path)
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    move = sitk.Euler3DTransform(centre, *np.radians(rotation_deg), shift_mm)
    head = np.argwhere(sitk.GetArrayFromImage(sitk.ReadImage(like or path)) > 0)[:, ::-1]  # (x, y, z)
    corners = [
        [lo if bit else hi for bit, lo, hi in zip(bits, head.min(0), head.max(0), strict=True)]
        for bits in np.ndindex(2, 2, 2)
    ]
    moved = np.array(
        [
            move.TransformPoint(image.TransformIndexToPhysicalPoint([int(c) for c in corner]))
            for corner in corners
        ]
    )
    origin = moved.min(0) - 10.0
    grid = [int(n) for n in np.ceil(moved.max(0) + 10.0 - origin)]
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    return sitk.Resample(
        image, grid, move.GetInverse(), interpolator, tuple(origin), (1.0,) * 3, identity, 0.0
    )


def template_mask_on(reference_path: str) -> np.ndarray:
    """The MNI152 brain mask (grey + white matter, holes filled) resampled onto another image's grid."""
    maps = [
        sitk.ReadImage(sample_path(f"mni_icbm152_{t}_tal_nlin_sym_09a_converted.nii.gz", "mni152"))
        for t in ("gm", "wm")
    ]
    mask = brain_from_tissue(*(sitk.GetArrayFromImage(m) for m in maps), scale=255.0)
    template = sitk.GetImageFromArray(mask.astype(np.uint8))
    template.CopyInformation(maps[0])
    on = sitk.Resample(
        template, sitk.ReadImage(reference_path), sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    return sitk.GetArrayFromImage(on)
