"""DICOM folders: find the series in a folder tree and read one into ``(array, geometry)``.

pydicom parses and decodes (JPEG2000/JPEG-LS/RLE through the pylibjpeg and pyjpegls plugins);
the grouping, slice ordering and checks are done here because neither pydicom, MONAI's
PydicomReader nor highdicom's ``get_volume_from_series`` names the gap, tilt or mix that makes
a series unusable. Enhanced multi-frame objects are read by highdicom (``dicom_multiframe``).
SimpleITK's ImageSeriesReader and dcm2niix are the references the tests compare against.
"""

from __future__ import annotations

import logging
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from medseg.errors import GeometryError, InputError, MedsegWarning
from medseg.io.dicom_header import check_header_values
from medseg.io.dicom_multiframe import (
    frame_orientation,
    frame_positions,
    functional_group,
    is_multiframe,
    read_multiframe,
)
from medseg.io.dicom_pixels import check_budget, read_volume
from medseg.io.geometry import LPS_TO_RAS, Geometry
from medseg.privacy import remember
from medseg.typing import PathLike

log = logging.getLogger(__name__)

# Slice spacing. Scanners round ImagePositionPatient (a GE oblique MR at 7 mm steps reads 6.96 to
# 7.07 mm), so, as SimpleITK's ImageSeriesReader does, the spacing is the mean step (first to
# last slice over n - 1, along the slice normal), and each step may differ from the typical one by
# rounding jitter: up to 10% or 0.2 mm (dcm2niix's own threshold for "interslice distance
# varies"), whichever is larger. A missing slice (a step near twice the others) or truly variable
# spacing exceeds that and is refused; so is a slice further than a quarter step from its place on
# the uniform grid (a slow drift of steps that each pass). Steps that differ by more than 0.5%
# are read with a warning.
SPACING_RTOL = 0.10
SPACING_ATOL_MM = 0.2
POSITION_RTOL = 0.25
SPACING_WARN_RTOL = 0.005
# Headers are parsed once; larger values (PixelData) are read from the file when needed.
DEFER_SIZE = 4096
# Objects with pixels and positions that are not images to segment: Segmentation, Label Map SEG.
NOT_IMAGES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}


@dataclass
class DicomSeries:
    """Headers (no pixels) of the files of one image series."""

    key: str
    headers: list[Dataset] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return str(self.headers[0].get("Modality", ""))

    @property
    def description(self) -> str:
        return str(self.headers[0].get("SeriesDescription", ""))

    @property
    def multiframe(self) -> bool:
        return is_multiframe(self.headers[0])

    def __len__(self) -> int:
        """Number of slices (frames of a multi-frame object, else files)."""
        return int(self.headers[0].NumberOfFrames) if self.multiframe else len(self.files)

    def orientation(self) -> np.ndarray:
        """ImageOrientationPatient of the first slice: row then column direction cosines (LPS)."""
        if self.multiframe:
            return frame_orientation(self.headers[0])
        return np.asarray(self.headers[0].ImageOrientationPatient, float)

    def normal(self) -> np.ndarray:
        """Unit normal (LPS) of the first slice: row direction x column direction."""
        iop = self.orientation()
        return np.cross(iop[:3], iop[3:])

    def positions(self) -> np.ndarray:
        """ImagePositionPatient of every slice, ``(N, 3)`` in file (or frame) order."""
        if self.multiframe:
            return frame_positions(self.headers[0])
        return np.array([np.asarray(h.ImagePositionPatient, float) for h in self.headers])

    def pixel_spacing(self) -> tuple[float, float]:
        """(row spacing, column spacing) in mm, as DICOM's PixelSpacing."""
        ds = self.headers[0]
        if self.multiframe:
            ds = functional_group(ds, "PixelMeasuresSequence", 0)
        row, col = (float(v) for v in ds.PixelSpacing)
        return row, col


def is_dicom_dir(path: PathLike) -> bool:
    return Path(path).is_dir()


def _series_key(ds: Dataset) -> str:
    if is_multiframe(ds):  # one enhanced object is one volume, even when it shares a series
        return f"{ds.get('SeriesInstanceUID', '')}/{ds.get('SOPInstanceUID', '') or ds.filename}"
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if uid:
        return uid
    # Blank UIDs (anonymised exports, the TotalSegmentator sample): group by what a series shares.
    orientation = tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient", []) or [])
    return "|".join(
        str(x)
        for x in (
            ds.get("FrameOfReferenceUID", ""),
            orientation,
            ds.get("Rows", ""),
            ds.get("Columns", ""),
            ds.get("AcquisitionNumber", ""),
            ds.get("SeriesNumber", ""),
        )
    )


