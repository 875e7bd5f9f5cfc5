"""NRRD and MetaImage reading and writing through SimpleITK (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``).

Arrays follow medseg's order, not SimpleITK's: ``(x, y[, z][, c])`` (``sitk.GetArrayFromImage`` gives
``(z, y, x[, c])``). A vector pixel (NRRD ``kinds: vector`` or ``list``, MetaImage
``ElementNumberOfChannels``) or the 4th axis of a 4D image becomes the trailing channel axis. ITK's
origin, spacing and direction are LPS; the affine is RAS. A 2D image gives a 2D array and a 3D affine
whose z axis is the unit vector through 0.

Detached headers (``.nhdr``, ``.mhd``) are written with their data file next to them (``.raw.gz``,
``.zraw``): both are written under their final names in a temporary folder, then moved into place, so
the header names the right data file and a failed write leaves neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import GeometryError, InputError
from medseg.io.atomic import atomic_dir, atomic_path
from medseg.io.budget import check_voxels
from medseg.io.geometry import LPS_TO_RAS, Geometry
from medseg.typing import PathLike

SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_IO = {".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO", ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}
_DETACHED = (".nhdr", ".mhd")
# ITK's exceptions start with the C++ source location and an object address; keep only the reason.
_NOISE = re.compile(r"^(?:(?:sitk::|itk::|ITK )ERROR: |\w+\(0x[0-9a-f]+\): |\[nrrd\] |\w+: )+")

# MetaIO reads NDims as the leading number of its value (atof, then truncated): "NDims = 1e30 junk"
# is 1e30.
_META_NDIMS = re.compile(rb"^[ \t]*NDims[ \t]*=[ \t]*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", re.M)
_META_HEADER_BYTES = 1 << 16  # MetaImage headers are a few hundred bytes of text before the data

sitk.ProcessObject_SetGlobalWarningDisplay(False)  # ITK warnings would bypass our one-line errors


def is_sitk_image(path: PathLike) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def read_sitk_image(path: PathLike) -> tuple[np.ndarray, Geometry]:
    """Read an NRRD or MetaImage file into ``(array, geometry)``: ``(x, y[, z][, c])``, RAS affine."""
    path = Path(path)
    image = _run(path, read_pixels=True)
    dims, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    if dims > 4 or (dims == 4 and components > 1):
        raise InputError(
            f"{path}: {dims}D image with {components} values per voxel; medseg reads (x, y[, z]) "
            "with at most one channel axis (save one time point or component set)"
        )
    data = sitk.GetArrayFromImage(image)
    array = np.transpose(data, [*reversed(range(dims)), *range(dims, data.ndim)])
    spatial = min(dims, 3)
    lps = np.eye(4)
    direction = np.reshape(image.GetDirection(), (dims, dims))[:spatial, :spatial]
    lps[:spatial, :spatial] = direction * np.asarray(image.GetSpacing()[:spatial])
    lps[:spatial, 3] = image.GetOrigin()[:spatial]
    return array, Geometry(LPS_TO_RAS @ lps)


def sitk_spatial_dims(path: PathLike) -> int:
    """2 or 3: how many leading axes of ``read_sitk_image(path)[0]`` are spatial; reads the header only."""
    return min(_run(Path(path), read_pixels=False).GetDimension(), 3)


def write_sitk_image(
    path: PathLike, array: np.ndarray, geometry: Geometry, channel_last: bool = False
) -> Path:
    """Write ``array`` in medseg order (``(x, y[, z][, c])``) as NRRD or MetaImage, by suffix.

    The RAS affine is stored as ITK's LPS origin, spacing and direction; integer label maps keep their
    dtype (bool is written as uint8). Compressed (lossless), atomically. ``channel_last`` writes a vector
    pixel; a single channel is written, and read back, as a plain image.
    """
    path = Path(path)
    if not is_sitk_image(path):
        raise ValueError(f"write_sitk_image: {path} does not end in one of {', '.join(SUFFIXES)}")
    array = np.asarray(array)
    spatial = array.ndim - int(channel_last)
    if spatial not in (2, 3):
        raise ValueError(
            f"write_sitk_image: expected (x, y[, z][, c]) with channel_last={channel_last}, got {array.shape}"
        )
    if array.dtype == bool or array.dtype == np.float16:  # types SimpleITK has no pixel type for
        array = array.astype(np.uint8 if array.dtype == bool else np.float32)
    itk_order = np.transpose(array, [*reversed(range(spatial)), *range(spatial, array.ndim)])
    image = sitk.GetImageFromArray(np.ascontiguousarray(itk_order), isVector=channel_last)
    origin, spacing, direction = _itk_geometry(geometry, spatial, path)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    if path.suffix.lower() in _DETACHED:
        with atomic_dir(path.parent) as tmp:
            sitk.WriteImage(image, str(tmp / path.name), useCompression=True)
    else:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


def _itk_geometry(geometry: Geometry, spatial: int, path: Path) -> tuple[list[float], ...]:
    """ITK (origin, spacing, flattened direction) in LPS for the first ``spatial`` axes of the affine."""
    lps = LPS_TO_RAS @ np.asarray(geometry.affine, dtype=np.float64)
    if spatial == 2 and np.any(np.abs([*lps[2, :2], lps[2, 3]]) > 1e-6):
        raise GeometryError(
            f"{path}: a 2D image stores x and y in the z = 0 plane, but the affine tilts them or moves "
            "them off it; write the slice as an (x, y, 1) volume"
        )
    linear = lps[:spatial, :spatial]
    if np.linalg.matrix_rank(linear) < spatial:
        raise GeometryError(f"{path}: the affine is singular (a zero or repeated axis); fix the geometry")
    spacing = np.linalg.norm(linear, axis=0)
    return list(lps[:spatial, 3]), list(spacing), list((linear / spacing).ravel())


def _run(path: Path, read_pixels: bool) -> sitk.Image | sitk.ImageFileReader:
    """The image (or, header only, the reader after ``ReadImageInformation``); one-line errors."""
    if not is_sitk_image(path):
        raise InputError(f"{path}: not an NRRD or MetaImage file (expected {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    kind = "NRRD" if "Nrrd" in _IO[path.suffix.lower()] else "MetaImage"
    if path.stat().st_size == 0:
        raise InputError(f"{path}: not a readable {kind} file (empty file)")
    if kind == "MetaImage":
        _check_meta_ndims(path)
    reader = sitk.ImageFileReader()
    reader.SetImageIO(_IO[path.suffix.lower()])  # the suffix names the format: its IO gives the reason
    reader.SetFileName(str(path))
    failure = None
    with _c_stderr() as printed:
        try:
            reader.ReadImageInformation()  # the header: the size is checked before the pixels exist
            if not read_pixels:
                return reader
            components = reader.GetNumberOfComponents()
            check_voxels(path, [*reader.GetSize(), *[components] * (components > 1)], _dtype(reader))
            return reader.Execute()
        except RuntimeError as err:
            failure = err
    raise InputError(f"{path}: not a readable {kind} file ({_reason(failure, printed)})") from None


def _check_meta_ndims(path: Path) -> None:
    """ITK's MetaImage parser (MetaIO) writes past its fixed-size arrays when ``NDims`` is large or
    negative: the process aborts ("corrupted size vs. prev_size" at NDims = 100) or segfaults (60000,
    1e30), which no ``except`` can catch. So a number outside 1..4 (what medseg reads) is refused here
    first; a value that is no number at all MetaIO refuses itself."""
    with open(path, "rb") as f:
        match = _META_NDIMS.search(f.read(_META_HEADER_BYTES))
    if match and not 1 <= float(match.group(1)) < 5:
        raise InputError(
            f"{path}: not a readable MetaImage file (NDims = {match.group(1).decode()}; medseg reads 2 "
            "to 4 dimensions)"
        )


def _dtype(reader: sitk.ImageFileReader) -> np.dtype:
    """The numpy dtype of the file's pixel components, from a one-voxel image of its pixel type."""
    probe = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), reader.GetNumberOfComponents())
    return sitk.GetArrayViewFromImage(probe).dtype


def _reason(err: BaseException | None, printed: list[str]) -> str:
    """MetaIO prints its reason (first line, plus indented details); teem's is the last ``[nrrd]`` line."""
    if printed:
        lines = [printed[0], *[line for line in printed[1:] if line.startswith(" ")]]
    else:
        lines = [line for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
        lines = [next((line for line in reversed(lines) if line.startswith("[nrrd]")), lines[0])]
    reason = "; ".join(_NOISE.sub("", line.strip()) for line in lines)
    return reason[:200] or type(err).__name__


@contextlib.contextmanager
def _c_stderr() -> Iterator[list[str]]:
    """Catch what C++ code prints to file descriptor 2 (MetaIO prints its errors there, not in the
    exception); the lines are in the yielded list once the block ends."""
    printed: list[str] = []
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to catch
            yield printed
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield printed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            printed.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())
