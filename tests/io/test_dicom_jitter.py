"""Rounded slice positions (issue 12): a valid oblique MR whose ImagePositionPatient values were
rounded is read as SimpleITK and dcm2niix read it, while gaps and truly variable spacing are still
refused. Series are written with known geometry, then their positions rounded as a GE export does."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_refs import dcm2niix_read, sitk_lps_affine, sitk_read

from medseg.data.synthetic import write_dicom_series
from medseg.errors import GeometryError, MedsegWarning
from medseg.io import read_image
from medseg.io.geometry import LPS_TO_RAS

SHAPE = (16, 14, 20)  # 20 slices, as the GE series of the issue
STEP_MM = 7.0


def _oblique_lps(step: float = STEP_MM) -> np.ndarray:
    """Axial-oblique: 18 degrees about x, 11 about y; 0.9 x 0.9 mm pixels, ``step`` mm apart."""
    a, b = np.radians(18), np.radians(11)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rx @ ry @ np.diag([0.9, 0.9, step])
    affine[:3, 3] = (-80.3, -95.7, 12.4)
    return affine


def _write(folder, positions_along: np.ndarray | None = None, decimals: int | None = 1, skip=()):
    """Write the series; move slice k to ``positions_along[k]`` mm along the step direction if
    given, then round every ImagePositionPatient value to ``decimals``."""
    lps = _oblique_lps()
    values = np.random.default_rng(0).integers(0, 2000, SHAPE).astype(np.int16)
    files = write_dicom_series(values, lps, folder, modality="MR", skip_slices=skip)
    unit = lps[:3, 2] / np.linalg.norm(lps[:3, 2])
    for path in files:
        ds = pydicom.dcmread(path)
        k = int(ds.InstanceNumber) - 1
        position = lps[:3, 3] + (positions_along[k] * unit if positions_along is not None else lps[:3, 2] * k)
        if decimals is not None:
            position = np.round(position, decimals)
        ds.ImagePositionPatient = [f"{v:.{decimals if decimals is not None else 6}f}" for v in position]
        ds.save_as(path)
    return folder


def _steps(folder) -> np.ndarray:
    normal = None
    along = []
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        along.append(np.asarray(ds.ImagePositionPatient, float) @ normal)
    return np.diff(np.sort(along))


@pytest.fixture(scope="module")
def rounded(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("rounded"))


def test_the_rounded_series_has_the_issues_jitter(rounded):
    steps = _steps(rounded)
    assert steps.min() < 6.97 and steps.max() > 7.03  # the refusal of issue 12 came from such steps


def test_rounded_oblique_series_is_read_with_a_warning(rounded):
    with pytest.warns(MedsegWarning, match="slice steps vary from .* using their mean"):
        array, geometry = read_image(rounded)
    assert array.shape == SHAPE
    # The mean step, first to last, is the spacing; rounding moves it by under 0.1 mm / 19 steps.
    assert geometry.spacing[2] == pytest.approx(STEP_MM, abs=0.01)


def test_geometry_matches_simpleitk(rounded):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        array, geometry = read_image(rounded)
    image = sitk_read(rounded)
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    # ITK's ImageSeriesReader also takes the spacing from the first and last slice over n - 1.
    np.testing.assert_allclose(geometry.lps_affine(), sitk_lps_affine(image), atol=1e-4)


def test_geometry_matches_dcm2niix(rounded, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        array, geometry = read_image(rounded)
    nifti = dcm2niix_read(rounded, tmp_path)
    steps = _steps(rounded)
    # dcm2niix keeps the first slice and the axes, but takes the spacing from the first step
    # alone (medseg and SimpleITK take the mean): the two differ by the jitter, nothing more.
    their_spacing = np.linalg.norm(nifti.affine[:3, :3], axis=0)
    assert their_spacing[2] == pytest.approx(steps[0], abs=1e-3)
    assert abs(geometry.spacing[2] - their_spacing[2]) <= np.abs(steps - steps.mean()).max()
    np.testing.assert_allclose(geometry.spacing[:2], their_spacing[:2], atol=1e-4)
    directions = nifti.affine[:3, :3] / their_spacing
    np.testing.assert_allclose(np.abs(directions.T @ geometry.direction), np.eye(3), atol=1e-4)
    # Same voxel values at the same indices along each (possibly flipped) axis.
    flips = np.diag(directions.T @ geometry.direction) < 0
    theirs = np.asarray(nifti.dataobj)[tuple(slice(None, None, -1 if f else 1) for f in flips)]
    np.testing.assert_array_equal(array, theirs)
    first = nifti.affine @ [*(np.where(flips, np.array(array.shape) - 1, 0)), 1]
    np.testing.assert_allclose(first[:3], geometry.affine[:3, 3], atol=1e-3)


def test_exact_positions_give_no_warning(tmp_path):
    folder = _write(tmp_path, decimals=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        _, geometry = read_image(folder)
    np.testing.assert_allclose(geometry.lps_affine(), _oblique_lps(), atol=1e-5)


def test_a_missing_slice_is_still_refused(tmp_path):
    folder = _write(tmp_path, skip=[7])
    expected = r"1[34]\.?\d* mm between slices 6 and 7 \(expected (6\.9\d|7|7\.0\d) mm; a missing slice\?\)"
    with pytest.raises(GeometryError, match=expected):
        read_image(folder)


def test_steps_of_5_and_7_mm_are_refused(tmp_path):
    along = np.concatenate([[0.0], np.cumsum([5.0 if k % 2 else 7.0 for k in range(SHAPE[2] - 1)])])
    with pytest.raises(GeometryError, match="non-uniform slice spacing"):
        read_image(_write(tmp_path, positions_along=along))


def test_a_slow_drift_of_steps_is_refused(tmp_path):
    # Steps from 6.4 to 7.6 mm: each within 10% of the typical step, yet slices in the middle lie
    # over a quarter step from where a uniform grid would put them.
    steps = np.linspace(6.4, 7.6, SHAPE[2] - 1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    with pytest.raises(
        GeometryError, match="variable slice spacing: slice .* from its place on a uniform grid"
    ):
        read_image(_write(tmp_path, positions_along=along, decimals=3))


def test_lps_to_ras_is_what_the_reader_returns(rounded):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        _, geometry = read_image(rounded)
    np.testing.assert_allclose(geometry.affine, LPS_TO_RAS @ geometry.lps_affine())
