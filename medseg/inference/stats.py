"""Per-label statistics of a label map: voxels, volume in mL, mean intensity."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from medseg.io.atomic import atomic_path
from medseg.typing import Affine, PathLike

FIELDS = ("label", "name", "voxels", "volume_ml", "mean_intensity")


def label_stats(
    label: np.ndarray, affine: Affine, names: dict[int, str], image: np.ndarray | None = None
) -> list[dict]:
    """One row per named label (background excluded), also for labels that are absent.

    Volume uses the voxel volume ``|det(affine[:3, :3])|`` in mm^3, reported in mL.
    """
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    counts = np.bincount(label.ravel().astype(np.int64), minlength=max(names) + 1)
    sums = None
    if image is not None:
        sums = np.bincount(
            label.ravel().astype(np.int64), weights=image.ravel().astype(np.float64), minlength=max(names) + 1
        )
    rows = []
    for value, name in sorted(names.items()):
        if value == 0:
            continue
        n = int(counts[value])
        mean = float(sums[value] / n) if sums is not None and n else None
        rows.append(
            {
                "label": value,
                "name": name,
                "voxels": n,
                "volume_ml": round(n * voxel_ml, 3),
                "mean_intensity": None if mean is None else round(mean, 2),
            }
        )
    return rows


def write_table(rows: list[dict], csv_path: PathLike, json_path: PathLike) -> tuple[Path, Path]:
    """Write the same rows as CSV and JSON, each atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else list(FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
    return Path(csv_path), Path(json_path)
