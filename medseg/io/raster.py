"""PNG, JPEG and BMP reading through Pillow: 2D photos, slides and label PNGs.

Arrays follow medseg's order: ``(x, y)`` for grey and ``(x, y, 3)`` for colour, the transpose of
Pillow's and numpy's ``(rows, cols[, c])``; MONAI's ``PILReader`` gives the same by default
(``reverse_indexing=True``). Alpha is dropped (RGBA -> RGB, LA -> L); CMYK and other colour modes become
RGB; a palette image gives its indices (how label PNGs such as Pascal VOC's store classes); a 1-bit image
gives 0/1 uint8; 16-bit grey stays uint16. EXIF orientation is not applied (as in MONAI). These formats
hold no physical pixel size: the affine is the identity (spacing 1, origin 0).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.errors import InputError
from medseg.io.budget import check_voxels
from medseg.io.geometry import Geometry
from medseg.typing import PathLike

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_KIND = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}
_KEEP = {"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "F", "RGB"}  # modes numpy reads as they are
_FIRST_BAND = {"LA", "La", "PA"}  # grey or palette index + alpha: keep the first band
_MODE_DTYPE = {"I": np.int32, "F": np.float32, "I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16}
# Pillow raises these on damaged files: OSError (also UnidentifiedImageError, "image file is truncated"),
# SyntaxError ("broken PNG file"), and DecompressionBombError above its pixel limit.
_READ_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    zlib.error,
    struct.error,
    Image.DecompressionBombError,
)


def is_raster(path: PathLike) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def read_raster(path: PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a PNG, JPEG or BMP into ``(array, geometry)``: ``(x, y)`` or ``(x, y, 3)``, identity affine.

    >>> array, geometry = read_raster("slide.png")  # doctest: +SKIP
    >>> array.shape  # a 640 x 480 RGB photo: (width, height, 3)  # doctest: +SKIP
    (640, 480, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    kind = _KIND.get(path.suffix.lower(), "image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: not a readable {kind} file (empty file)")
    try:
        with Image.open(path) as image:  # the header only
            check_voxels(path, (*image.size, len(image.getbands())), _MODE_DTYPE.get(image.mode, np.uint8))
            image.load()  # decode now: a truncated file fails here, inside the try
            data = np.array(_plain(image))
    except _READ_ERRORS as err:
        raise InputError(f"{path}: not a readable {kind} file ({_short(err)})") from None
    if data.dtype == bool:
        data = data.astype(np.uint8)
    data = data.astype(data.dtype.newbyteorder("="), copy=False)  # big-endian 16-bit -> native
    return np.swapaxes(data, 0, 1), Geometry(np.eye(4))


def _plain(image: Image.Image) -> Image.Image:
    """Grey, palette indices or RGB: the modes a segmentation network reads."""
    if image.mode in _KEEP:
        return image
    if image.mode in _FIRST_BAND:
        return image.getchannel(0)
    return image.convert("RGB")


def _short(err: BaseException) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__
