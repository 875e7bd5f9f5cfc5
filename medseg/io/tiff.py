"""TIFF and OME-TIFF reading and writing through tifffile, with physical pixel sizes.

Arrays follow medseg's order, not tifffile's: ``(x, y)`` for a 2D image (tifffile gives ``(y, x)``),
``(x, y, z)`` for a z-stack (tifffile gives ``(z, y, x)``); a channel axis (OME/ImageJ ``C``, RGB
samples ``S``, or any other non-spatial axis longer than 1) goes last, as in a 4D NIfTI. The pages of a
plain multi-page TIFF (tifffile axis ``Q`` or ``I``) are read as z-slices. Files holding several images
(OME series, pyramids) give their first image at full resolution.

The affine is diagonal in **micrometres** with origin 0: microscopy has no patient frame, so "RAS" here
only means x = column, y = row, z = plane, all pointing to increasing index. Pixel sizes come from, in
order: OME ``PhysicalSizeX/Y/Z`` (+ units); ImageJ ``spacing``/``unit`` with the resolution tags; plain
``XResolution``/``YResolution`` with ``ResolutionUnit`` (inch, centimetre). An axis without a
calibration (no metadata, unit "pixel", or ``ResolutionUnit`` none) gets spacing 1.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from medseg.errors import GeometryError, InputError
from medseg.io.atomic import atomic_path
from medseg.io.budget import check_voxels
from medseg.io.geometry import Geometry
from medseg.typing import PathLike

SUFFIXES = (".tif", ".tiff")  # also .ome.tif / .ome.tiff

# Micrometres per unit, for OME units and the spellings ImageJ writes.
_UM_PER_UNIT = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,  # U+00B5, OME's default
    "μm": 1.0,  # U+03BC
    "\\u00b5m": 1.0,  # ImageJ escapes the micro sign in its ASCII description
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "inch": 25400.0,
    "in": 25400.0,
}
_UNCALIBRATED = {"", "pixel", "pixels", "px", "reference frame"}
_RESOLUTION_UNIT_UM = {2: 25400.0, 3: 1e4}  # TIFF ResolutionUnit: 1 none, 2 inch, 3 centimetre
# tifffile logs, rather than raises, when an IFD chain or a tag points past the end of the file, and
# then returns fewer pages; these messages mean the file is damaged.
_DAMAGE = ("invalid page offset", "invalid value offset", "corrupted", "failed to reshape", "truncated")
# What tifffile (and the zlib/XML parsers it uses) raises on damaged files; ZeroDivisionError for a
# page whose ImageWidth, ImageLength or RowsPerStrip is 0, RuntimeError for pages that contradict
# the first ("incompatible keyframe"), AssertionError from its own invariants that a damaged page
# breaks (BitsPerSample 0 leaves a page without a dtype), TypeError where a damaged tag holds several
# values in place of one (a tuple compared with a number).
_READ_ERRORS = (
    ValueError,
    ZeroDivisionError,
    RuntimeError,
    AssertionError,
    TypeError,
    OSError,
    EOFError,
    zlib.error,
    struct.error,
    IndexError,
    KeyError,
    ElementTree.ParseError,
)


def is_tiff(path: PathLike) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def read_tiff(path: PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a TIFF/OME-TIFF into ``(array, geometry)``: ``(x, y[, z][, c])``, spacing in micrometres.

    >>> array, geometry = read_tiff(sample_path("img2d.tif", "nuclei_2d"))  # doctest: +SKIP
    >>> array.shape, geometry.spacing  # doctest: +SKIP
    ((512, 512), (1.0, 1.0, 1.0))
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with _damage_log() as damage, tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            check_voxels(path, series.shape, series.dtype)
            data = series.asarray()
            kept, order, spatial = _layout(series.axes, data.shape, path)
            spacing = _spacing(tif, spatial, path)
        if damage:
            raise InputError(f"{path}: damaged or truncated TIFF ({damage[0]})")
    except InputError:
        raise
    except _READ_ERRORS as err:
        raise InputError(f"{path}: not a readable TIFF file ({_short(err)})") from None
    array = np.transpose(data.reshape([data.shape[i] for i in kept]), order)
    affine = np.diag([*spacing, *[1.0] * (3 - len(spacing)), 1.0])
    return array, Geometry(affine)


def tiff_spatial_dims(path: PathLike) -> int:
    """2 or 3: how many leading axes of ``read_tiff(path)[0]`` are spatial (the rest is one channel axis)."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return len(_layout(series.axes, series.shape, path)[2])
    except _READ_ERRORS as err:
        raise InputError(f"{path}: not a readable TIFF file ({_short(err)})") from None


def write_tiff(path: PathLike, array: np.ndarray, geometry: Geometry, channel_last: bool = False) -> Path:
    """Write ``array`` in medseg order (``(x, y[, z][, c])``) as OME-TIFF, pixel sizes from ``geometry``.

    The affine must be diagonal and positive (TIFF holds pixel sizes, not directions); its origin is not
    stored. Spacing is written in micrometres, zlib-compressed (lossless), atomically.
    """
    array = np.asarray(array)
    spatial_dims = array.ndim - int(channel_last)
    if spatial_dims not in (2, 3):
        raise ValueError(
            f"write_tiff: expected (x, y[, z][, c]) with channel_last={channel_last}, got {array.shape}"
        )
    spacing = _diagonal_spacing(geometry, path)
    data = _ome_dtype(array, path)
    # medseg (x, y[, z][, c]) -> OME (z, c, y, x) order, keeping only the axes that exist.
    perm = [2] * (spatial_dims == 3) + [array.ndim - 1] * channel_last + [1, 0]
    axes = "Z" * (spatial_dims == 3) + "C" * channel_last + "YX"
    metadata = {"axes": axes, "PhysicalSizeX": spacing[0], "PhysicalSizeY": spacing[1]}
    metadata |= {"PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
    if spatial_dims == 3:
        metadata |= {"PhysicalSizeZ": spacing[2], "PhysicalSizeZUnit": "µm"}
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            np.ascontiguousarray(np.transpose(data, perm)),
            ome=True,
            photometric="minisblack",  # never let tifffile guess RGB from a last axis of 3 or 4
            metadata=metadata,
            resolution=(1e4 / spacing[0], 1e4 / spacing[1]),  # also pixels/cm for non-OME viewers
            resolutionunit="CENTIMETER",
            compression="zlib",
        )
    return Path(path)