def find_series(folder: PathLike) -> list[DicomSeries]:
    """Group every DICOM image file below ``folder`` into series; non-DICOM files are skipped."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of DICOM files")
    series: dict[str, DicomSeries] = {}
    unplaced: dict[str, Path] = {}  # series key -> an image file without ImagePositionPatient
    for path, ds in read_headers(folder):
        if ds is None or not _is_image(ds):
            if ds is not None and "Rows" in ds and str(ds.get("SOPClassUID", "")) not in NOT_IMAGES:
                unplaced.setdefault(_series_key(ds), path)
            continue  # SR, presentation state, SEG, DICOMDIR...
        entry = series.setdefault(_series_key(ds), DicomSeries(_series_key(ds)))
        entry.headers.append(ds)
        entry.files.append(path)
    _check_unplaced(folder, series, unplaced)
    if not series:
        raise InputError(f"{folder}: no DICOM image files found")
    return sorted(series.values(), key=lambda s: (-len(s), s.key))


def _check_unplaced(folder: Path, series: dict[str, DicomSeries], unplaced: dict[str, Path]) -> None:
    """Images without ImagePositionPatient are skipped (screenshots, secondary captures), unless they
    belong to a series whose other slices have one: skipping that slice would read as a gap."""
    for key, path in unplaced.items():
        if key in series:
            raise GeometryError(
                f"{path}: slice without ImagePositionPatient in a series whose other slices have one "
                "(its place in the volume is unknown); restore the element or remove the file"
            )
    if unplaced and not series:
        path = next(iter(unplaced.values()))
        raise InputError(
            f"{folder}: no DICOM image with a patient position found ({path.name} has pixels but no "
            "ImagePositionPatient)"
        )


# What pydicom raises on a damaged header: the warnings below made errors, EOFError, OSError and
# struct.error (a file that ends inside an element), ValueError, KeyError and TypeError (values it
# cannot parse), BytesLengthException (a value whose length does not fit its VR) and
# NotImplementedError (an unknown VR, e.g. from a flipped byte).
_HEADER_ERRORS = (
    UserWarning,
    EOFError,
    OSError,
    struct.error,
    ValueError,
    KeyError,
    TypeError,
    BytesLengthException,
    NotImplementedError,
)


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file (pixels deferred); ``None`` with a warning for other files.

    pydicom only *warns* when a file ends inside its data set; a file that starts like DICOM
    but is cut short is an error here, because skipping it would turn it into a missing slice.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message=".*(End of file|[Tt]runcated|delimiter)", category=UserWarning
        )
        try:
            ds = remember(pydicom.dcmread(path, defer_size=DEFER_SIZE))  # to scrub from messages
            check_header_values(path, ds)
            return ds
        except InvalidDicomError:  # no DICM preamble: another kind of file
            warnings.warn(f"{path}: skipped, not a DICOM file", MedsegWarning, stacklevel=3)
            return None
        except _HEADER_ERRORS as err:
            reason = str(err).split(" in file ")[0]  # pydicom repeats the file name
            raise InputError(f"{path}: truncated or corrupt DICOM file ({reason})") from None


def read_headers(folder: Path) -> list[tuple[Path, Dataset | None]]:
    """Every file's header (``None`` for other files) in path order. Warnings and the first error
    come once all are read, so that they are scrubbed of the identifiers any file holds
    (``medseg.privacy``): a broken file's path often names the patient in its folder."""
    headers, error = [], None
    # Hidden files are never DICOM objects: .DS_Store, AppleDouble "._" files, medseg's output marker.
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    with warnings.catch_warnings(record=True) as said:
        for path in files:
            try:
                headers.append((path, _read_header(path)))
            except InputError as err:
                error = error or err
    for w in said:
        warnings.warn(w.message, stacklevel=3)  # from find_series' caller, as _read_header does
    if error is not None:
        raise error
    return headers


def _is_image(ds: Dataset) -> bool:
    if "Rows" not in ds or str(ds.get("SOPClassUID", "")) in NOT_IMAGES:
        return False
    return "ImagePositionPatient" in ds or is_multiframe(ds)


def select_series(all_series: list[DicomSeries], folder: PathLike, series: str | int | None) -> DicomSeries:
    """Pick one series: the only one, or the one named by index or (prefix of) its key."""
    if series is None:
        if len(all_series) > 1:
            raise InputError(
                f"{folder}: {len(all_series)} series found; choose one with --series INDEX or UID "
                "(see `medseg dicom ls`)"
            )
        return all_series[0]
    if isinstance(series, int) or str(series).isdigit():
        index = int(series)
        if not 0 <= index < len(all_series):
            raise InputError(f"{folder}: series index {index} out of range (0..{len(all_series) - 1})")
        return all_series[index]
    matches = [s for s in all_series if s.key.startswith(str(series))]
    if len(matches) != 1:
        raise InputError(f"{folder}: series {series!r} matches {len(matches)} series")
    return matches[0]


