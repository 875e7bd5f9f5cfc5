"""`medseg dicom ls`: what series a folder holds, without patient identifiers."""

from __future__ import annotations

import numpy as np

from medseg.io.dicom import DicomSeries, find_series
from medseg.typing import PathLike


def series_row(index: int, series: DicomSeries) -> dict:
    """Index, UID, modality, description, size, pixel spacing, slice count and spacing of one series."""
    first = series.headers[0]
    # Listing must work on series the reader would refuse, so no geometry checks here.
    distances = np.sort(series.positions() @ series.normal())
    step = float(np.median(np.diff(distances))) if len(distances) > 1 else float("nan")
    return {
        "index": index,
        "uid": str(first.get("SeriesInstanceUID", "") or "(blank)"),
        "modality": series.modality or "?",
        "description": series.description,
        "size": f"{int(first.Columns)}x{int(first.Rows)}",
        "pixel_spacing": "x".join(f"{float(v):.3g}" for v in first.get("PixelSpacing", [])[::-1]) or "?",
        "slices": len(series),
        "slice_spacing": round(step, 3),
    }


def list_series(folder: PathLike) -> list[dict]:
    return [series_row(i, s) for i, s in enumerate(find_series(folder))]


def format_series(rows: list[dict]) -> str:
    lines = [
        f"{'#':>2}  {'modality':<8} {'size':<9} {'spacing mm':<12} {'slices':>6} {'dz mm':>6}  description"
    ]
    for r in rows:
        lines.append(
            f"{r['index']:>2}  {r['modality']:<8} {r['size']:<9} {r['pixel_spacing']:<12} {r['slices']:>6} "
            f"{r['slice_spacing']:>6.3g}  {r['description']}"
        )
    return "\n".join(lines)
