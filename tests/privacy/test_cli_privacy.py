"""The CLI on a patient's series named after the patient: `medseg dicom ls`, a refused folder,
`medseg segment` over a good and a failing case (progress, summary, tables, names), and the SEG
and RTSTRUCT with and without --anonymize. No identifier may appear anywhere but in the DICOM
outputs that the standard makes carry the patient module."""

from __future__ import annotations

import json

import nibabel as nib
import pydicom
import pytest
from conftest import FOLDER, leaks, medseg
from dicom_refs import dciodvfy_errors
from PIL import Image

SEED = "s3cret"


def test_ls_scrubs_the_description(patient_root):
    proc = medseg("dicom", "ls", FOLDER, cwd=patient_root)
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.splitlines()[1]
    assert row.endswith("[redacted] [redacted] [redacted] T1")
    assert "0_notes.txt: skipped" in proc.stderr  # the warning is there, its folder name is not
    assert not leaks(proc.stdout + proc.stderr)


def test_error_line_is_scrubbed(patient_root):
    proc = medseg("dicom", "anonymize", FOLDER, f"{FOLDER}/anon", cwd=patient_root)
    assert proc.returncode == 2
    assert "medseg: error: [redacted]_[redacted]_[redacted]/anon: the output folder" in proc.stderr
    assert not leaks(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def batch(patient_root, gap_folder):
    """One run over the patient's series and the same series with a gap, SEG and RTSTRUCT too."""
    out = patient_root / "out_batch"
    args = ("segment", FOLDER, gap_folder.name, "--format", "nifti,seg,rtstruct", "--out", out.name)
    return medseg(*args, cwd=patient_root), out


@pytest.mark.slow
def test_batch_prints_and_writes_no_identifier(batch):
    proc, out = batch
    assert proc.returncode == 1, proc.stderr  # the case with a gap failed, the other was done
    assert "1 done, 0 skipped (already done), 1 failed" in proc.stdout
    assert "non-uniform slice spacing" in proc.stdout
    assert not leaks(proc.stdout + proc.stderr)  # progress bars included
    for path in out.rglob("*"):
        assert not leaks(path.name), path.name
    for path in [*out.rglob("*.csv"), *out.rglob("*.json")]:
        assert not leaks(path.read_text()), path.name
    for path in out.rglob("*.png"):
        assert not leaks(json.dumps(Image.open(path).info, default=str)), path.name
    for path in out.rglob("*.nii.gz"):
        header = nib.load(path).header
        assert not leaks(" ".join(str(header[k]) for k in ("descrip", "aux_file", "db_name")))


@pytest.mark.slow
def test_summary_keeps_paths_as_given(batch):
    _, out = batch
    rows = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[0]["image"] == "[redacted]_[redacted]_[redacted]"  # relative, as typed
    assert rows[0]["case"].startswith("case-") and rows[1]["case"].startswith("case-")


@pytest.mark.slow
def test_dicom_outputs_carry_the_patient_module(batch):
    _, out = batch
    for path in (*out.rglob("*_seg.dcm"), *out.rglob("*_rtstruct.dcm")):
        ds = pydicom.dcmread(path)
        assert (ds.PatientName, ds.PatientID, ds.PatientBirthDate) == ("Doe^Jane", "PID-123456", "19800102")
        assert ds.AccessionNumber == "ACC778899"
    assert len(list(out.rglob("*.dcm"))) == 2


@pytest.mark.slow
def test_anonymized_outputs_match_the_anonymized_series(patient_root, tmp_path):
    """--anonymize with the seed of `medseg dicom anonymize`: the SEG and RTSTRUCT hold no original
    identifier and reference the anonymised series, study and frame of reference."""
    out = tmp_path / "out"
    args = ("segment", FOLDER, "--format", "seg,rtstruct", "--anonymize", "--seed", SEED, "--out", str(out))
    proc = medseg(*args, cwd=patient_root)
    assert proc.returncode == 0, proc.stderr
    assert not leaks(proc.stdout + proc.stderr)
    anonymized = medseg(
        "dicom", "anonymize", FOLDER, str(tmp_path / "anon"), "--seed", SEED, cwd=patient_root
    )
    assert anonymized.returncode == 0, anonymized.stderr
    series = [pydicom.dcmread(p) for p in (tmp_path / "anon").rglob("*.dcm")]
    sop_uids = {ds.SOPInstanceUID for ds in series}
    first = series[0]
    seg = pydicom.dcmread(next(out.rglob("*_seg.dcm")))
    rtstruct = pydicom.dcmread(next(out.rglob("*_rtstruct.dcm")))
    for path in (*out.rglob("*.dcm"),):
        assert not dciodvfy_errors(path), path.name  # still valid objects
    for ds in (seg, rtstruct):
        assert not leaks(str(ds))
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate"):
            assert ds.get(keyword) == first.get(keyword), keyword
        assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} <= sop_uids
    study = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    contour_images = study.RTReferencedSeriesSequence[0].ContourImageSequence
    assert {i.ReferencedSOPInstanceUID for i in contour_images} == sop_uids


@pytest.mark.slow
def test_dicom_seg_anonymized(batch, patient_root, tmp_path):
    """`medseg dicom seg --anonymize`: the SEG appears only anonymised, with the seed's mapping."""
    _, out = batch
    label = next(out.rglob("*_seg.nii.gz"))
    seg_path = tmp_path / "seg.dcm"
    args = ("dicom", "seg", str(label), FOLDER, "--out", str(seg_path), "--anonymize", "--seed", SEED)
    proc = medseg(*args, cwd=patient_root)
    assert proc.returncode == 0, proc.stderr
    assert not leaks(proc.stdout + proc.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]  # no staging left behind
    seg = pydicom.dcmread(seg_path)
    assert not leaks(str(seg))
    anonymized = medseg(
        "dicom", "anonymize", FOLDER, str(tmp_path / "anon"), "--seed", SEED, cwd=patient_root
    )
    assert anonymized.returncode == 0, anonymized.stderr
    (series_dir,) = (p for p in (tmp_path / "anon").iterdir() if p.is_dir())
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_dir.name
