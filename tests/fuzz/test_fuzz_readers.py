"""Bounded, derandomised fuzz of the readers: valid small NIfTI, NRRD/MetaImage, DICOM and TIFF files,
mutated (header fields changed, bytes flipped, the file cut), are read by ``read_image``. The only
allowed outcomes: an array and a finite affine, or a ``MedsegError`` whose message is one line naming
the file. Derandomised with no example database, so every run (and CI) tries the same inputs; the
number of examples bounds the time (seconds for all four readers)."""

from __future__ import annotations

import functools
import gzip
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from corpus import make_corpus as seeds_of
from fuzz.mutate import (
    EXECUTIONS,
    MHA_KEYS,
    NRRD_KEYS,
    apply_edits,
    apply_packed,
    apply_text_fields,
    byte_edits,
    dicom_field_edits,
    nifti_field_edits,
    text_field_edits,
    tiff_field_edits,
    tiff_inline_fields,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag

from medseg.errors import MedsegError
from medseg.io.registry import read_image

# Examples per reader: about 20 s for all four on 2 quiet cores (twice that under load).
EXAMPLES = {"nifti": 2000, "nrrd": 1500, "dicom": 1000, "tiff": 2000}
# Damaged files make the libraries warn by the hundred; what is tested is how each read ends.
pytestmark = pytest.mark.filterwarnings("ignore")


def fuzz_settings(reader: str):
    return settings(
        max_examples=EXAMPLES[reader],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],  # a DICOM example writes two files
    )


@functools.cache
def seeds() -> dict[str, object]:
    """The valid files every mutation starts from (a function, not a fixture: hypothesis would print
    a fixture's value with every failing example)."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz_seeds_"))
    tiff = seeds_of.write_tiff(folder / "seed.tif")
    found = {
        "nifti": seeds_of.write_nifti(folder / "seed.nii").read_bytes(),
        "nrrd": seeds_of.write_nrrd(folder / "seed.nrrd").read_bytes(),
        "mha": seeds_of.write_nrrd(folder / "seed.mha").read_bytes(),
        "dicom": [p.read_bytes() for p in seeds_of.write_dicom(folder / "dicom", slices=2)],
        "tiff": tiff.read_bytes(),
        "tiff_fields": tiff_inline_fields(tiff),
    }
    shutil.rmtree(folder)
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_read(path: Path, reader: str) -> None:
    """Read ``path``: an array with a finite affine, or a one-line MedsegError naming it."""
    EXECUTIONS[reader] += 1
    try:
        array, geometry = read_image(path)
    except MedsegError as err:
        message = str(err)
        assert "\n" not in message, message
        assert str(path) in message, message  # the file, or a DICOM folder (or a file in it)
        return
    assert array.ndim >= 2 and all(n > 0 for n in array.shape), array.shape
    assert np.isfinite(geometry.affine).all(), geometry.affine


@fuzz_settings("nifti")
@given(gzipped=st.booleans(), fields=nifti_field_edits(), edits=byte_edits())
def test_fuzz_nifti(workdir, gzipped, fields, edits):
    data = apply_packed(seeds()["nifti"], fields)
    path = workdir / ("case.nii.gz" if gzipped else "case.nii")
    path.write_bytes(apply_edits(gzip.compress(data, mtime=0) if gzipped else data, edits))
    check_read(path, "nifti")


@fuzz_settings("nrrd")
@given(kind=st.sampled_from(["nrrd", "mha"]), data=st.data(), edits=byte_edits())
def test_fuzz_nrrd_and_metaimage(workdir, kind, data, edits):
    keys, separator = (NRRD_KEYS, ": ") if kind == "nrrd" else (MHA_KEYS, " = ")
    mutated = apply_text_fields(seeds()[kind], data.draw(text_field_edits(keys)), separator)
    path = workdir / f"case.{kind}"
    path.write_bytes(apply_edits(mutated, edits))
    check_read(path, "nrrd")


def _set(ds: pydicom.Dataset, keyword: str, value: object) -> None:
    """Set an element to ``value`` as it would stand in a file: text values (valid for their VR or
    not) as raw bytes, which pydicom writes unparsed; None deletes the element."""
    tag = tag_for_keyword(keyword)
    if value is None:
        ds.pop(tag, None)
    elif isinstance(value, bytes):
        ds.add_new(tag, "OW", value)
    elif isinstance(value, int):
        setattr(ds, keyword, value)
    else:
        raw = ("\\".join(value) if isinstance(value, list) else str(value)).encode()
        raw += b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(Tag(tag), dictionary_VR(tag), len(raw), raw, 0, False, True)


def _edit_dicom(data: bytes, edits: list[tuple[str, object]]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in edits:
        _set(ds.file_meta if keyword == "TransferSyntaxUID" else ds, keyword, value)
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_transfer_syntax and syntax.is_compressed and "PixelData" in ds:
        ds.PixelData = encapsulate([ds.PixelData or b"\0\0"])  # as compressed data is held (bytes raw)
    out = io.BytesIO()
    with pydicom.config.disable_value_validation():
        ds.save_as(out)  # the edited values as they are, unchecked
    return out.getvalue()


@fuzz_settings("dicom")
@given(which=st.integers(0, 1), fields=dicom_field_edits(), edits=byte_edits())
def test_fuzz_dicom(workdir, which, fields, edits):
    folder = workdir / "series"
    folder.mkdir(exist_ok=True)
    for k, data in enumerate(seeds()["dicom"]):
        if k == which:
            data = apply_edits(_edit_dicom(data, fields), edits)
        (folder / f"slice_{k}.dcm").write_bytes(data)
    check_read(folder, "dicom")


@fuzz_settings("tiff")
@given(data=st.data(), edits=byte_edits())
def test_fuzz_tiff(workdir, data, edits):
    fields = data.draw(tiff_field_edits(seeds()["tiff_fields"]))
    path = workdir / "case.tif"
    path.write_bytes(apply_edits(apply_packed(seeds()["tiff"], fields), edits))
    check_read(path, "tiff")
