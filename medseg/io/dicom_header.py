"""The header values medseg reads from every DICOM image, checked once, when the file's header is read.

pydicom parses an element's value only when it is first used, and keeps a value that is not what its
VR says (``RescaleSlope`` "abc", ``ImagePositionPatient`` with two numbers or NaN) with a warning. Used
later, deep in the geometry or rescale code, such a value would fail with a bare ValueError or
TypeError, or become a NaN affine. Here each is parsed and checked while the file's name is at hand,
so a damaged header is one line naming the file and the element.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medseg.errors import GeometryError, InputError

# Integer elements (US, IS) and decimal elements (DS) that medseg reads: keyword -> number of values.
INTEGERS = {
    "Rows": 1,
    "Columns": 1,
    "BitsAllocated": 1,
    "BitsStored": 1,
    "HighBit": 1,
    "PixelRepresentation": 1,
    "SamplesPerPixel": 1,
    "NumberOfFrames": 1,
}
DECIMALS = {
    "ImagePositionPatient": 3,
    "ImageOrientationPatient": 6,
    "PixelSpacing": 2,
    "SliceThickness": 1,
    "RescaleSlope": 1,
    "RescaleIntercept": 1,
}
# What describes an image's pixel matrix besides Rows.
MATRIX = ("Columns", "BitsAllocated")
# What places a single-frame slice besides its position (multi-frame objects keep theirs in
# functional groups).
PLANE = ("ImageOrientationPatient", "PixelSpacing")
# Text elements that group files into series and name them: parsed here so that a damaged one fails
# with the file's name (pydicom raises on an unknown VR only when the value is first used).
TEXTS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "AcquisitionNumber",
    "PhotometricInterpretation",
)


def check_header_values(path: Path, ds: Dataset) -> None:
    """Parse the elements medseg reads; ``InputError`` naming the element when one is not numbers
    of the expected count (finite, and whole for integer elements). Absent or empty ones are left to
    the code that needs them (an image without Rows is not an image; a missing slope is 1)."""
    for keyword in TEXTS:
        ds.get(keyword)
    for table, whole in ((INTEGERS, True), (DECIMALS, False)):
        for keyword, count in table.items():
            value = ds.get(keyword)
            if value is None or value == "":
                continue
            if not _numbers_ok(value, count, whole):
                kind = "whole number" if whole else "finite number"
                raise InputError(
                    f"{path}: damaged DICOM header: {keyword} is {_shown(value)}, expected {count} "
                    f"{kind}{'s' if count > 1 else ''}"
                )
    if "Rows" in ds:  # an image: its pixel matrix must be described
        missing = [keyword for keyword in MATRIX if ds.get(keyword) in (None, "")]
        if missing:
            raise InputError(f"{path}: damaged DICOM header: image without {' or '.join(missing)}")
    if ds.get("ImagePositionPatient"):  # a slice to place: its plane is needed too
        missing = [keyword for keyword in PLANE if not ds.get(keyword)]
        if missing:
            raise GeometryError(f"{path}: slice without {' or '.join(missing)}: it cannot be placed")


def _numbers_ok(value: object, count: int, whole: bool) -> bool:
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):  # text where a number belongs
        return False
    finite = all(math.isfinite(n) for n in numbers)
    return len(numbers) == count and finite and (not whole or all(n.is_integer() for n in numbers))


def _shown(value: object) -> str:
    text = repr(list(value) if isinstance(value, MultiValue) else value)
    return text if len(text) <= 60 else text[:57] + "..."
