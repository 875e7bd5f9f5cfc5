"""medseg.privacy: which identifiers a header yields, what ``scrub`` removes (and what it leaves),
non-identifying case names, and the CLI's scrubbed output (prints, logs, warnings)."""

from __future__ import annotations

import logging
import sys

import pytest
from conftest import leaks
from pydicom.dataset import Dataset

from medseg.privacy import case_name, identifiers, remember, scrub, scrubbed_output


def header(**values) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


PATIENT = header(
    PatientName="Doe^Jane", PatientID="PID-123456", PatientBirthDate="19800102", AccessionNumber="ACC778899"
)


def test_identifiers_of_a_header():
    found = identifiers(PATIENT)
    assert {"Doe", "Jane", "DoeJane", "JaneDoe", "PID-123456", "123456", "ACC778899"} <= found
    assert {"19800102", "1980-01-02", "02.01.1980", "01/02/1980"} <= found
    assert "PID" not in found  # a part of an ID without a digit says nothing alone
    # Two-letter names and one-digit IDs are too short to remove from every message; run together
    # (as in a folder name) they are not.
    assert identifiers(header(PatientName="Li^Wu", PatientID="7")) == {"LiWu", "WuLi"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data/Doe_Jane_123456/IMG1.dcm", "data/[redacted]_[redacted]_[redacted]/IMG1.dcm"),
        ("DOE JANE pid-123456 T1", "[redacted] [redacted] [redacted] T1"),
        ("JaneDoe CT123456", "[redacted] CT[redacted]"),
        ("born 1980-01-02 (02.01.1980)", "born [redacted] ([redacted])"),
        ("Does Janet 1234567 ACC7788990", "Does Janet 1234567 ACC7788990"),  # other words and numbers
    ],
)
def test_scrub(text, expected):
    remember(PATIENT)
    assert scrub(text) == expected


def test_scrub_without_identifiers_changes_nothing():
    assert scrub("liver 1.2 mL") == "liver 1.2 mL"


def test_case_name_is_stable_and_says_nothing():
    assert case_name("Doe_Jane", "/data/Doe_Jane") == "Doe_Jane"  # nothing known yet
    remember(PATIENT)
    name = case_name("Doe_Jane", "/data/Doe_Jane")
    assert name.startswith("case-") and not leaks(name)
    assert case_name("Doe_Jane", "/data/Doe_Jane") == name  # --resume finds the same outputs
    assert case_name("Doe_Jane", "/data/Doe_Jane/2") != name
    assert case_name("abdomen_ct", "/data/abdomen_ct") == "abdomen_ct"


def test_scrubbed_output_covers_prints_logs_and_warnings(capsys):
    remember(PATIENT)
    with scrubbed_output():
        handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig makes it in the CLI
        log = logging.getLogger("medseg.test_privacy")
        log.addHandler(handler)
        try:
            print("case Doe_Jane: done")
            log.warning("reading %s", "PID-123456")
            print("medseg: warning: Jane Doe/x.txt: skipped", file=sys.stderr)  # as the CLI shows them
        finally:
            log.removeHandler(handler)
    out, err = capsys.readouterr()
    assert "case [redacted]_[redacted]: done" in out
    assert "reading [redacted]" in err and "skipped" in err
    assert not leaks(out + err)


def test_a_broken_file_is_reported_once_every_header_is_known(patient_root, monkeypatch):
    """The first file is refused, but its error (which names the patient's folder) is raised only
    after the other headers were read: the CLI can then scrub it."""
    from conftest import FOLDER

    import medseg.io.dicom as dicom
    from medseg.errors import InputError

    read = dicom._read_header
    first = sorted((patient_root / FOLDER).iterdir())[0]

    def refuse_first(path):
        if path == first:
            raise InputError(f"{path}: truncated or corrupt DICOM file")
        return read(path)

    monkeypatch.setattr(dicom, "_read_header", refuse_first)
    with pytest.raises(InputError) as raised:
        dicom.find_series(patient_root / FOLDER)
    assert FOLDER in str(raised.value) and not leaks(scrub(raised.value))
