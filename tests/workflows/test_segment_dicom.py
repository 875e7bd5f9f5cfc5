"""`medseg segment DICOM_DIR --series ... --format nifti,seg,rtstruct` end to end on case B.

The folder holds two series (case B with its UIDs restored, and a small synthetic one), so the
series must be chosen. The SEG is decoded by pydicom onto SimpleITK's grid of the series and
must equal the NIfTI label map written next to it, voxel for voxel; dciodvfy finds no errors.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_refs import dciodvfy_errors, decode_seg, sitk_lps_affine, sitk_read

from medseg.data.synthetic import write_dicom_series
from medseg.io import label_to_grid

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(case_b_dicom_with_uids, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pacs_export") / "study"
    shutil.copytree(case_b_dicom_with_uids, folder / "ct")
    write_dicom_series(np.zeros((16, 16, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]), folder / "scout")
    uid = pydicom.dcmread(next((folder / "ct").iterdir()), stop_before_pixels=True).SeriesInstanceUID
    out = folder.parent / "out"
    cmd = [
        "segment",
        str(folder),
        "--series",
        uid[:40],
        "--format",
        "nifti,seg,rtstruct",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run([sys.executable, "-m", "medseg.cli.main", *cmd], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, out, proc.stdout


ORGANS = {
    "spleen": 1,
    "kidney_right": 2,
    "kidney_left": 3,
    "gallbladder": 4,
    "liver": 5,
    "stomach": 6,
    "pancreas": 7,
}


def ras_affine(image: sitk.Image) -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ sitk_lps_affine(image)


def test_outputs_and_summary(run):
    folder, out, stdout = run
    assert [p.name for p in out.iterdir()] == ["study"]  # one folder per case
    assert sorted(p.name for p in (out / "study").iterdir()) == [
        ".medseg-output",
        "study_overlay.png",
        "study_rtstruct.dcm",
        "study_seg.dcm",
        "study_seg.nii.gz",
        "study_volumes.csv",
        "study_volumes.json",
    ]
    assert f"DICOM SEG: {out / 'study' / 'study_seg.dcm'}" in stdout


def test_seg_equals_nifti_label_map(run):
    folder, out, _ = run
    grid = sitk_read(folder / "ct")
    nifti = nib.load(out / "study" / "study_seg.nii.gz")
    label = label_to_grid(np.asarray(nifti.dataobj), nifti.affine, grid.GetSize(), ras_affine(grid))
    assert label.any()
    decoded = decode_seg(out / "study" / "study_seg.dcm", sitk_lps_affine(grid), grid.GetSize(), ORGANS)
    np.testing.assert_array_equal(decoded, label)
    ds = pydicom.dcmread(out / "study" / "study_seg.dcm", stop_before_pixels=True)
    assert (
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID
        == pydicom.dcmread(next((folder / "ct").iterdir()), stop_before_pixels=True).SeriesInstanceUID
    )
    assert ds.SeriesDescription == "Segmentation (abdomen_ct_segmentation)"


@pytest.mark.parametrize("name", ["study_seg.dcm", "study_rtstruct.dcm"])
def test_dicom_outputs_pass_dciodvfy(run, name):
    assert dciodvfy_errors(run[1] / name) == []


def test_rtstruct_names_the_same_structures_as_the_seg(run):
    out = run[1]
    seg = pydicom.dcmread(out / "study" / "study_seg.dcm", stop_before_pixels=True)
    rtstruct = pydicom.dcmread(out / "study" / "study_rtstruct.dcm")
    assert [r.ROIName for r in rtstruct.StructureSetROISequence] == [
        s.SegmentLabel for s in seg.SegmentSequence
    ]
