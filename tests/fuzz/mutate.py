"""Mutations for the reader fuzz: byte flips and truncation, and changes of one header field per format.

Field changes reach what byte flips rarely do on their own: a dimension of 0 or 32767, a NaN pixel
size, an unknown type, a deleted DICOM element. The values are the ones readers get wrong: zero,
negative, huge, NaN, infinite, the wrong kind.
"""

from __future__ import annotations

import re
import struct
from collections import Counter

from hypothesis import strategies as st
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

# Reader executions per fuzz test in this run (reported at the end of the run by conftest.py).
EXECUTIONS: Counter[str] = Counter()

INT16 = [-32768, -1, 0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 256, 1024, 32767]
FLOAT32 = [0.0, -1.0, 0.5, 1.0, 1e-30, 1e30, float("nan"), float("inf"), float("-inf")]
UINT = [0, 1, 2, 3, 4, 7, 8, 16, 32, 64, 255, 65535]


def byte_edits() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Up to four edits: ``("flip", position, new byte)`` or ``("cut", position, 0)``; positions wrap."""
    kind = st.sampled_from(["flip", "flip", "flip", "cut"])
    edit = st.tuples(kind, st.integers(0, 1 << 20), st.integers(0, 255))
    return st.lists(edit, max_size=4)


def apply_edits(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        if kind == "flip":
            out[position % len(out)] = value
        else:
            del out[position % len(out) :]
    return bytes(out)


# NIfTI-1 header fields: (byte offset, struct format) for dim[0..7], datatype, bitpix, pixdim[0..7],
# vox_offset, scl_slope, scl_inter, qform_code, sform_code, quatern_b/c/d, qoffset_x/y/z, srow_x/y/z.
NIFTI_FIELDS = (
    [(40 + 2 * i, "<h") for i in range(8)]
    + [(70, "<h"), (72, "<h")]
    + [(76 + 4 * i, "<f") for i in range(8)]
    + [(108, "<f"), (112, "<f"), (116, "<f"), (252, "<h"), (254, "<h")]
    + [(256 + 4 * i, "<f") for i in range(6)]
    + [(280 + 4 * i, "<f") for i in range(12)]
)


@st.composite
def nifti_field_edits(draw) -> list[tuple[int, str, float]]:
    edits = []
    for offset, fmt in draw(st.lists(st.sampled_from(NIFTI_FIELDS), max_size=3)):
        edits.append((offset, fmt, draw(st.sampled_from(INT16 if fmt == "<h" else FLOAT32))))
    return edits


# Text headers: NRRD ("key: value") and MetaImage ("Key = Value") fields, and values to put there.
NRRD_KEYS = ["type", "dimension", "sizes", "space directions", "endian", "encoding", "kinds", "space"]
MHA_KEYS = ["NDims", "DimSize", "ElementType", "ElementSpacing", "TransformMatrix", "Offset"]
MHA_KEYS += ["BinaryDataByteOrderMSB", "CompressedData", "ElementNumberOfChannels", "HeaderSize"]
TOKENS = [
    "", "0", "-1", "1", "2", "4", "7", "nan", "inf", "1e30", "6 5", "6 5 4 3", "0 5 4", "60000 60000 60000",
    "float", "uchar", "double", "MET_FLOAT", "MET_UCHAR", "bogus", "gzip", "raw", "hex", "big", "True",
    "(nan,0,0) (0,1,0) (0,0,1)", "(0,0,0) (0,0,0) (0,0,0)", "(1,0,0) (1,0,0) (0,0,1)", "none (1,0,0) (0,1,0)",
    "1 0 0 0 0 0 0 0 1", "nan nan nan", "0 0 0", "domain domain", "list domain domain domain",
]  # fmt: skip


@st.composite
def text_field_edits(draw, keys: list[str]) -> list[tuple[str, str]]:
    return draw(st.lists(st.tuples(st.sampled_from(keys), st.sampled_from(TOKENS)), max_size=3))


def apply_text_fields(data: bytes, edits: list[tuple[str, str]], separator: str) -> bytes:
    """Replace the value of each named header line (the binary data after the header is kept)."""
    for key, value in edits:
        pattern = re.compile(rf"^{re.escape(key)}{re.escape(separator)}[^\n]*$".encode(), re.M)
        data = pattern.sub(f"{key}{separator}{value}".encode().replace(b"\\", b"\\\\"), data, count=1)
    return data


# DICOM elements a reader trusts, and values to give them (None deletes the element).
DICOM_VALUES: dict[str, list] = {
    "Rows": [0, 1, 5, 6, 7, 65535, None],
    "Columns": [0, 1, 5, 6, 7, 65535, None],
    "BitsAllocated": [0, 1, 7, 8, 12, 32, 64, None],
    "BitsStored": [0, 1, 8, 12, 17, 40, None],
    "HighBit": [0, 7, 15, 31, None],
    "PixelRepresentation": [0, 1, 2, None],
    "SamplesPerPixel": [0, 1, 3, 4, None],
    "PhotometricInterpretation": ["RGB", "MONOCHROME1", "PALETTE COLOR", "YBR_FULL", "", None],
    "NumberOfFrames": ["0", "1", "2", "-1", "1000000", "x", None],
    "ImagePositionPatient": [["nan", "0", "0"], ["0", "0"], ["inf", "0", "0"], ["0", "0", "4"], None],
    "ImageOrientationPatient": [["0"] * 6, ["1", "0", "0", "1", "0", "0"], ["nan"] * 6, ["1", "0"], None],
    "PixelSpacing": [["0", "0"], ["-1", "1"], ["nan", "1"], ["1"], None],
    "SliceThickness": ["0", "-2", "nan", None],
    "RescaleSlope": ["0", "nan", "1e308", "-1", "abc", None],
    "RescaleIntercept": ["nan", "1e308", "-1024", None],
    "PixelData": [b"", b"\x00", b"\x00" * 59, b"\x00" * 61, b"\xff" * 120, None],
    # JPEG baseline, RLE, JPEG 2000, and a UID no library knows (big endian: pydicom will not write it)
    "TransferSyntaxUID": [JPEGBaseline8Bit, RLELossless, JPEG2000Lossless, "1.2.3.4"],
}


@st.composite
def dicom_field_edits(draw) -> list[tuple[str, object]]:
    edits = []
    for keyword in draw(st.lists(st.sampled_from(sorted(DICOM_VALUES)), max_size=3)):
        edits.append((keyword, draw(st.sampled_from(DICOM_VALUES[keyword]))))
    return edits


# TIFF tags that are one inline SHORT or LONG value in the seed: (tag value's byte offset, format).
def tiff_inline_fields(path) -> list[tuple[int, str]]:
    import tifffile

    fields = []
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            for tag in page.tags:
                if tag.count == 1 and tag.dtype in (3, 4):  # SHORT, LONG
                    fields.append((tag.valueoffset, "<H" if tag.dtype == 3 else "<I"))
    return fields


@st.composite
def tiff_field_edits(draw, fields: list[tuple[int, str]]) -> list[tuple[int, str, int]]:
    edits = []
    for offset, fmt in draw(st.lists(st.sampled_from(fields), max_size=3)):
        values = UINT + ([65536, 1 << 20, (1 << 32) - 1] if fmt == "<I" else [])
        edits.append((offset, fmt, draw(st.sampled_from(values))))
    return edits


def apply_packed(data: bytes, edits: list[tuple[int, str, float]]) -> bytes:
    """Binary header fields (NIfTI, TIFF) set to the drawn values."""
    out = bytearray(data)
    for offset, fmt, value in edits:
        struct.pack_into(fmt, out, offset, value)
    return bytes(out)
