"""Coded concepts (SNOMED CT) for segment labels, as DICOM SEG and viewers expect them.

pydicom's code dictionary (``pydicom.sr.codedict.codes.SCT``) holds the SNOMED CT concepts of
DICOM's context groups, keyed by CamelCase meaning (``Liver``, ``SmallIntestine``). A label
name such as ``kidney_left`` is looked up there after splitting off its laterality, which
becomes a property type modifier (SCT Left/Right), the way dcmqi and TotalSegmentator code
their segments. Tumour words give a "Morphologically Altered Structure". Names it cannot code
fall back to a generic anatomical structure, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

log = logging.getLogger(__name__)

ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = Code("49755003", "SCT", "Morphologically Altered Structure")
LATERALITY = {"left": Code("7771000", "SCT", "Left"), "right": Code("24028007", "SCT", "Right")}
ABNORMALITY = {
    "tumor": Code("108369006", "SCT", "Neoplasm"),
    "tumour": Code("108369006", "SCT", "Neoplasm"),
    "neoplasm": Code("108369006", "SCT", "Neoplasm"),
    "cancer": Code("108369006", "SCT", "Neoplasm"),
    "metastasis": Code("14799000", "SCT", "Secondary malignant neoplasm"),
    "lesion": Code("52988006", "SCT", "Lesion"),
    "mass": Code("4147007", "SCT", "Mass"),
    "cyst": Code("441457006", "SCT", "Cyst"),
}


@dataclass(frozen=True)
class SegmentCodes:
    category: Code
    property_type: Code
    modifier: Code | None = None  # laterality of the property type
    anatomic_region: Code | None = None  # where an abnormality lies (liver_tumor -> Liver)


def _sct(words: list[str]) -> Code | None:
    return getattr(codes.SCT, "".join(w.capitalize() for w in words), None) if words else None


def segment_codes(name: str) -> SegmentCodes:
    """SNOMED CT category, type and modifiers for a label name like ``liver`` or ``kidney_left``."""
    words = name.lower().replace("-", "_").replace(" ", "_").split("_")
    side = next((LATERALITY[w] for w in words if w in LATERALITY), None)
    words = [w for w in words if w and w not in LATERALITY]
    abnormal = next((ABNORMALITY[w] for w in words if w in ABNORMALITY), None)
    if abnormal is not None:
        region = _sct([w for w in words if w not in ABNORMALITY])
        return SegmentCodes(MORPHOLOGICALLY_ALTERED, abnormal, None, region)
    structure = _sct(words)
    if structure is None:
        log.warning("no SNOMED CT code for label %r; coded as a generic anatomical structure", name)
        return SegmentCodes(ANATOMICAL_STRUCTURE, ANATOMICAL_STRUCTURE, side)
    return SegmentCodes(ANATOMICAL_STRUCTURE, structure, side)
