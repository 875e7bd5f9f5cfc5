"""Pixel data: medseg's native fast path and rescale against pydicom and a float64 reference."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from medseg.data.synthetic import write_dicom_series
from medseg.errors import InputError
from medseg.io import read_image
from medseg.io.dicom_pixels import apply_rescale, read_volume, stored_values

RNG_SEED = 0


def _native_dataset(allocated: int, stored: int, signed: bool, raw: np.ndarray) -> Dataset:
    """A one-frame image holding ``raw`` as its PixelData bytes, round-tripped through a file."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, stored, stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = raw.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.mark.parametrize(
    ("allocated", "stored", "signed"),
    [(16, 12, False), (16, 12, True), (16, 16, False), (16, 16, True), (8, 8, False), (8, 8, True)],
)
def test_native_values_equal_pydicom(monkeypatch, allocated, stored, signed):
    # Every bit pattern of the allocated width: the bits above BitsStored hold garbage that the
    # reader must mask (unsigned) or replace by the sign bit (signed), as pydicom does.
    raw = np.random.default_rng(RNG_SEED).integers(0, 2**allocated, (6, 10)).astype(f"<u{allocated // 8}")
    assert stored == allocated or np.any(raw >> stored)
    ds = _native_dataset(allocated, stored, signed, raw)
    expected = ds.pixel_array
    # Fail if medseg falls back to pydicom: that would compare pydicom with itself.
    monkeypatch.setattr(Dataset, "pixel_array", property(lambda self: pytest.fail("fell back to pydicom")))
    values = stored_values(ds)
    assert values.dtype == expected.dtype
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize(
    ("allocated", "stored", "signed"),
    [(16, 12, False), (16, 12, True), (16, 16, True), (8, 8, False)],
)
def test_volume_read_from_files_equals_pydicom(tmp_path, allocated, stored, signed):
    """Slices after the first are read from the file straight into the volume: same values."""
    rng = np.random.default_rng(RNG_SEED)
    headers, expected = [], []
    for k in range(3):
        raw = rng.integers(0, 2**allocated, (6, 10)).astype(f"<u{allocated // 8}")
        path = tmp_path / f"{k}.dcm"
        _native_dataset(allocated, stored, signed, raw).save_as(path, enforce_file_format=True)
        expected.append(pydicom.dcmread(path).pixel_array)
        headers.append(pydicom.dcmread(path, defer_size=16))
    np.testing.assert_array_equal(read_volume(headers), np.stack(expected))


def _float64_rescale(stored: np.ndarray, slopes, intercepts) -> np.ndarray:
    slopes, intercepts = np.asarray(slopes, float), np.asarray(intercepts, float)
    return stored.astype(np.float64) * slopes[:, None, None] + intercepts[:, None, None]


def _stored(low: int, high: int, dtype, slices: int = 3) -> np.ndarray:
    stored = np.random.default_rng(RNG_SEED).integers(low, high, (slices, 8, 9)).astype(dtype)
    stored[0, 0, :2] = low, high - 1  # both ends of the range present
    return stored


