"""Bad input through the real `medseg` command: one line naming the file, exit code 2, nothing written."""

from __future__ import annotations

import gzip
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


@pytest.mark.parametrize(
    "make, message",
    [
        (make_missing, "file not found"),
        (make_text, "not a"),
        (make_pdf, "unsupported image type"),
        (make_2d, "not a 3D volume"),
        (make_truncated, "not a readable NIfTI"),
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
    assert proc.returncode == 2 and "no_such_bundle: no such bundle" in proc.stderr


def test_help_on_every_subcommand():
    for cmd in ("demo", "segment", "train"):
        proc = medseg(cmd, "--help")
        assert proc.returncode == 0 and "usage: medseg" in proc.stdout


def test_train_override_must_be_key_value():
    proc = medseg("train", "abdomen_ct_segmentation", "max_epochs")
    assert proc.returncode == 2 and "max_epochs: overrides are key=value" in proc.stderr
