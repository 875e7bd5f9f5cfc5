"""`medseg dicom ls`: what series a folder holds, without patient identifiers."""

from __future__ import annotations

import numpy as np

from medseg.errors import GeometryError
from medseg.io.dicom import DicomSeries, find_series
from medseg.typing import PathLike


def series_row(index: int, series: DicomSeries) -> dict:
    """Index, UID, modality, description, size, pixel spacing, slice count and spacing of one series."""
    first = series.headers[0]
    return {
        "index": index,
        "uid": str(first.get("SeriesInstanceUID", "") or "(blank)"),
        "modality": series.modality or "?",
        "description": series.description,
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
