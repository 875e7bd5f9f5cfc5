"""`medseg dicom seg`: an existing NIfTI label map (stored LAS) as a SEG on the DICOM series' grid.

SimpleITK resamples the reference onto the series (nearest neighbour, identity transform): the
SEG decoded by pydicom must hold exactly that.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_refs import dciodvfy_errors, decode_seg, sitk_lps_affine, sitk_read

NAMES = {"1": "spleen", "5": "liver", "6": "stomach", "52": "aorta"}


def medseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medseg.cli.main", *args], capture_output=True, text=True)


def reference_on_series_grid(case_b_reference, folder) -> tuple[np.ndarray, sitk.Image]:
    ct = sitk_read(folder)
    ref = sitk.Resample(
        sitk.ReadImage(str(case_b_reference)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    array = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)  # (x, y, z) like SimpleITK's index
    return np.where(np.isin(array, [int(k) for k in NAMES]), array, 0), ct


def test_label_map_to_seg(case_b_dicom_with_uids, case_b_reference, tmp_path):
    # Keep only the named labels: the sample holds 30 TotalSegmentator classes.
    import nibabel as nib

    ref = nib.load(case_b_reference)
    data = np.asarray(ref.dataobj)
    subset = tmp_path / "subset.nii.gz"
    nib.save(
        nib.Nifti1Image(
            np.where(np.isin(data, [int(k) for k in NAMES]), data, 0).astype(np.uint8), ref.affine
        ),
        subset,
    )
    (tmp_path / "labels.json").write_text(json.dumps(NAMES))
    out = tmp_path / "ref_seg.dcm"
    proc = medseg(
        "dicom",
        "seg",
        str(subset),
        str(case_b_dicom_with_uids),
        "--out",
        str(out),
        "--labels",
        str(tmp_path / "labels.json"),
    )
    assert proc.returncode == 0, proc.stderr
    expected, ct = reference_on_series_grid(subset, case_b_dicom_with_uids)
    assert expected.any()
    decoded = decode_seg(out, sitk_lps_affine(ct), ct.GetSize(), {v: int(k) for k, v in NAMES.items()})
    np.testing.assert_array_equal(decoded, expected)
    assert dciodvfy_errors(out) == []


def test_unnamed_labels_are_a_clear_error(case_b_dicom_with_uids, case_b_reference, tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"5": "liver"}))
    out = tmp_path / "seg.dcm"
    proc = medseg(
        "dicom",
        "seg",
        str(case_b_reference),
        str(case_b_dicom_with_uids),
        "--out",
        str(out),
        "--labels",
        str(tmp_path / "labels.json"),
    )
    assert proc.returncode == 2 and "have no names (name them in a --labels JSON file)" in proc.stderr
    assert case_b_reference.name in proc.stderr and not out.exists()


@pytest.mark.parametrize("content", ["not json", '["liver"]'])
def test_bad_labels_file(case_b_dicom_with_uids, case_b_reference, tmp_path, content):
    (tmp_path / "labels.json").write_text(content)
    proc = medseg(
        "dicom",
        "seg",
        str(case_b_reference),
        str(case_b_dicom_with_uids),
        "--out",
        str(tmp_path / "s.dcm"),
        "--labels",
        str(tmp_path / "labels.json"),
    )
    assert proc.returncode == 2 and "labels.json: not a JSON object" in proc.stderr
