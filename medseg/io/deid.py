"""De-identify DICOM objects: dicognito, then what it leaves (private elements, free text).

dicognito (MIT, maintained) does the de-identification proper, consistently across all the files
one ``Deidentifier`` sees: every UID except class and transfer syntax UIDs, every person name, the
patient and study IDs, accession and order numbers, institution, station and address, and every
date and time shifted by one offset into the past (intervals and ages are kept). With a ``seed`` it
maps each value to the same replacement in every run, so a SEG anonymised with the seed that
anonymised its source series still references that series, study and frame of reference.

It leaves two things that the PS3.15 basic profile does not keep, done here without a hand-kept
list of tags: private elements are removed (the profile's default), and free text (descriptions,
comments, protocol names: VRs SH, LO, ST, LT, UT, UC) loses every identifier of the object's own
patient and of every person it names (``medseg.privacy``), so "Doe Jane 12345 T1" becomes "T1".
Pixels are not touched: text burned into them stays (``burned_in`` says which objects declare it).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from medseg.io.atomic import atomic_path
from medseg.privacy import compile_pattern, identifiers, name_tokens
from medseg.typing import PathLike

TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "UC"}


def person_names(ds: Dataset) -> set[str]:
    """Name words of every person element (PN) at any depth: physicians and operators too."""
    found: set[str] = set()

    def collect(_: Dataset, element: DataElement) -> None:
        if element.VR == "PN" and element.value:
            values = element.value if element.VM > 1 else [element.value]
            for value in values:
                found.update(name_tokens(str(value)))

    ds.walk(collect)
    return found


def _clean(text: str, pattern: re.Pattern) -> str:
    """``text`` without the identifiers (not even a marker: SH holds 16 characters)."""
    return " ".join(pattern.sub(" ", text).split())


def scrub_text_elements(ds: Dataset, pattern: re.Pattern) -> None:
    """Remove the identifiers ``pattern`` matches from every free-text element, at any depth."""

    def clean(_: Dataset, element: DataElement) -> None:
        if element.VR not in TEXT_VRS or not element.value:
            return
        if element.VM > 1:
            element.value = [_clean(str(v), pattern) for v in element.value]
        else:
            element.value = _clean(str(element.value), pattern)

    ds.walk(clean)


def burned_in(ds: Dataset) -> bool:
    """The object says its pixels hold text (a name on a scanned form, a screenshot)."""
    return str(ds.get("BurnedInAnnotation", "")).upper() == "YES"


class Deidentifier:
    """One anonymisation mapping: use one instance for all files that must stay consistent."""

    def __init__(self, seed: str | None = None) -> None:
        from dicognito.anonymizer import Anonymizer  # imported on use: only these commands need it

        # Without a seed dicognito draws a random one: the mapping is then unique to this run.
        self._anonymizer = Anonymizer(seed=seed)

    def __call__(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and return it)."""
        # Collected first: dicognito replaces the very values the free text must be cleaned of.
        pattern = compile_pattern(identifiers(ds) | person_names(ds))
        self._anonymizer.anonymize(ds)
        ds.remove_private_tags()
        if pattern is not None:
            scrub_text_elements(ds, pattern)
        return ds

    def file(self, path: PathLike, out_path: PathLike | None = None) -> Path:
        """De-identify a DICOM file into ``out_path`` (default: in place), written atomically."""
        import pydicom

        out_path = Path(out_path or path)
        ds = self(pydicom.dcmread(path))
        with atomic_path(out_path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        return out_path
