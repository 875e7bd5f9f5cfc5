"""A patient's series as exports hold them: identifiers in the header, in free text and in the
folder's name. Every test here checks that none of them gets out where it does not belong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from medseg.privacy import forget_all

PATIENT = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-123456",
    "PatientBirthDate": "19800102",
    "AccessionNumber": "ACC778899",
    "ReferringPhysicianName": "House^Gregory",
    "SeriesDescription": "Doe Jane 123456 T1",
    "ImageComments": "DOB 02.01.1980, acc ACC778899",
}
# What must never be printed, logged, summarised or used as a name (case-insensitive).
IDENTIFIERS = ("Doe", "Jane", "123456", "19800102", "1980-01-02", "02.01.1980", "ACC778899")
FOLDER = "Doe_Jane_123456"


def medseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def leaks(text: str, identifiers=IDENTIFIERS) -> list[str]:
    """The identifiers found in ``text``."""
    return [i for i in identifiers if i.lower() in text.lower()]


@pytest.fixture(autouse=True)
def _empty_registry():
    forget_all()  # what one test remembered must not hide a leak in the next
    yield
    forget_all()


@pytest.fixture(scope="session")
def patient_root(case_b_dicom_with_uids, tmp_path_factory) -> Path:
    """``root/Doe_Jane_123456/``: the sample CT with UIDs and this patient's identifiers (and the
    scanner's private elements), plus a note that is not DICOM."""
    root = tmp_path_factory.mktemp("privacy")
    folder = root / FOLDER
    folder.mkdir()
    for src in sorted(case_b_dicom_with_uids.iterdir()):
        ds = pydicom.dcmread(src)
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / src.name)
    (folder / "0_notes.txt").write_text("scanned for Jane Doe\n")  # sorted first: warned first
    return root


def _slices(root: Path) -> list[Path]:
    return sorted(p for p in (root / FOLDER).iterdir() if p.name.startswith("CT"))


@pytest.fixture(scope="session")
def gap_folder(patient_root) -> Path:
    """``root/Doe_Jane_gap/``: the series without a slice in the middle (fails when read)."""
    folder = patient_root / "Doe_Jane_gap"
    folder.mkdir()
    slices = _slices(patient_root)
    by_position = sorted(slices, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    for src in by_position[:8] + by_position[9:]:
        (folder / src.name).write_bytes(src.read_bytes())
    return folder