@pytest.mark.parametrize(
    ("stored", "slopes", "intercepts", "dtype"),
    [
        (_stored(0, 4096, np.uint16), [1, 1, 1], [-1024] * 3, np.int16),  # typical CT
        (_stored(-2000, 3000, np.int16), [1, 1, 1], [-1024] * 3, np.int16),
        (_stored(0, 65536, np.uint16), [1, 1, 1], [-1024] * 3, np.int32),  # beyond int16
        (_stored(-2000, 3000, np.int16), [20, 20, 20], [0] * 3, np.int32),
        (_stored(0, 4096, np.uint16), [1, 2, 3], [-1024, -1000, 0], np.int16),  # per-slice
        (_stored(0, 4096, np.uint16), [1, 5, 9], [-1024, 0, -3000], np.int32),
    ],
    ids=["ct_unsigned", "ct_signed", "uint16_range", "large_slope", "per_slice", "per_slice_wide"],
)
def test_integral_rescale_is_exact_in_the_smallest_int(stored, slopes, intercepts, dtype):
    expected = _float64_rescale(stored, slopes, intercepts)
    values = apply_rescale(stored.copy(), np.array(slopes, float), np.array(intercepts, float))
    assert values.dtype == dtype
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize(
    ("slopes", "intercepts"),
    [([0.5] * 3, [-1024.0] * 3), ([1.0] * 3, [-0.5] * 3), ([0.25, 1.5, 2.0], [-10.0, 0.0, 3.5])],
    ids=["slope", "intercept", "per_slice"],
)
def test_non_integral_rescale_gives_float32(slopes, intercepts):
    stored = _stored(0, 4096, np.uint16)
    expected = _float64_rescale(stored, slopes, intercepts)
    values = apply_rescale(stored.copy(), np.array(slopes), np.array(intercepts))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, expected, rtol=2**-23)  # float32's precision


def test_fractional_slope_series_reads_as_float32(tmp_path):
    stored = np.random.default_rng(RNG_SEED).integers(-1000, 3000, (12, 10, 4)).astype(np.int16)
    write_dicom_series(stored, np.diag([0.8, 0.6, 1.5, 1.0]), tmp_path, rescale=(0.5, -10.0))
    array, _ = read_image(tmp_path)
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, stored.astype(np.float64) * 0.5 - 10.0)  # exact in float32


# OpenJPEG's default 6 resolution levels need 32 pixels a side; the rows differ from columns.
VOLUME_SHAPE = (40, 34, 6)
RESCALE = (1.0, -1024.0)


@pytest.fixture(scope="module")
def native_series(tmp_path_factory) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """A native series with negative stored values, its modality values and LPS affine."""
    stored = np.random.default_rng(RNG_SEED).integers(-1000, 3000, VOLUME_SHAPE).astype(np.int16)
    lps_affine = np.array([[0.8, 0, 0, -20.0], [0, 0.6, 0, 10.0], [0, 0, 1.5, 40.0], [0, 0, 0, 1]])
    files = write_dicom_series(stored, lps_affine, tmp_path_factory.mktemp("native"), rescale=RESCALE)
    return files, stored.astype(np.float64) * RESCALE[0] + RESCALE[1], lps_affine


def _copy_compressed(files: list[Path], folder: Path, syntax) -> list[Path]:
    folder.mkdir()
    copies = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(folder / path.name)
        copies.append(folder / path.name)
    return copies


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: s.keyword)
def test_compressed_series_reads_as_the_written_volume(native_series, tmp_path, syntax):
    files, values, lps_affine = native_series
    copies = _copy_compressed(files, tmp_path / "compressed", syntax)
    assert pydicom.dcmread(copies[0]).file_meta.TransferSyntaxUID == syntax
    array, geometry = read_image(tmp_path / "compressed")
    np.testing.assert_array_equal(array, values)
    np.testing.assert_allclose(geometry.lps_affine(), lps_affine, atol=1e-6)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless], ids=lambda s: s.keyword)
def test_truncated_file_is_named(native_series, tmp_path, syntax):
    files, _, _ = native_series
    if syntax == ExplicitVRLittleEndian:
        shutil.copytree(files[0].parent, tmp_path / "copy")
        copies = [tmp_path / "copy" / p.name for p in files]
    else:
        copies = _copy_compressed(files, tmp_path / "copy", syntax)
    cut = copies[len(copies) // 2]  # a middle slice: skipping it would look like a gap
    pixel_bytes = len(pydicom.dcmread(cut).PixelData)
    data = cut.read_bytes()  # PixelData is the last element: cutting the file cuts it
    cut.write_bytes(data[: len(data) - pixel_bytes // 2])
    with pytest.raises(InputError, match=re.escape(str(cut))):
        read_image(tmp_path / "copy")
