"""`medseg dicom anonymize`: a de-identified copy of a folder of DICOM files (``medseg.io.deid``).

The input is never modified. The copy is laid out by what is left after de-identification, not
by the input's names (folder and file names often carry the patient's name or ID): one folder per
series named by its new SeriesInstanceUID, one file per object named by its new SOPInstanceUID.
It appears all at once (replacing a previous output of this command, never another folder), or
not at all when a file cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from medseg.errors import InputError
from medseg.io.atomic import atomic_folder
from medseg.io.deid import Deidentifier, burned_in
from medseg.typing import PathLike

# A DICOMDIR lists the input's file paths and patients: it would be wrong and identifying.
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
NO_SERIES = "no-series-uid"


@dataclass
class AnonymizeSummary:
    files: int  # DICOM objects written
    series: int  # series folders written
    skipped: int  # files that are not DICOM, and DICOMDIRs
    burned_in: int  # objects declaring text burned into their pixels (not removed)


def _check_out_dir(in_dir: Path, out_dir: Path) -> None:
    if out_dir.resolve().is_relative_to(in_dir.resolve()):  # a rerun would anonymise the output
        raise InputError(f"{out_dir}: the output folder must be outside the input folder {in_dir}")


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None) or Dataset()
    return str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", ""))


def _target(ds: Dataset, out_dir: Path, index: int) -> Path:
    """Where a de-identified object goes: ``<series UID>/<SOP instance UID>.dcm``."""
    meta = getattr(ds, "file_meta", None) or Dataset()
    sop = str(ds.get("SOPInstanceUID", "") or meta.get("MediaStorageSOPInstanceUID", ""))
    folder = out_dir / (str(ds.get("SeriesInstanceUID", "") or "") or NO_SERIES)
    path = folder / f"{sop or f'{index:06d}'}.dcm"
    n = 1
    while path.exists():  # the same instance twice in the input: keep both copies
        n += 1
        path = folder / f"{sop or f'{index:06d}'}-{n}.dcm"
    return path


def anonymize_folder(in_dir: PathLike, out_dir: PathLike, seed: str | None = None) -> AnonymizeSummary:
    """De-identify every DICOM file below ``in_dir`` into ``out_dir`` (see the module docstring).

    ``seed``: the same seed maps the same values to the same replacements on every run (and in
    `medseg segment --anonymize --seed`), so objects anonymised separately still fit together.
    Anyone holding it can test guesses of the original values: keep it as secret as the data.
    """
    from medseg.io.dicom import read_headers  # the readers' parsing and corruption checks

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise InputError(f"{in_dir}: not a folder of DICOM files")
    headers = read_headers(in_dir)
    _check_out_dir(in_dir, out_dir)  # after reading: the message names folders named after patients
    deidentify = Deidentifier(seed)
    summary = AnonymizeSummary(0, 0, 0, 0)
    with atomic_folder(out_dir) as tmp:  # replaces a previous output, never another folder
        for i, (_, ds) in enumerate(headers):
            headers[i] = None  # saving loads the pixels: hold one file's at a time, not the study's
            if ds is None or _sop_class(ds) == MEDIA_DIRECTORY:
                summary.skipped += 1
                continue
            summary.burned_in += burned_in(ds)
            target = _target(deidentify(ds), tmp, summary.files)
            target.parent.mkdir(exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
            summary.files += 1
        if not summary.files:
            raise InputError(f"{in_dir}: no DICOM files found")
        summary.series = sum(1 for p in tmp.iterdir() if p.is_dir())
    return summary


def format_summary(summary: AnonymizeSummary, out_dir: PathLike) -> str:
    """What `medseg dicom anonymize` prints: counts and the output folder, never a value."""
    plural = "" if summary.skipped == 1 else "s"
    lines = [
        f"anonymized {summary.files} DICOM files ({summary.series} series) -> {out_dir}/; "
        f"{summary.skipped} file{plural} skipped (not DICOM, or a DICOMDIR)"
    ]
    if summary.burned_in:
        lines.append(
            f"warning: {summary.burned_in} files declare text burned into their pixels "
            "(BurnedInAnnotation YES); it is not removed: check them before sharing"
        )
    return "\n".join(lines)
