"""Read one case once: its image (one file, a DICOM folder, or one file per channel) with its geometry.

The array keeps medseg's order: spatial axes first (``x, y[, z]``), channels last when there are
several. Everything downstream (the bundle's preprocessing, the writers, statistics, the overlay)
uses this one read; the bundle's own loader never touches the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.geometry import Geometry
from medseg.io.registry import image_kind, read_image
from medseg.typing import PathLike


@dataclass
class CaseImage:
    """A case as read: ``array`` is ``(*spatial)`` for one channel, ``(*spatial, C)`` for several."""

    path: Path  # the (first) file or the DICOM folder, for messages and outputs
    array: np.ndarray
    geometry: Geometry
    spatial_dims: int
    kind: str  # see image_kind
    modality: str = ""  # DICOM Modality, where known

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == self.spatial_dims else int(self.array.shape[-1])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[: self.spatial_dims])

    def channel_first(self) -> np.ndarray:
        """``(C, *spatial)`` when there are several channels, else the spatial array itself."""
        return self.array if self.array.ndim == self.spatial_dims else np.moveaxis(self.array, -1, 0)


def _spatial_dims(path: Path, array: np.ndarray, kind: str, bundle_dims: int) -> int:
    if kind == "raster":
        return 2
    if kind == "tiff":
        from medseg.io.tiff import tiff_spatial_dims

        return tiff_spatial_dims(path)
    if bundle_dims == 2 and array.ndim >= 3 and array.shape[2] == 1:
        return 2  # a one-slice volume given to a 2D bundle (its slice axis is dropped)
    return 3 if array.ndim >= 3 else array.ndim


def _read(path: Path, series: str | int | None) -> tuple[np.ndarray, Geometry, str]:
    """The image, its geometry and (for DICOM) its modality, the folder scanned once."""
    if image_kind(path) != "dicom":
        return (*read_image(path), "")
    from medseg.io.dicom import find_series, read_series, select_series

    chosen = select_series(find_series(path), path, series)
    return (*read_series(chosen), chosen.modality)


def _read_one(path: Path, series: str | int | None, bundle_dims: int) -> CaseImage:
    array, geometry, modality = _read(path, series)
    kind = image_kind(path)
    dims = _spatial_dims(path, array, kind, bundle_dims)
    if dims == 2 and kind not in ("raster", "tiff") and array.ndim >= 3:
        array = array[:, :, 0]
    return CaseImage(path, array, geometry, dims, kind, modality)


def read_case(
    images: PathLike | Sequence[PathLike], series: str | int | None = None, bundle_dims: int = 3
) -> CaseImage:
    """Read a case: one image, or one file per channel (all on the same grid), stacked channel-last."""
    paths = [Path(images)] if isinstance(images, str | Path) else [Path(p) for p in images]
    parts = [_read_one(p, series, bundle_dims) for p in paths]
    first = parts[0]
    if len(parts) == 1:
        return first
    for part in parts[1:]:
        if part.channels != 1 or first.channels != 1:
            raise InputError(f"{part.path}: a channel file must hold one channel, not {part.channels}")
        same = part.spatial_shape == first.spatial_shape and np.allclose(
            part.geometry.affine, first.geometry.affine, atol=1e-3
        )
        if not same:
            raise InputError(
                f"{part.path}: channel is not on the grid of {first.path.name} "
                f"(shape {part.spatial_shape} vs {first.spatial_shape}, or another affine)"
            )
    stacked = np.stack([p.array for p in parts], axis=-1)
    return CaseImage(first.path, stacked, first.geometry, first.spatial_dims, first.kind, first.modality)