def _slice_order(series: DicomSeries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort slices by position along the slice normal; return order, normal and positions."""
    orientations = {tuple(np.round(np.asarray(h.ImageOrientationPatient, float), 4)) for h in series.headers}
    if len(orientations) > 1:
        raise GeometryError(f"{series.files[0].parent}: mixed slice orientations in one series")
    sizes = {(int(h.Rows), int(h.Columns)) for h in series.headers}
    if len(sizes) > 1:
        raise GeometryError(f"{series.files[0].parent}: mixed image sizes {sorted(sizes)} in one series")
    spacings = {tuple(np.round(np.asarray(h.PixelSpacing, float), 4)) for h in series.headers}
    if len(spacings) > 1:
        raise GeometryError(
            f"{series.files[0].parent}: mixed pixel spacings {sorted(spacings)} in one series"
        )
    normal, positions = series.normal(), series.positions()
    order = np.argsort(positions @ normal, kind="stable")
    return order, normal, positions[order]


def _slice_step(series: DicomSeries, normal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The LPS vector from one slice to the next (the mean step), after checking the spacing is
    uniform up to rounding jitter (see ``SPACING_RTOL``)."""
    folder = series.files[0].parent
    if len(positions) == 1:
        thickness = float(series.headers[0].get("SliceThickness", 1.0) or 1.0)
        return normal * thickness
    along = positions @ normal
    distances = np.diff(along)
    if np.any(distances < 1e-3):
        raise GeometryError(f"{folder}: two slices share one position along the slice normal")
    _check_uniform(folder, along, distances)
    # A tilted stack drifts off the normal; rounded positions only up to SPACING_ATOL_MM, which
    # misplaces no voxel by more than that, so the grid is kept orthogonal along the normal.
    span = positions[-1] - positions[0]
    length = float(np.dot(span, normal))
    off_normal = np.linalg.norm(span - normal * length)
    if off_normal > SPACING_ATOL_MM:
        angle = np.degrees(np.arctan2(off_normal, length))
        raise GeometryError(
            f"{folder}: gantry tilt of {angle:.2g} degrees (slices are not stacked along their normal); "
            "resample the series to an untilted grid first"
        )
    return normal * length / (len(positions) - 1)


def _check_uniform(folder: Path, along: np.ndarray, distances: np.ndarray) -> None:
    """Refuse a gap or variable spacing; warn about jitter above ``SPACING_WARN_RTOL``."""
    typical = float(np.median(distances))  # robust to the one long step of a missing slice
    deviation = np.abs(distances - typical)
    bad = np.flatnonzero(deviation > max(SPACING_RTOL * typical, SPACING_ATOL_MM))
    if bad.size:
        i = int(bad[0])
        raise GeometryError(
            f"{folder}: non-uniform slice spacing: {distances[i]:.3g} mm between slices {i} and {i + 1} "
            f"(expected {typical:.3g} mm; a missing slice?)"
        )
    mean = (along[-1] - along[0]) / (len(along) - 1)
    drift = np.abs(along - (along[0] + mean * np.arange(len(along))))
    if drift.max() > POSITION_RTOL * mean:
        k = int(drift.argmax())
        raise GeometryError(
            f"{folder}: variable slice spacing: slice {k} lies {drift[k]:.3g} mm from its place on a "
            f"uniform grid of {mean:.3g} mm steps (steps from {distances.min():.3g} "
            f"to {distances.max():.3g} mm)"
        )
    if deviation.max() > SPACING_WARN_RTOL * typical:
        warnings.warn(
            f"{folder}: slice steps vary from {distances.min():.4g} to {distances.max():.4g} mm "
            f"(rounded positions?); using their mean, {mean:.4g} mm",
            MedsegWarning,
            stacklevel=4,
        )


def sorted_slices(series: DicomSeries) -> list[Dataset]:
    """The headers of a single-frame series in the order ``read_series`` stacks them (k = 0, 1...)."""
    order, normal, positions = _slice_order(series)
    _slice_step(series, normal, positions)
    return [series.headers[int(i)] for i in order]


def series_geometry(series: DicomSeries) -> tuple[list[Dataset], Geometry]:
    """Check a single-frame series and return its headers in stacking order (k = 0, 1...) and geometry."""
    order, normal, positions = _slice_order(series)
    step = _slice_step(series, normal, positions)
    iop = series.orientation()
    row_spacing, col_spacing = series.pixel_spacing()
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing  # i runs along a row (columns of the pixel matrix)
    lps[:3, 1] = iop[3:] * row_spacing  # j runs down the rows
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return [series.headers[int(i)] for i in order], Geometry(LPS_TO_RAS @ lps)


def read_series(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """Read one series into an ``(x, y, z)`` array (modality values, HU for CT) and its geometry."""
    named = series.files[0] if series.multiframe else series.files[0].parent
    check_budget(named, series.headers[0], len(series))
    if series.multiframe:
        return read_multiframe(series.headers[0])
    headers, geometry = series_geometry(series)
    volume = read_volume(headers)  # (slices, rows, columns)
    return volume.transpose(2, 1, 0), geometry


def read_dicom_folder(folder: PathLike, series: str | int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read the (only, or chosen) image series in ``folder``."""
    chosen = select_series(find_series(folder), folder, series)
    log.info("reading DICOM series: %d slices, modality %s", len(chosen), chosen.modality or "?")
    return read_series(chosen)
