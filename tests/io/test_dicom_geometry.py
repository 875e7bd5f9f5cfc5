"""Reader geometry on synthetic series: against the written truth, SimpleITK and dcm2niix.

Every readable series is written from a known volume and LPS affine, so the first check needs
no other reader; SimpleITK's ImageSeriesReader and dcm2niix then read the very same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from dicom_refs import assert_same_as_sitk, assert_same_world_grid, dcm2niix_read, sitk_read

from medseg.data.synthetic import write_dicom_series
from medseg.errors import GeometryError, InputError
from medseg.io import find_series, read_image

SHAPE = (24, 20, 12)  # distinct sizes so a swapped axis cannot pass
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-100.0, 50.0, 30.0)
RESCALE = (1.0, -1024.0)  # the usual CT slope and intercept

# Columns: row direction (i), column direction (j), slice step direction (k), all LPS.
AXIAL = np.eye(3)
SAGITTAL = np.column_stack([[0, 1, 0], [0, 0, -1], [-1, 0, 0]])
CORONAL = np.column_stack([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
REVERSED = np.diag([1, 1, -1])  # slices written head to feet: step along -normal


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = (a for a in range(3) if a != axis)
    rotation = np.eye(3)
    rotation[[i, i, j, j], [i, j, i, j]] = c, -s, s, c
    return rotation


OBLIQUE = _rotation(2, 25) @ _rotation(0, 20)


@dataclass(frozen=True)
class Case:
    directions: np.ndarray
    spacing: tuple[float, float, float] = SPACING
    shape: tuple[int, int, int] = SHAPE
    shuffle_names: bool = False

    def lps_affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = self.directions @ np.diag(self.spacing)
        affine[:3, 3] = ORIGIN
        return affine


CASES = {
    "axial": Case(AXIAL),
    "sagittal": Case(SAGITTAL),
    "coronal": Case(CORONAL),
    "oblique": Case(OBLIQUE),
    "reversed": Case(REVERSED),
    "reversed_oblique": Case(OBLIQUE @ REVERSED),
    "anisotropic": Case(AXIAL, spacing=(0.4, 1.3, 5.0)),
    "shuffled_names": Case(SAGITTAL, shuffle_names=True),
    "one_slice": Case(AXIAL, shape=(24, 20, 1)),
}


def _stored_volume(shape, seed: int = 0) -> np.ndarray:
    # Random values: any voxel put in the wrong place changes the comparison.
    return np.random.default_rng(seed).integers(0, 3000, shape).astype(np.int16)


def _modality_values(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float64) * RESCALE[0] + RESCALE[1]


@dataclass(frozen=True)
class Written:
    folder: Path
    values: np.ndarray  # (x, y, z) modality values, k in the order written
    lps_affine: np.ndarray
    case: Case


@pytest.fixture(scope="module", params=list(CASES))
def written(request, tmp_path_factory) -> Written:
    case = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param) / "series"
    stored = _stored_volume(case.shape)
    names = None
    if case.shuffle_names:
        order = np.random.default_rng(1).permutation(case.shape[2])
        names = [f"IM{n:04d}" for n in order]  # no extension and no relation to position
    write_dicom_series(stored, case.lps_affine(), folder, rescale=RESCALE, file_names=names)
    return Written(folder, _modality_values(stored), case.lps_affine(), case)


def _sorted_along_normal(values: np.ndarray, lps_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume and affine as a reader that stacks slices along row x column normal returns them.

    Written with a step against the normal, slice k = n - 1 comes first: the volume flips along
    k and the affine starts at the last written slice, with the step negated.
    """
    normal = np.cross(lps_affine[:3, 0], lps_affine[:3, 1])
    if np.dot(normal, lps_affine[:3, 2]) > 0:
        return values, lps_affine
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, values.shape[2] - 1
    return values[:, :, ::-1], lps_affine @ flip


def test_matches_the_written_volume_and_affine(written):
    array, geometry = read_image(written.folder)
    values, lps_affine = _sorted_along_normal(written.values, written.lps_affine)
    assert array.shape == written.case.shape
    assert array.dtype == np.int16  # integral slope and intercept, result within int16
    np.testing.assert_array_equal(array, values)
    np.testing.assert_allclose(geometry.lps_affine(), lps_affine, atol=1e-6)


def test_matches_simpleitk(written):
    array, geometry = read_image(written.folder)
    one_slice = written.case.shape[2] == 1
    assert_same_as_sitk(array, geometry, sitk_read(written.folder), slice_spacing=not one_slice)


def test_matches_dcm2niix(written, tmp_path):
    array, geometry = read_image(written.folder)
    nifti = dcm2niix_read(written.folder, tmp_path)
    # get_fdata applies scl_slope/scl_inter whether dcm2niix stored raw or rescaled values.
    assert_same_world_grid(array, geometry.affine, nifti.get_fdata(), nifti.affine)


