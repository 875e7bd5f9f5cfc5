"""DICOM folders: find the series in a folder tree and read one into ``(array, geometry)``.

pydicom decodes the pixels (JPEG2000/JPEG-LS/RLE through the pylibjpeg plugins); the
grouping, slice ordering and affine are done here because neither pydicom nor MONAI's
PydicomReader sorts along the slice normal or refuses gaps. SimpleITK's ImageSeriesReader
is the reference the tests compare against.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medseg.errors import GeometryError, InputError
from medseg.io.geometry import LPS_TO_RAS, Geometry
from medseg.typing import PathLike

log = logging.getLogger(__name__)

# Relative tolerance on slice spacing before a series counts as non-uniform (a gap).
SPACING_RTOL = 0.01


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

    def __len__(self) -> int:
        return len(self.files)

    def normal(self) -> np.ndarray:
        """Unit normal (LPS) of the first slice: row direction x column direction."""
        iop = np.asarray(self.headers[0].ImageOrientationPatient, float)
        return np.cross(iop[:3], iop[3:])

    def positions(self) -> np.ndarray:
        """ImagePositionPatient of every file, ``(N, 3)`` in file order."""
        return np.array([np.asarray(h.ImagePositionPatient, float) for h in self.headers])


def is_dicom_dir(path: PathLike) -> bool:
    return Path(path).is_dir()


def _series_key(ds: Dataset) -> str:
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
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as err:
            warnings.warn(f"{path}: skipped, not a DICOM file ({type(err).__name__})", stacklevel=2)
            continue
        if "ImagePositionPatient" not in ds or "Rows" not in ds:
            continue  # not an image slice (SR, presentation state, DICOMDIR...)
        entry = series.setdefault(_series_key(ds), DicomSeries(_series_key(ds)))
        entry.headers.append(ds)
        entry.files.append(path)
    if not series:
        raise InputError(f"{folder}: no DICOM image files found")
    return sorted(series.values(), key=lambda s: (-len(s), s.key))


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
    normal, positions = series.normal(), series.positions()
    order = np.argsort(positions @ normal, kind="stable")
    return order, normal, positions[order]


def _slice_step(series: DicomSeries, normal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The LPS vector from one slice to the next, after checking the spacing is uniform."""
    folder = series.files[0].parent
    if len(positions) == 1:
        thickness = float(series.headers[0].get("SliceThickness", 1.0) or 1.0)
        return normal * thickness
    distances = np.diff(positions @ normal)
    if np.any(distances < 1e-3):
        raise GeometryError(f"{folder}: two slices share one position along the slice normal")
    step = float(np.median(distances))
    bad = np.flatnonzero(np.abs(distances - step) > SPACING_RTOL * step)
    if bad.size:
        i = int(bad[0])
        raise GeometryError(
            f"{folder}: non-uniform slice spacing: {distances[i]:.3g} mm between slices {i} and {i + 1} "
            f"(expected {step:.3g} mm; a missing slice?)"
        )
    step_vector = (positions[-1] - positions[0]) / (len(positions) - 1)
    off_normal = np.linalg.norm(step_vector - normal * np.dot(step_vector, normal))
    if off_normal > 1e-3 * max(step, 1.0):
        angle = np.degrees(np.arctan2(off_normal, np.dot(step_vector, normal)))
        raise GeometryError(
            f"{folder}: gantry tilt of {angle:.2g} degrees (slices are not stacked along their normal); "
            "resample the series to an untilted grid first"
        )
    return step_vector


def _pixels(path: Path) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for truncated or undecodable data
        raise InputError(f"{path}: cannot decode DICOM pixel data ({type(err).__name__}: {err})") from None
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        pixels = pixels.astype(np.float32) * slope + intercept
    return pixels


def read_series(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """Read one series into an ``(x, y, z)`` array (modality values, HU for CT) and its geometry."""
    order, normal, positions = _slice_order(series)
    step = _slice_step(series, normal, positions)
    first = series.headers[int(order[0])]
    iop = np.asarray(first.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing  # i runs along a row (columns of the pixel matrix)
    lps[:3, 1] = iop[3:] * row_spacing  # j runs down the rows
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    slices = [_pixels(series.files[int(i)]).T for i in order]
    volume = np.stack(slices, axis=-1)
    if volume.dtype.kind == "f" and np.all(np.mod(volume, 1) == 0) and np.abs(volume).max() < 32768:
        volume = volume.astype(np.int16)
    return volume, Geometry(LPS_TO_RAS @ lps)


def read_dicom_folder(folder: PathLike, series: str | int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read the (only, or chosen) image series in ``folder``."""
    chosen = select_series(find_series(folder), folder, series)
    log.info("reading DICOM series: %d slices, modality %s", len(chosen), chosen.modality or "?")
    return read_series(chosen)
