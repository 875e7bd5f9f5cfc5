"""One row per instance of an instance label map: id, class, size in voxels and physical units,
centroid (voxel and world) and bounding box. Built on scikit-image's ``regionprops``."""

from __future__ import annotations

import numpy as np

from medseg.io.geometry import Geometry

FIELDS = ("id", "class", "class_name", "voxels", "size", "unit", "centroid_index", "centroid_world", "bbox")


def _majority(classes: np.ndarray | None, coords: np.ndarray) -> int | None:
    if classes is None:
        return None
    values = classes[tuple(coords.T)]
    return int(np.bincount(values.astype(np.int64)).argmax()) if values.size else None


def instance_table(
    instances: np.ndarray,
    geometry: Geometry,
    classes: np.ndarray | None = None,
    names: dict[int, str] | None = None,
    unit: str = "mm",
    scores: dict[int, float] | None = None,
) -> list[dict]:
    """Rows for each instance id > 0 of ``instances`` (2D or 3D, medseg's axis order).

    ``size`` is the area (2D, ``unit``^2) or volume (3D, ``unit``^3) from the geometry's spacing;
    ``class`` is the most frequent value of ``classes`` over the instance (None without a class map);
    ``bbox`` is ``[start..., stop...]`` in voxel indices (stop exclusive); ``centroid_world`` is
    ``affine @ centroid_index``. With ``scores`` (``{id: score}``, e.g. Mask R-CNN's), each row
    also has its ``score``.

    Example:
        >>> from medseg.io.geometry import Geometry
        >>> ids = np.zeros((4, 4), int); ids[1:3, 1:3] = 5
        >>> row = instance_table(ids, Geometry(np.diag([0.5, 0.5, 1.0, 1.0])))[0]
        >>> row["id"], row["voxels"], row["size"], row["centroid_index"]
        (5, 4, 1.0, [1.5, 1.5])
    """
    from skimage.measure import regionprops

    dims = instances.ndim
    spacing = np.asarray(geometry.spacing[:dims])
    cell = float(np.prod(spacing))
    rows = []
    for region in regionprops(np.asarray(instances, dtype=np.int64)):
        centroid = np.asarray(region.centroid, dtype=np.float64)
        index = np.concatenate([centroid, np.zeros(3 - dims), [1.0]])
        world = (np.asarray(geometry.affine) @ index)[:3]
        value = _majority(classes, region.coords)
        rows.append(
            {
                "id": int(region.label),
                "class": value,
                "class_name": (names or {}).get(value, "" if value is None else f"class_{value}"),
                "voxels": int(region.area),
                "size": round(float(region.area) * cell, 4),
                "unit": f"{unit}^{dims}",
                "centroid_index": [round(float(c), 3) for c in centroid],
                "centroid_world": [round(float(c), 3) for c in world[:dims]],
                "bbox": [int(b) for b in region.bbox],
            }
        )
        if scores is not None:
            rows[-1]["score"] = round(float(scores.get(int(region.label), float("nan"))), 4)
    return rows
