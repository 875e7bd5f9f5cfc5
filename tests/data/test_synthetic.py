"""The synthetic series the tests and benchmarks write are valid CT images (dciodvfy)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from medseg.data.synthetic import write_dicom_series


def test_synthetic_ct_slices_pass_dciodvfy(tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    files = write_dicom_series(np.zeros((8, 6, 2), np.int16), np.diag([0.5, 0.5, 1.25, 1.0]), tmp_path)
    for path in files:
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [
            line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("Error", "Warning"))
        ]
        assert errors == []
