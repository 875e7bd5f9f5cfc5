"""Enhanced (multi-frame) CT/MR objects: one file holds the whole volume.

highdicom's ``Image.get_volume`` sorts the frames by their plane positions, checks they form a
regular grid and applies the modality (rescale) transform, so it is used as is; this module only
turns its ``(slices, rows, columns)`` volume and LPS affine into medseg's ``(x, y, z)`` + RAS
geometry, and reads the per-frame geometry that `medseg dicom ls` shows.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from medseg.errors import GeometryError
from medseg.io.dicom_pixels import compact_dtype
from medseg.io.geometry import LPS_TO_RAS, Geometry


def is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1


def functional_group(ds: Dataset, sequence: str, frame: int) -> Dataset:
    """The item of ``sequence`` (e.g. ``PlanePositionSequence``) that applies to ``frame``."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0]:
        return shared[0][sequence][0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame) and sequence in per_frame[frame]:
        return per_frame[frame][sequence][0]
    raise GeometryError(f"{ds.filename}: multi-frame object without {sequence} (no patient geometry)")


def frame_orientation(ds: Dataset) -> np.ndarray:
    return np.asarray(functional_group(ds, "PlaneOrientationSequence", 0).ImageOrientationPatient, float)


def frame_positions(ds: Dataset) -> np.ndarray:
    frames = int(ds.NumberOfFrames)
    return np.array(
        [functional_group(ds, "PlanePositionSequence", f).ImagePositionPatient for f in range(frames)], float
    )


def read_multiframe(ds: Dataset) -> tuple[np.ndarray, Geometry]:
    """Read an enhanced multi-frame object (any transfer syntax pydicom decodes) as a volume."""
    try:
        import highdicom  # imported on use: only enhanced multi-frame objects need it

        volume = highdicom.imread(ds.filename).get_volume(
            dtype=np.float32, apply_real_world_transform=False, apply_modality_transform=True
        )
    except (RuntimeError, ValueError, AttributeError, KeyError) as err:
        raise GeometryError(
            f"{ds.filename}: cannot build a volume from this multi-frame object: {err}"
        ) from None
    array = volume.array.transpose(2, 1, 0)  # (slices, rows, columns) -> (x, y, z)
    lps = volume.affine[:, [2, 1, 0, 3]]
    return array.astype(compact_dtype(array), copy=False), Geometry(LPS_TO_RAS @ lps)
