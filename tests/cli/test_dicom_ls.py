"""`medseg dicom ls` on real files: one line per series, no patient identifiers."""

from __future__ import annotations

import subprocess
import sys

import pydicom
import pytest

from medseg.errors import InputError
from medseg.io import read_image


@pytest.fixture
def two_series(case_b_dicom, tmp_path):
    """The sample series twice in one folder: once as is, once as a second series of 10 slices."""
    for i, src in enumerate(sorted(case_b_dicom.iterdir())):
        for copy in ("a", "b"):
            if copy == "b" and i % 2:
                continue
            ds = pydicom.dcmread(src)
            ds.PatientName = "Doe^Jane"
            ds.PatientID = "PID-123456"
            if copy == "b":
                ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
                ds.SeriesDescription = "second series"
            ds.save_as(tmp_path / f"{copy}{i:02d}.dcm")
    return tmp_path


def test_ls_lists_each_series_without_identifiers(two_series):
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "dicom", "ls", str(two_series)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3  # header + 2 series, the larger first
    assert " 20 " in lines[1] and "CT Body 3.0" in lines[1]
    assert " 10 " in lines[2] and "second series" in lines[2] and " 4 " in lines[2]
    assert "Doe" not in proc.stdout + proc.stderr and "PID-123456" not in proc.stdout + proc.stderr


def test_reading_a_mixed_folder_asks_which_series(two_series):
    with pytest.raises(InputError, match="2 series found; choose one with --series"):
        read_image(two_series)