def test_dcm2niix_keeps_the_oblique_grid(tmp_path):
    """dcm2niix does not resample oblique series, so its grid is comparable voxel for voxel."""
    folder = tmp_path / "series"
    write_dicom_series(_stored_volume(SHAPE), CASES["oblique"].lps_affine(), folder, rescale=RESCALE)
    nifti = dcm2niix_read(folder, tmp_path / "nifti")
    directions = nifti.affine[:3, :3] / np.linalg.norm(nifti.affine[:3, :3], axis=0)
    assert np.abs(directions).max(axis=0).max() < 0.99  # no axis-aligned column: still oblique
    _, geometry = read_image(folder)  # each medseg axis is one of dcm2niix's, maybe flipped
    np.testing.assert_allclose(np.abs(directions.T @ geometry.direction).max(axis=0), 1, atol=1e-5)


@pytest.mark.parametrize(
    ("directions", "between"), [(AXIAL, (4, 5)), (REVERSED, (5, 6))], ids=["ascending", "descending"]
)
def test_a_removed_slice_is_named(tmp_path, directions, between):
    # Slice 5 of 12 is left out; sorted along the normal it sits after 5 (ascending) or 6 slices.
    case = Case(directions)
    write_dicom_series(_stored_volume(SHAPE), case.lps_affine(), tmp_path, rescale=RESCALE, skip_slices=[5])
    gap = 2 * SPACING[2]
    with pytest.raises(GeometryError, match=f"{gap:g} mm between slices {between[0]} and {between[1]}"):
        read_image(tmp_path)


AXIAL_UID, SAGITTAL_UID = "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.22"


@pytest.fixture
def two_series(tmp_path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """An axial series of 12 slices and a sagittal one of 8 in one folder; names interleave."""
    truth = {}
    cases = [(AXIAL_UID, Case(AXIAL), 0), (SAGITTAL_UID, Case(SAGITTAL, shape=(16, 14, 8)), 1)]
    for uid, case, seed in cases:
        stored = _stored_volume(case.shape, seed)
        names = [f"IM{k:02d}_{seed}" for k in range(case.shape[2])]
        write_dicom_series(
            stored, case.lps_affine(), tmp_path, rescale=RESCALE, uids={"series": uid}, file_names=names
        )
        truth[uid] = _sorted_along_normal(_modality_values(stored), case.lps_affine())
    return tmp_path, truth


def test_two_series_in_one_folder_need_a_choice(two_series):
    folder, _ = two_series
    with pytest.raises(InputError, match="2 series found; choose one with --series"):
        read_image(folder)


@pytest.mark.parametrize(
    ("choice", "uid"),
    [
        (0, AXIAL_UID),  # the larger series is listed first
        (1, SAGITTAL_UID),
        ("1", SAGITTAL_UID),  # as typed after --series
        (AXIAL_UID, AXIAL_UID),
        (SAGITTAL_UID, SAGITTAL_UID),
    ],
    ids=["index_0", "index_1", "index_1_text", "uid_axial", "uid_sagittal"],
)
def test_the_chosen_series_is_read(two_series, choice, uid):
    folder, truth = two_series
    array, geometry = read_image(folder, series=choice)
    values, lps_affine = truth[uid]
    np.testing.assert_array_equal(array, values)
    np.testing.assert_allclose(geometry.lps_affine(), lps_affine, atol=1e-6)
    assert_same_as_sitk(array, geometry, sitk_read(folder, uid))


ONE_SERIES = {"study": "1.2.3.1", "series": "1.2.3.1.1", "frame_of_reference": "1.2.3.1.2"}


def _write_with_extra_slices(folder: Path, case: Case, k: int, extra_shape: tuple[int, int, int]) -> None:
    """A series of ``SHAPE``, then slices of ``extra_shape`` in the same series from slice ``k`` on."""
    write_dicom_series(_stored_volume(SHAPE), case.lps_affine(), folder, rescale=RESCALE, uids=ONE_SERIES)
    affine = case.lps_affine()
    affine[:3, 3] = (affine @ [0, 0, k, 1])[:3]
    names = [f"extra_{n}.dcm" for n in range(extra_shape[2])]
    stored = _stored_volume(extra_shape, seed=7)
    write_dicom_series(stored, affine, folder, rescale=RESCALE, uids=ONE_SERIES, file_names=names)


def test_duplicate_positions_are_refused(tmp_path):
    _write_with_extra_slices(tmp_path, Case(OBLIQUE), 3, (*SHAPE[:2], 1))  # slice 3 again, new pixels
    assert len(find_series(tmp_path)) == 1
    with pytest.raises(GeometryError, match="two slices share one position"):
        read_image(tmp_path)


def test_mixed_image_sizes_are_refused(tmp_path):
    _write_with_extra_slices(tmp_path, Case(AXIAL), SHAPE[2], (SHAPE[0], SHAPE[1] + 2, 2))  # stack goes on
    assert len(find_series(tmp_path)) == 1
    with pytest.raises(GeometryError, match=r"mixed image sizes \[\(20, 24\), \(22, 24\)\]"):
        read_image(tmp_path)
