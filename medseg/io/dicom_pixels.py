"""Pixel data of single-frame DICOM files into one volume, with the modality rescale applied.

pydicom decodes every transfer syntax (JPEG2000/JPEG-LS/RLE through the pylibjpeg and pyjpegls
plugins), but its ``pixel_array`` spends about 1 ms per frame choosing and validating a decoder
(measured on 512x512 slices), which alone makes a 300-slice series slower than SimpleITK. For
native little-endian data the stored values are simply the PixelData bytes, so those are taken
directly, with the same masking of unused high bits that pydicom applies (tested against it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medseg.errors import InputError
from medseg.io.budget import check_voxels
from medseg.typing import PathLike

_NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# What pydicom and its decoder plugins raise on damaged pixel data or headers that contradict it:
# ValueError (size mismatch, bad values), AttributeError and KeyError (a required element such as
# BitsAllocated missing), TypeError (an element with an empty or wrong-typed value), RuntimeError
# (pylibjpeg/openjpeg decoder failures), OSError and EOFError (a file that ends inside the data).
_DECODE_ERRORS = (ValueError, AttributeError, KeyError, TypeError, RuntimeError, OSError, EOFError)


def stored_values(ds: Dataset) -> np.ndarray:
    """The stored values of a one-frame image as a ``(rows, columns)`` array."""
    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise InputError(f"{ds.filename}: DICOM image without pixel data (no PixelData element)")
    try:
        fast = _native_values(ds)
        return fast if fast is not None else ds.pixel_array
    except NotImplementedError:  # pydicom: no installed plugin decodes this transfer syntax
        raise InputError(f"{ds.filename}: {_unsupported_syntax(ds)}") from None
    except _DECODE_ERRORS as err:
        # pydicom lists each plugin's failure on its own line: one line here
        problem = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())[:300]
        problem = f"{type(err).__name__}: {problem}"
        raise InputError(f"{ds.filename}: cannot decode DICOM pixel data ({problem})") from None


def _unsupported_syntax(ds: Dataset) -> str:
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    name = f"{syntax.name} ({syntax})" if syntax is not None and syntax.name != syntax else str(syntax)
    return (
        f"transfer syntax {name} cannot be decoded here; convert the series to an uncompressed syntax "
        "(e.g. gdcmconv --raw, or dcmconv +te) and retry"
    )


def check_budget(path: PathLike, ds: Dataset, frames: int) -> None:
    """Refuse ``frames`` images of ``ds``'s declared size (Rows x Columns x samples) above the voxel
    budget, before any pixel is decoded; ``path`` (the file or the series folder) names it."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (int(ds.Columns), int(ds.Rows), frames, *([samples] * (samples > 1)))
    bits = int(ds.get("BitsAllocated", 16) or 16)
    size = next(n for n in (1, 2, 4, 8) if bits <= 8 * n or n == 8)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    check_voxels(path, shape, f"{'i' if signed else 'u'}{size}")


def _native_dtype(ds: Dataset) -> np.dtype | None:
    """The dtype of native little-endian one-sample pixel data; ``None`` when pydicom must decode."""
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    allocated = int(ds.BitsAllocated)
    if syntax not in _NATIVE or int(ds.get("SamplesPerPixel", 1)) != 1 or allocated not in (8, 16, 32):
        return None
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")


