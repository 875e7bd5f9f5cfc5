"""`medseg dicom anonymize`, checked with pydicom alone: no original identifier or UID in any
element, pixels untouched, one consistent mapping per series (and per seed), input unchanged."""

from __future__ import annotations

import hashlib

import pydicom
import pytest
from conftest import FOLDER, IDENTIFIERS, leaks, medseg

from medseg.errors import InputError
from medseg.workflows.anonymize import anonymize_folder

# dicognito replaces every person name, the referring physician's too.
ALL_IDENTIFIERS = (*IDENTIFIERS, "House", "Gregory")
UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def element_values(ds: pydicom.Dataset) -> list[str]:
    """Every element's value as text, at any depth, file meta included (pixel data left out)."""
    found = []

    def collect(_, element) -> None:
        if element.VR not in ("SQ", "OB", "OW", "UN") and element.value is not None:
            found.append(str(element.value))

    for part in (ds.file_meta, ds):
        part.walk(collect)
    return found


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def anonymized(patient_root, tmp_path_factory):
    """The patient's folder through the CLI, with a seed; the input's digests before and after."""
    before = digests(patient_root / FOLDER)
    out = tmp_path_factory.mktemp("anon") / "anon"
    proc = medseg("dicom", "anonymize", FOLDER, str(out), "--seed", "s3cret", cwd=patient_root)
    return proc, out, before, digests(patient_root / FOLDER)


def test_prints_counts_and_no_identifier(anonymized):
    proc, out, _, _ = anonymized
    assert proc.returncode == 0, proc.stderr
    assert f"anonymized 20 DICOM files (1 series) -> {out}/; 1 file skipped (not DICOM" in proc.stdout
    assert not leaks(proc.stdout + proc.stderr)


def test_input_unchanged(anonymized):
    _, _, before, after = anonymized
    assert before == after


def test_no_original_value_left(anonymized, patient_root):
    _, out, _, _ = anonymized
    originals = [pydicom.dcmread(p) for p in sorted((patient_root / FOLDER).glob("CT*"))]
    original_uids = {str(ds.get(k)) for ds in originals for k in UIDS}
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 20
    for path in written:
        ds = pydicom.dcmread(path)
        values = element_values(ds)
        assert not leaks(" | ".join(values), ALL_IDENTIFIERS), path.name
        assert not original_uids & set(values)
        assert not any(element.tag.is_private for element in ds)
        assert ds.SeriesDescription == "T1"  # free text keeps what is not an identifier
        assert not leaks(str(path.relative_to(out)))


def test_pixels_untouched_and_uids_consistent(anonymized, patient_root):
    _, out, _, _ = anonymized
    by_position = {}
    for path in (patient_root / FOLDER).glob("CT*"):
        ds = pydicom.dcmread(path)
        by_position[tuple(ds.ImagePositionPatient)] = ds.PixelData
    written = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    for ds in written:
        assert ds.PixelData == by_position[tuple(ds.ImagePositionPatient)]  # bytes, still JPEG 2000
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({str(ds.get(keyword)) for ds in written}) == 1, keyword
    assert len({ds.SOPInstanceUID for ds in written}) == 20
    assert [p.name for p in out.iterdir() if p.is_dir()] == [written[0].SeriesInstanceUID]


@pytest.mark.filterwarnings("ignore::medseg.errors.MedsegWarning")  # notes.txt: skipped
def test_same_seed_same_mapping(patient_root, tmp_path):
    runs = {}
    for name, seed in (("a", "k1"), ("b", "k1"), ("c", "k2")):
        anonymize_folder(patient_root / FOLDER, tmp_path / name, seed=seed)
        runs[name] = sorted(str(p.relative_to(tmp_path / name)) for p in (tmp_path / name).rglob("*.dcm"))
    assert runs["a"] == runs["b"]  # file names are the new UIDs
    assert not set(runs["a"]) & set(runs["c"])


@pytest.mark.filterwarnings("ignore::medseg.errors.MedsegWarning")
def test_output_inside_input_refused(patient_root):
    with pytest.raises(InputError, match="outside the input folder"):
        anonymize_folder(patient_root, patient_root / "anon")
    assert not (patient_root / "anon").exists()
