"""`medseg dicom ls` (what series a folder holds, without patient identifiers) and `medseg dicom
seg` (an existing label map as a DICOM SEG)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from medseg.errors import GeometryError, InputError
from medseg.io import label_to_grid, read_image
from medseg.io.dicom import DicomSeries, find_series, read_series, select_series
from medseg.io.dicom_seg import check_seg_source, write_seg
from medseg.privacy import scrub
from medseg.typing import PathLike

log = logging.getLogger(__name__)


def series_row(index: int, series: DicomSeries) -> dict:
    """Index, UID, modality, description, size, pixel spacing, slice count and spacing of one series."""
    first = series.headers[0]
    return {
        "index": index,
        "uid": str(first.get("SeriesInstanceUID", "") or "(blank)"),
        "modality": series.modality or "?",
        "description": scrub(series.description),  # exports put names and IDs there
        "size": f"{int(first.Columns)}x{int(first.Rows)}",
        "pixel_spacing": _pixel_spacing(series),
        "slices": len(series),
        "slice_spacing": _slice_spacing(series),
    }


# Listing must work on series the reader would refuse, so no geometry checks here, and a series
# without geometry (an enhanced object without functional groups) shows "?" instead of failing.
def _pixel_spacing(series: DicomSeries) -> str:
    """Column x row spacing (x then y, as the size); multi-frame objects keep it in functional groups."""
    try:
        row, col = series.pixel_spacing()
    except (GeometryError, AttributeError):
        return "?"
    return f"{col:.3g}x{row:.3g}"


def _slice_spacing(series: DicomSeries) -> float | str:
    """Median distance between slices along the normal, rounded to um; "?" when unknown."""
    try:
        distances = np.sort(series.positions() @ series.normal())
    except (GeometryError, AttributeError):
        return "?"
    return round(float(np.median(np.diff(distances))), 3) if len(distances) > 1 else "?"


def list_series(folder: PathLike) -> list[dict]:
    return [series_row(i, s) for i, s in enumerate(find_series(folder))]


def format_series(rows: list[dict]) -> str:
    lines = [
        f"{'#':>2}  {'modality':<8} {'size':<9} {'spacing mm':<12} {'slices':>6} {'dz mm':>6}  description"
    ]
    for r in rows:
        lines.append(
            f"{r['index']:>2}  {r['modality']:<8} {r['size']:<9} {r['pixel_spacing']:<12} {r['slices']:>6} "
            f"{_number(r['slice_spacing']):>6}  {r['description']}"
        )
    return "\n".join(lines)


def _number(value: float | str) -> str:
    return f"{value:.3g}" if isinstance(value, float) else value


def read_label_names(labels: PathLike | None, bundle: PathLike) -> dict[int, str]:
    """Label names from a JSON file (``{"1": "liver", ...}``) or, by default, from a bundle's metadata."""
    if labels is None:
        from medseg.workflows.bundles import bundle_labels, find_bundle

        return {k: v for k, v in bundle_labels(find_bundle(bundle)).items() if k != 0}
    path = Path(labels)
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items() if int(k) != 0}
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(f"{path}: not a JSON object of label value -> name ({err})") from None


def label_map_to_seg(
    label_path: PathLike,
    dicom_dir: PathLike,
    out_path: PathLike,
    names: dict[int, str],
    series: str | int | None = None,
    anonymize: bool = False,
    seed: str | None = None,
) -> Path | None:
    """Write an existing label map (NIfTI) as a DICOM SEG referencing the series in ``dicom_dir``.

    The label map is brought onto the series' grid by world coordinates (nearest neighbour), so
    a NIfTI written in another orientation (LAS, RAS...) of the same scan lands voxel for voxel.
    ``anonymize``: the SEG is de-identified (``medseg.io.deid``) before it appears at ``out_path``.
    """
    source = select_series(find_series(dicom_dir), dicom_dir, series)
    check_seg_source(source)
    label, label_geometry = read_image(label_path)
    if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)):
        raise InputError(f"{label_path}: label map has non-integer values")
    image, geometry = read_series(source)
    if label.shape != image.shape or not np.allclose(label_geometry.affine, geometry.affine, atol=1e-3):
        log.info("label map resampled onto the DICOM series grid (nearest neighbour)")
        labelled = bool(np.any(label))
        label = label_to_grid(label, label_geometry.affine, image.shape, geometry.affine)
        if labelled and not np.any(label):  # another scan's label map: an empty SEG would hide that
            raise InputError(
                f"{label_path}: label map does not overlap the DICOM series in {dicom_dir} "
                "(no labelled voxel lands on its grid; a label map of another scan?)"
            )
    unnamed = sorted(int(v) for v in np.unique(label) if v != 0 and int(v) not in names)
    if unnamed:
        shown = ", ".join(map(str, unnamed[:10])) + (", ..." if len(unnamed) > 10 else "")
        raise InputError(
            f"{label_path}: label values {shown} have no names (name them in a --labels JSON file)"
        )
    if not anonymize:
        return write_seg(label.astype(np.int32), geometry, source, names, out_path)
    from medseg.io.atomic import atomic_dir
    from medseg.io.deid import Deidentifier

    out_path = Path(out_path)
    with atomic_dir(out_path.parent) as tmp:  # never seen with the patient's module at out_path
        written = write_seg(label.astype(np.int32), geometry, source, names, tmp / out_path.name)
        if written:
            Deidentifier(seed).file(written)
    return out_path if written else None