def _mask_unused_bits(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Keep BitsStored bits (sign-extended when signed), in place, as pydicom does."""
    allocated, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    if stored < allocated:
        shift = values.dtype.type(allocated - stored)
        if values.dtype.kind == "i":
            values <<= shift
            values >>= shift
        else:
            values &= values.dtype.type((1 << stored) - 1)
    return values


def _native_values(ds: Dataset) -> np.ndarray | None:
    dtype = _native_dtype(ds)
    if dtype is None:
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    data = ds.PixelData
    if len(data) < rows * cols * dtype.itemsize:
        raise ValueError(f"pixel data has {len(data)} bytes, {rows}x{cols} pixels need more")
    values = np.frombuffer(data, dtype, count=rows * cols).reshape(rows, cols).copy()
    return _mask_unused_bits(values, ds)


def _read_into(ds: Dataset, out: np.ndarray) -> bool:
    """Read deferred native pixel data from the file straight into ``out``; False if not possible.

    No bytes object and no copy per slice: at 300 slices of 512 KB those cost more than the
    reading itself (page faults on fresh memory, measured).
    """
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    deferred = isinstance(raw, RawDataElement) and raw.value is None
    if not deferred or _native_dtype(ds) != out.dtype or (int(ds.Rows), int(ds.Columns)) != out.shape:
        return False
    with open(ds.filename, "rb") as f:
        f.seek(raw.value_tell)
        if raw.length < out.nbytes or f.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise InputError(f"{ds.filename}: cannot decode DICOM pixel data (file ends inside it)")
    _mask_unused_bits(out, ds)
    return True


def rescale_params(headers: Sequence[Dataset]) -> tuple[np.ndarray, np.ndarray]:
    slopes = np.array([float(h.get("RescaleSlope", 1) or 1) for h in headers])
    intercepts = np.array([float(h.get("RescaleIntercept", 0) or 0) for h in headers])
    return slopes, intercepts


def apply_rescale(stored: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Modality values of ``stored`` (``(slices, rows, cols)``), in the smallest exact dtype.

    Integral slopes and intercepts (CT almost always) give int16 when the result fits, as
    SimpleITK does for CT, else int32 when it fits; anything else gives float32.
    """
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return stored
    flat = stored.reshape(len(stored), -1)
    lo, hi = flat.min(1), flat.max(1)
    ends = np.stack([lo * slopes + intercepts, hi * slopes + intercepts])  # float64
    integral = np.all(np.mod(slopes, 1) == 0) and np.all(np.mod(intercepts, 1) == 0)
    if not integral or ends.min() < -(2**31) or ends.max() >= 2**31:  # int32 would overflow
        scale = (slice(None),) + (None,) * (stored.ndim - 1)
        # Both float32: a float64 intercept would silently promote the whole volume to float64.
        slopes32, intercepts32 = (v[scale].astype(np.float32) for v in (slopes, intercepts))
        return stored.astype(np.float32) * slopes32 + intercepts32
    dtype = np.int16 if ends.min() >= -32768 and ends.max() <= 32767 else np.int32
    info = np.iinfo(dtype)
    if lo.min() < info.min or hi.max() > info.max:
        stored = stored.astype(np.int64)  # the stored values themselves do not fit: compute wide
    out = stored if stored.dtype == dtype else stored.astype(dtype)
    if np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]):
        if slopes[0] != 1:
            out *= out.dtype.type(slopes[0])
        out += out.dtype.type(intercepts[0])
        return out.astype(dtype, copy=False)
    for k in range(len(out)):
        out[k] = out[k] * int(slopes[k]) + int(intercepts[k])
    return out.astype(dtype, copy=False)


def read_volume(headers: Sequence[Dataset]) -> np.ndarray:
    """Stack the (already sorted) one-frame images into ``(slices, rows, cols)`` modality values."""
    first = stored_values(headers[0])
    stored = np.empty((len(headers), *first.shape), first.dtype)
    stored[0] = first
    for k, ds in enumerate(headers[1:], start=1):
        if _read_into(ds, stored[k]):
            continue
        values = stored_values(ds)
        if values.dtype != first.dtype:
            raise InputError(f"{ds.filename}: pixel type {values.dtype}, the series has {first.dtype}")
        stored[k] = values
    return apply_rescale(stored, *rescale_params(headers))


def compact_dtype(values: np.ndarray) -> np.dtype:
    """int16 for float data that holds only integers in int16's range (CT in HU), else its own dtype."""
    if values.dtype.kind != "f" or values.size == 0:
        return values.dtype
    lo, hi = float(values.min()), float(values.max())
    if lo >= -32768 and hi <= 32767 and np.array_equal(values, np.round(values)):
        return np.dtype(np.int16)
    return values.dtype
