"""Bad input through the real `medseg` command: one line naming the file, exit code 2, nothing written."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest


def medseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def make_truncated(tmp_path, case_a):
    data = case_a[0].read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(data[: len(data) // 3])
    return path


def make_2d(tmp_path, case_a):
    path = tmp_path / "slice2d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), path)
    return path


def make_text(tmp_path, case_a):
    path = tmp_path / "report.nii.gz"
    path.write_bytes(gzip.compress(b"this is a report, not an image"))
    return path


def make_missing(tmp_path, case_a):
    return tmp_path / "missing.nii.gz"


def make_pdf(tmp_path, case_a):
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"%PDF-1.4\n")
    return path


def copy_case_b(tmp_path):
    from medseg.data import sample_path

    folder = tmp_path / "dicom_in"
    shutil.copytree(sample_path("example_ct_dicom"), folder)
    return folder


def make_empty_dicom_dir(tmp_path, case_a):
    (tmp_path / "empty_dir").mkdir()
    return tmp_path / "empty_dir"


def make_one_slice_series(tmp_path, case_a):
    folder = copy_case_b(tmp_path)
    for path in sorted(folder.iterdir())[1:]:
        path.unlink()
    return folder


def make_corrupt_slice(tmp_path, case_a):
    folder = copy_case_b(tmp_path)
    victim = sorted(folder.iterdir())[7]
    victim.write_bytes(victim.read_bytes()[:20000])
    return folder


def make_missing_slice(tmp_path, case_a):
    import pydicom

    folder = copy_case_b(tmp_path)
    by_z = sorted(folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    by_z[5].unlink()
    return folder


def make_two_series(tmp_path, case_a):
    from medseg.data.synthetic import write_dicom_series

    folder = copy_case_b(tmp_path)
    write_dicom_series(np.zeros((16, 16, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]), folder / "second")
    return folder


@pytest.mark.parametrize(
    "make, message",
    [
        (make_missing, "file not found"),
        (make_text, "not a"),
        (make_pdf, "unsupported image type"),
        (make_2d, "not a 3D volume"),
        (make_truncated, "not a readable NIfTI"),
        (make_empty_dicom_dir, "no DICOM image files"),
        (make_one_slice_series, "not a 3D volume"),
        (make_corrupt_slice, "truncated or corrupt DICOM file"),
        (make_missing_slice, "4 mm between slices 4 and 5 (expected 2 mm; a missing slice?)"),
        (make_two_series, "2 series found; choose one with --series INDEX or UID"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, case_a, make, message):
    path = make(tmp_path, case_a)
    out = tmp_path / "out"
    proc = medseg("segment", str(path), "--out", str(out), "--quiet")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert path.name in lines[0] and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_unknown_bundle_is_a_clear_error(case_a, tmp_path):
    proc = medseg("segment", str(case_a[0]), "--bundle", "no_such_bundle", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "unknown bundle 'no_such_bundle'" in proc.stderr


def test_help_on_every_subcommand():
    for cmd in ("demo", "segment", "train"):
        proc = medseg(cmd, "--help")
        assert proc.returncode == 0 and "usage: medseg" in proc.stdout


def test_train_override_must_be_key_value():
    proc = medseg("train", "abdomen_ct_segmentation", "max_epochs")
    assert proc.returncode == 2 and "max_epochs: overrides are key=value" in proc.stderr


def test_dicom_seg_needs_source_uids(case_b_dicom, tmp_path):
    """The sample was exported with blank UIDs: refused before any inference, nothing written."""
    proc = medseg("segment", str(case_b_dicom), "--format", "nifti,seg", "--out", str(tmp_path / "o"))
    assert (
        proc.returncode == 2 and "blank StudyInstanceUID" in proc.stderr and "--format nifti" in proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_dicom_seg_needs_a_dicom_input(case_a, tmp_path):
    proc = medseg("segment", str(case_a[0]), "--format", "seg", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "--format seg needs a DICOM folder" in proc.stderr


def test_unknown_format(case_a, tmp_path):
    proc = medseg("segment", str(case_a[0]), "--format", "nifti,rtss", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "unknown output format rtss" in proc.stderr
