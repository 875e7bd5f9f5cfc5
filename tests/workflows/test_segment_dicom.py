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


def sitk_grid(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def ras_affine(image: sitk.Image) -> np.ndarray:
    lps = np.eye(4)
    lps[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) * image.GetSpacing()
    lps[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def decode_seg(path, image: sitk.Image) -> np.ndarray:
    """Label values (by segment label) on SimpleITK's (x, y, z) grid, from frames and positions."""
    ds = pydicom.dcmread(path)
    names = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6}
    names["pancreas"] = 7
    value_of = {int(s.SegmentNumber): names[s.SegmentLabel] for s in ds.SegmentSequence}
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras_affine(image)
    out = np.zeros(image.GetSize(), np.uint8)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        k = (np.linalg.inv(lps) @ np.r_[position, 1])[2]
        out[:, :, round(k)][frame.T > 0] = value_of[
            int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        ]
    return out


def test_outputs_and_summary(run):
    folder, out, stdout = run
    assert sorted(p.name for p in out.iterdir()) == [
        "study_overlay.png",
        "study_rtstruct.dcm",
        "study_seg.dcm",
        "study_seg.nii.gz",
        "study_volumes.csv",
        "study_volumes.json",
    ]
    assert f"DICOM SEG: {out / 'study_seg.dcm'}" in stdout


def test_seg_equals_nifti_label_map(run):
    folder, out, _ = run
    grid = sitk_grid(folder / "ct")
    nifti = nib.load(out / "study_seg.nii.gz")
    label = label_to_grid(np.asarray(nifti.dataobj), nifti.affine, grid.GetSize(), ras_affine(grid))
    assert label.any()
    np.testing.assert_array_equal(decode_seg(out / "study_seg.dcm", grid), label)
    ds = pydicom.dcmread(out / "study_seg.dcm", stop_before_pixels=True)
    assert (
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID
        == pydicom.dcmread(next((folder / "ct").iterdir()), stop_before_pixels=True).SeriesInstanceUID
    )
    assert ds.SeriesDescription == "Segmentation (abdomen_ct_segmentation)"


@pytest.mark.parametrize("name", ["study_seg.dcm", "study_rtstruct.dcm"])
def test_dicom_outputs_pass_dciodvfy(run, name):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    proc = subprocess.run(["dciodvfy", str(run[1] / name)], capture_output=True, text=True)
    assert [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")] == []


def test_rtstruct_names_the_same_structures_as_the_seg(run):
    out = run[1]
    seg = pydicom.dcmread(out / "study_seg.dcm", stop_before_pixels=True)
    rtstruct = pydicom.dcmread(out / "study_rtstruct.dcm")
    assert [r.ROIName for r in rtstruct.StructureSetROISequence] == [
        s.SegmentLabel for s in seg.SegmentSequence
    ]
