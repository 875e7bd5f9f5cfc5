"""Enhanced multi-frame objects from pydicom-data: read, refused, ignored and listed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_refs import assert_same_as_sitk, assert_same_world_grid, dcm2niix_read
from pydicom.data import get_testdata_file

from medseg.data.synthetic import write_dicom_series
from medseg.errors import GeometryError
from medseg.io import find_series, read_image
from medseg.workflows.dicom import format_series, list_series


def _testdata(name: str) -> Path:
    # download=False: the network is unreachable here and a download attempt would hang.
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in the installed pydicom-data (pip install pydicom-data)")
    return Path(path)


def _folder_with(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "dicom"
    folder.mkdir()
    for name in names:
        shutil.copy(_testdata(name), folder / name)
    return folder


def test_enhanced_ct_matches_simpleitk(tmp_path):
    folder = _folder_with(tmp_path, "eCT_Supplemental.dcm")
    array, geometry = read_image(folder)
    assert array.shape == (512, 512, 2)
    assert_same_as_sitk(array, geometry, sitk.ReadImage(str(folder / "eCT_Supplemental.dcm")))


def test_enhanced_ct_matches_dcm2niix(tmp_path):
    # dcm2niix reads the functional groups; it stacks the frames the other way round (negative
    # slice step), which the world-coordinate comparison makes irrelevant.
    folder = _folder_with(tmp_path, "eCT_Supplemental.dcm")
    array, geometry = read_image(folder)
    nifti = dcm2niix_read(folder, tmp_path / "nifti")
    assert_same_world_grid(array, geometry.affine, nifti.get_fdata(), nifti.affine)


def test_enhanced_mr_without_geometry_is_refused(tmp_path):
    folder = _folder_with(tmp_path, "emri_small.dcm")
    assert "SharedFunctionalGroupsSequence" not in pydicom.dcmread(folder / "emri_small.dcm")
    with pytest.raises(GeometryError, match=re.escape(str(folder / "emri_small.dcm"))):
        read_image(folder)


def test_seg_object_next_to_its_series_is_ignored(tmp_path):
    folder = _folder_with(tmp_path, "liver.dcm")
    volume = np.random.default_rng(0).integers(0, 1000, (16, 14, 5)).astype(np.int16)
    write_dicom_series(volume, np.diag([0.8, 0.8, 2.0, 1.0]), folder, uids={"series": "1.2.3.4.5"})
    assert pydicom.dcmread(folder / "liver.dcm").Modality == "SEG"
    series = find_series(folder)
    assert [(s.key, len(s)) for s in series] == [("1.2.3.4.5", 5)]
    np.testing.assert_array_equal(read_image(folder)[0], volume)


def test_dicom_ls_lists_multiframe_objects(tmp_path):
    folder = _folder_with(tmp_path, "eCT_Supplemental.dcm", "emri_small.dcm")
    ct, mr = (pydicom.dcmread(folder / name) for name in ("eCT_Supplemental.dcm", "emri_small.dcm"))
    rows = {row["uid"]: row for row in list_series(folder)}
    ct_row, mr_row = rows[ct.SeriesInstanceUID], rows[mr.SeriesInstanceUID]

    ct_spacing = ct.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    frames = ct.PerFrameFunctionalGroupsSequence
    positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in frames], float)
    assert ct_row["slices"] == ct.NumberOfFrames == 2
    assert ct_row["pixel_spacing"] == f"{float(ct_spacing[1]):.3g}x{float(ct_spacing[0]):.3g}"
    assert ct_row["slice_spacing"] == pytest.approx(np.linalg.norm(positions[1] - positions[0]))

    # Without functional groups the MR has frames but no spacing or positions to show.
    assert mr_row["slices"] == mr.NumberOfFrames == 10
    assert mr_row["pixel_spacing"] == "?" and mr_row["slice_spacing"] == "?"
    mr_line = next(line for line in format_series(list(rows.values())).splitlines() if " 10 " in line)
    assert mr_line.split()[2:6] == ["64x64", "?", "10", "?"]
