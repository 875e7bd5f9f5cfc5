"""The independent readers the DICOM tests compare medseg against: SimpleITK and dcm2niix.

Each reference keeps its own voxel order (dcm2niix flips the rows, medseg and SimpleITK stack
slices along the normal), so volumes are compared where it cannot matter: voxel by voxel at
the same world position.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

# Positions are written as 10-digit decimal strings and dcm2niix stores float32 affines.
WORLD_ATOL = 1e-3


def sitk_read(folder: Path, series_uid: str = "") -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    return reader.Execute()


def assert_same_as_sitk(array, geometry, image, *, slice_spacing: bool = True) -> None:
    """Values, origin, spacing and direction equal SimpleITK's (which works in LPS).

    ``slice_spacing=False`` skips the third spacing: for a one-slice series SimpleITK reports
    1.0, not SliceThickness, because one slice has no slice step.
    """
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    lps = geometry.lps_affine()
    np.testing.assert_allclose(lps[:3, 3], image.GetOrigin(), atol=1e-4)
    count = 3 if slice_spacing else 2
    np.testing.assert_allclose(geometry.spacing[:count], image.GetSpacing()[:count], atol=1e-4)
    np.testing.assert_allclose(
        geometry.direction * [[-1], [-1], [1]], np.reshape(image.GetDirection(), (3, 3)), atol=1e-6
    )


def dcm2niix_read(folder: Path, out_dir: Path) -> nib.Nifti1Image:
    """Convert ``folder`` with dcm2niix and load the one NIfTI it writes; skip without dcm2niix."""
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (apt-get install dcm2niix)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["dcm2niix", "-z", "y", "-b", "n", "-f", "out", "-o", str(out_dir), str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    written = sorted(out_dir.glob("out*.nii.gz"))
    assert proc.returncode == 0 and len(written) == 1, proc.stdout + proc.stderr
    return nib.load(written[0])


def assert_same_world_grid(array, affine, ref_array, ref_affine) -> None:
    """Every voxel of ``array`` lies on a voxel of ``ref_array`` (RAS affines) with the same value.

    The two grids must be the same up to a permutation and flips of the axes: each voxel centre
    maps to an integral reference index, and the voxel counts agree.
    """
    assert array.size == ref_array.size, (array.shape, ref_array.shape)
    ref_array = np.reshape(ref_array, ref_array.shape + (1,) * (3 - ref_array.ndim))
    ijk = np.indices(array.shape).reshape(3, -1)
    to_ref = np.linalg.inv(ref_affine) @ affine
    ref_ijk = to_ref[:3, :3] @ ijk + to_ref[:3, 3:]
    # Index error per mm of world error is 1/spacing, so a world tolerance bounds this one.
    np.testing.assert_allclose(ref_ijk, np.round(ref_ijk), atol=WORLD_ATOL * 10)
    ref_ijk = np.round(ref_ijk).astype(int)
    assert np.all(ref_ijk >= 0) and np.all(ref_ijk < np.reshape(ref_array.shape, (3, 1)))
    np.testing.assert_array_equal(array[tuple(ijk)], ref_array[tuple(ref_ijk)])


def dciodvfy_errors(path: Path, kinds: tuple[str, ...] = ("Error",)) -> list[str]:
    """The lines dciodvfy (dicom3tools) flags as errors (``kinds=("Error", "Warning")``: and
    warnings); skip the test without dciodvfy."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(kinds)]


def sitk_lps_affine(image: sitk.Image) -> np.ndarray:
    """SimpleITK's index-to-LPS matrix of ``image``."""
    lps = np.eye(4)
    lps[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) * image.GetSpacing()
    lps[:3, 3] = image.GetOrigin()
    return lps


def decode_seg(path: Path, lps_affine: np.ndarray, shape, value_of_label: dict[str, int]) -> np.ndarray:
    """A DICOM SEG decoded by pydicom alone onto the grid ``(shape, lps_affine)``: each frame is
    placed by its PlanePosition (which must fall on a slice of the grid) and painted with the
    value of its segment's label."""
    ds = pydicom.dcmread(path)
    value_of = {int(s.SegmentNumber): value_of_label[s.SegmentLabel] for s in ds.SegmentSequence}
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    inverse = np.linalg.inv(lps_affine)
    out = np.zeros(shape, np.int32)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        i, j, k = (inverse @ np.r_[position, 1])[:3]
        assert abs(i) < 1e-3 and abs(j) < 1e-3 and abs(k - round(k)) < 1e-3, "frame off the grid"
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[:, :, round(k)][frame.T > 0] = value_of[number]
    return out


def oblique_affine(tilt_y_degrees: float = -15.0) -> np.ndarray:
    """A voxel-to-RAS affine tilted 25 degrees about x and ``tilt_y_degrees`` about y, with 0.7 x 0.7
    x 3 mm voxels: an oblique series for the SEG and RTSTRUCT tests."""
    a, b = np.radians(25), np.radians(tilt_y_degrees)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot = rot @ np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rot * [0.7, 0.7, 3.0]
    affine[:3, 3] = (12.5, -7.25, 100.0)
    return affine


def decode_segments(path: Path, shape, lps_affine: np.ndarray) -> dict[str, np.ndarray]:
    """Each segment of a binary SEG, by label, as a bool array on the grid ``(shape, lps_affine)``,
    placed by pydicom alone from each frame's plane position (segments may overlap)."""
    ds = pydicom.dcmread(path)
    label_of = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
    out = {label: np.zeros(shape, bool) for label in label_of.values()}
    seen = set()
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    inverse = np.linalg.inv(lps_affine)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        i, j, k = (inverse @ np.r_[position, 1])[:3]
        assert max(abs(i), abs(j), abs(k - round(k))) < WORLD_ATOL, "frame off the grid"
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        assert (number, round(k)) not in seen, "two frames of one segment on one slice"
        seen.add((number, round(k)))
        out[label_of[number]][:, :, round(k)] = frame.T > 0
    return out