def _layout(axes: str, shape: tuple[int, ...], path: Path) -> tuple[list[int], list[int], str]:
    """Which of tifffile's axes to keep, the transpose taking them to ``(x, y[, z][, c])``, and the
    spatial axes ("XY" or "XYZ"). Length-1 axes other than x and y are dropped."""
    kept = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if n > 1 or a in "XY"]
    names = [axes[i] for i in kept]
    if "Z" not in names:  # plain multi-page stacks: the page axis is z
        names = ["Z" if a in "QI" else a for a in names]
    others = [k for k, a in enumerate(names) if a not in "XYZ"]
    if len(others) > 1 or names.count("Z") > 1 or "X" not in names or "Y" not in names:
        raise InputError(
            f"{path}: TIFF axes {axes} {tuple(shape)} are not an image medseg reads "
            "(x, y, optional z, at most one channel or time axis); save one time point or channel set"
        )
    spatial = "XYZ" if "Z" in names else "XY"
    return kept, [names.index(a) for a in spatial] + others, spatial


def _spacing(tif: tifffile.TiffFile, spatial: str, path: Path) -> tuple[float, ...]:
    """Pixel sizes in micrometres along ``spatial``: OME first, then ImageJ, then resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        return _ome_spacing(tif.ome_metadata, spatial, path)
    page = tif.pages[0]
    if tif.is_imagej and tif.imagej_metadata:
        meta = tif.imagej_metadata
        scale = _unit_scale(str(meta.get("unit", "")), path)
        xy = _resolution(page, scale)
        z = float(meta.get("spacing", 1.0)) * scale if scale else 1.0
        return (*xy, z)[: len(spatial)]
    scale = _RESOLUTION_UNIT_UM.get(int(page.tags.valueof("ResolutionUnit", 2)))  # TIFF default: inch
    return (*_resolution(page, scale), 1.0)[: len(spatial)]


def _ome_spacing(xml: str, spatial: str, path: Path) -> tuple[float, ...]:
    root = ElementTree.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    attrib = {} if pixels is None else pixels.attrib
    spacing = []
    for axis in spatial:
        size = attrib.get(f"PhysicalSize{axis}")
        scale = _unit_scale(attrib.get(f"PhysicalSize{axis}Unit", "µm"), path)
        spacing.append(float(size) * scale if size is not None and scale else 1.0)
    return tuple(spacing)


def _resolution(page: tifffile.TiffPage, scale: float | None) -> tuple[float, float]:
    """x and y pixel size from XResolution/YResolution (pixels per unit) and micrometres per unit."""
    sizes = []
    for tag in ("XResolution", "YResolution"):
        value = page.tags.valueof(tag)
        num, den = (value, 1) if isinstance(value, int | float) else (value or (0, 1))
        sizes.append(den / num * scale if scale and num else 1.0)
    return sizes[0], sizes[1]


def _unit_scale(unit: str, path: Path) -> float | None:
    """Micrometres per ``unit``; None when the unit says "uncalibrated"."""
    key = unit.strip().lower()
    if key in _UNCALIBRATED:
        return None
    if key not in _UM_PER_UNIT:
        raise InputError(f"{path}: unknown length unit {unit!r} for the pixel size")
    return _UM_PER_UNIT[key]


def _diagonal_spacing(geometry: Geometry, path: PathLike) -> tuple[float, ...]:
    linear = np.asarray(geometry.affine, dtype=np.float64)[:3, :3]
    diagonal = np.diag(linear)
    if np.any(np.abs(linear - np.diag(diagonal)) > 1e-6 * np.abs(diagonal).max()) or np.any(diagonal <= 0):
        raise GeometryError(
            f"{path}: TIFF stores pixel sizes only; the affine is rotated or flipped "
            "(resample to an axis-aligned grid, or write NIfTI)"
        )
    return tuple(float(s) for s in diagonal)


def _ome_dtype(array: np.ndarray, path: PathLike) -> np.ndarray:
    """OME has no 64-bit integers: narrow label maps that fit in 32 bits (value-preserving)."""
    if array.dtype.kind not in "iu" or array.dtype.itemsize < 8:
        return array
    target = np.uint32 if array.dtype.kind == "u" or array.min(initial=0) >= 0 else np.int32
    info = np.iinfo(target)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(
            f"{path}: {array.dtype} values do not fit in {np.dtype(target)}, which OME-TIFF needs"
        )
    return array.astype(target)


@contextlib.contextmanager
def _damage_log() -> Iterator[list[str]]:
    """Collect tifffile's log messages that say the file is damaged."""
    found: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if any(marker in message for marker in _DAMAGE):
                found.append(message.splitlines()[0][:160])

    handler = _Collect(logging.WARNING)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _short(err: BaseException) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__
