"""DICOM SEG from a label map and its source series, with highdicom.

highdicom builds the Segmentation object (patient/study copied from the source, per-frame
references to the source instances, plane positions, binary frames). What this module adds is
the mapping from a medseg label map (``(x, y, z)`` + RAS geometry) onto the source frames,
checked so that a mask can only be written where it lands exactly on the scan, the SNOMED CT
codes of each label (``dicom_codes``), and leaving empty labels out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from medseg.errors import GeometryError, InputError
from medseg.io.atomic import atomic_path
from medseg.io.dicom import DicomSeries
from medseg.io.dicom_codes import segment_codes
from medseg.io.geometry import Geometry
from medseg.typing import PathLike

log = logging.getLogger(__name__)

REQUIRED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "FrameOfReferenceUID",
)
# Positions within this many mm (or this fraction of a voxel) count as the same grid point.
GRID_ATOL = 1e-3


def check_seg_source(series: DicomSeries) -> None:
    """A SEG must reference its source instances: refuse series exported without UIDs."""
    for ds in series.headers:
        missing = [uid for uid in REQUIRED_UIDS if not str(ds.get(uid, "") or "")]
        if missing:
            raise InputError(
                f"{ds.filename}: blank {', '.join(missing)}; a DICOM SEG must reference the source "
                "images by UID, so this export cannot get one (use --format nifti)"
            )


def source_frames(label: np.ndarray, geometry: Geometry, series: DicomSeries) -> np.ndarray:
    """The label map cut into the source's frames, in the order highdicom expects them.

    One ``(rows, cols)`` frame per source file (single-frame series, in ``series.files`` order)
    or per frame (one multi-frame object). Every source frame must be a slice of the label grid.
    """
    lps = geometry.lps_affine()
    row_dir, col_dir = series.orientation()[:3], series.orientation()[3:]
    row_spacing, col_spacing = series.pixel_spacing()
    if not (
        np.allclose(lps[:3, 0], row_dir * col_spacing, atol=GRID_ATOL)
        and np.allclose(lps[:3, 1], col_dir * row_spacing, atol=GRID_ATOL)
    ):
        raise GeometryError(
            "label map rows/columns do not run along the source images' (orientation or spacing)"
        )
    if label.shape[:2] != (int(series.headers[0].Columns), int(series.headers[0].Rows)):
        raise GeometryError(f"label map of shape {label.shape} does not match the source image size")
    if label.ndim != 3 or label.shape[2] != len(series):  # a gap-free series has one slice per frame
        raise GeometryError(
            f"label map of shape {label.shape} has not one slice per source image ({len(series)})"
        )
    positions = np.c_[series.positions(), np.ones(len(series))]
    index = (np.linalg.inv(lps) @ positions.T).T[:, :3]
    k = np.rint(index[:, 2]).astype(int)
    off_grid = np.abs(index[:, :2]).max(1) > GRID_ATOL
    if (
        off_grid.any()
        or np.abs(index[:, 2] - k).max() > GRID_ATOL
        or k.min() < 0
        or k.max() >= label.shape[2]
    ):
        raise GeometryError("label map is not on the source series' grid (resample it onto the series first)")
    return np.ascontiguousarray(label[:, :, k].transpose(2, 1, 0))


def present_labels(frames: np.ndarray, names: Mapping[int, str]) -> list[int]:
    """The non-zero label values in ``frames``, each of which must have a name."""
    present = [int(v) for v in np.unique(frames) if v != 0]
    unnamed = [v for v in present if v not in names]
    if unnamed:
        raise InputError(f"label values {unnamed} have no names (known: {sorted(names)})")
    return present


def _segment_description(number: int, name: str, algorithm: hd.AlgorithmIdentificationSequence) -> Dataset:
    coded = segment_codes(name)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=coded.category,
        segmented_property_type=coded.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[coded.anatomic_region] if coded.anatomic_region else None,
        display_color=hd.color.CIELabColor.from_rgb(*palette(number)),
    )
    if coded.modifier is not None:  # highdicom has no argument for it; the standard attribute
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(coded.modifier)
        ]
    return description


def palette(number: int) -> tuple[int, int, int]:
    """The overlay PNG's colours (matplotlib tab10), so viewers show the same colours."""
    import matplotlib

    rgb = matplotlib.colormaps["tab10"].colors[(number - 1) % 10]
    return tuple(int(round(255 * c)) for c in rgb)


def write_seg(
    label: np.ndarray,
    geometry: Geometry,
    series: DicomSeries,
    names: Mapping[int, str],
    out_path: PathLike,
    *,
    algorithm_name: str = "medseg",
    algorithm_version: str = "0",
) -> Path | None:
    """Write ``label`` (on the grid of ``series``) as a binary DICOM SEG; ``None`` if it is empty.

    ``names`` maps label values to names (``{1: "spleen", ...}``). Labels without voxels are left
    out; the segment numbers of the others are 1, 2, ... in label order.
    """
    check_seg_source(series)
    frames = source_frames(label, geometry, series)
    present = present_labels(frames, names)
    if not present:
        log.info("no labelled voxels: no SEG written")
        return None
    lut = np.zeros(int(frames.max()) + 1, np.uint16)
    lut[present] = np.arange(1, len(present) + 1)
    return _save_seg(
        lut[frames], [names[v] for v in present], series, out_path, algorithm_name, algorithm_version
    )


def write_seg_regions(
    regions: np.ndarray,
    geometry: Geometry,
    series: DicomSeries,
    names: Mapping[int, str],
    out_path: PathLike,
    *,
    algorithm_name: str = "medseg",
    algorithm_version: str = "0",
) -> Path | None:
    """Write overlapping binary ``regions`` ``(R, *grid)`` (region ``r`` named ``names[r + 1]``) as
    a SEG with one, possibly overlapping, segment per region that has voxels; ``None`` if none has."""
    check_seg_source(series)
    frames = np.stack([source_frames(r.astype(np.uint8), geometry, series) for r in regions], axis=-1)
    present = [r for r in range(len(regions)) if frames[..., r].any()]
    if not present:
        log.info("no region has voxels: no SEG written")
        return None
    chosen = [names.get(r + 1, f"region_{r + 1}") for r in present]
    return _save_seg(frames[..., present], chosen, series, out_path, algorithm_name, algorithm_version)


def _save_seg(
    pixel_array: np.ndarray,
    names: list[str],
    series: DicomSeries,
    out_path: PathLike,
    algorithm_name: str,
    algorithm_version: str,
) -> Path:
    """A binary SEG: ``pixel_array`` is (frames, rows, cols) of segment numbers 1..N, or
    (frames, rows, cols, N) of 0/1 (segments may then overlap)."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    first = series.headers[0]
    seg = hd.seg.Segmentation(
        source_images=series.headers,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment_description(i + 1, name, algorithm) for i, name in enumerate(names)],
        series_instance_uid=generate_uid(),
        series_number=int(first.get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="0",
        series_description=f"Segmentation ({algorithm_name})",
        content_label="SEGMENTATION",
        content_description=f"{algorithm_name} automatic segmentation",
    )
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
    return Path(out_path)
