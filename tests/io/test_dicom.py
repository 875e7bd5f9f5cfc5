"""The DICOM reader against SimpleITK's ImageSeriesReader on the real JPEG2000 sample series."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from dicom_refs import assert_same_as_sitk, sitk_read

from medseg.errors import GeometryError, InputError
from medseg.io import find_series, read_image


def test_sample_series_matches_simpleitk(case_b_dicom):
    array, geometry = read_image(case_b_dicom)
    assert array.shape == (512, 512, 20)
    assert_same_as_sitk(array, geometry, sitk_read(case_b_dicom))


def test_blank_uids_group_into_one_series(case_b_dicom):
    series = find_series(case_b_dicom)
    assert len(series) == 1 and len(series[0]) == 20


def test_order_comes_from_positions_not_file_names(case_b_dicom, tmp_path):
    files = sorted(case_b_dicom.iterdir())
    rng = np.random.default_rng(0)
    for new_index, src in zip(rng.permutation(len(files)), files, strict=True):
        shutil.copy(src, tmp_path / f"img{new_index:03d}.dcm")
    array, geometry = read_image(tmp_path)
    assert_same_as_sitk(array, geometry, sitk_read(case_b_dicom))


def test_missing_slice_is_refused(case_b_dicom, tmp_path):
    for src in case_b_dicom.iterdir():
        shutil.copy(src, tmp_path / src.name)
    by_position = sorted(tmp_path.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    by_position[10].unlink()
    with pytest.raises(GeometryError, match="4 mm between slices 9 and 10"):
        read_image(tmp_path)


def test_non_dicom_file_is_skipped_with_warning(case_b_dicom, tmp_path):
    for src in case_b_dicom.iterdir():
        shutil.copy(src, tmp_path / src.name)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="notes.txt: skipped"):
        array, _ = read_image(tmp_path)
    assert array.shape == (512, 512, 20)


def test_empty_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no DICOM image files"):
        read_image(tmp_path)


def test_gantry_tilt_is_refused(case_b_dicom, tmp_path):
    for src in case_b_dicom.iterdir():
        ds = pydicom.dcmread(src)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.35 * (z + 804.5), z]  # 0.35 mm per mm: about 19 degrees
        ds.save_as(tmp_path / src.name)
    with pytest.raises(GeometryError, match="gantry tilt of 19 degrees"):
        read_image(tmp_path)
