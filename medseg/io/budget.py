"""The voxel budget: an image whose header declares more voxels than this machine can segment is refused
before its pixels are allocated.

A 65-byte ``.nii.gz`` can declare 4000x4000x4000 float64 (477 GiB); every reader allocates from the
header's dimensions, so without this check such a file ends in a MemoryError traceback or, with Linux
overcommit, in the OOM killer minutes later. Each reader calls :func:`check_voxels` with the declared
shape and dtype once the header is parsed and before the pixel array exists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from medseg.errors import InputError
from medseg.typing import PathLike

ENV = "MEDSEG_MAX_VOXELS"
# Segmenting a volume holds far more than its pixels: the image as float32 (4 B per voxel), the
# preprocessed copy (4 B), at least two float32 class channels of logits or probabilities (8 B) and
# the label map; 16 bytes per voxel of physical memory is an optimistic floor for the whole run, so a
# volume above RAM / 16 voxels cannot be segmented here however it is read.
BYTES_PER_VOXEL = 16
# Where sysconf cannot tell the memory size (not POSIX): a 32 GiB workstation.
FALLBACK_RAM = 32 * 1024**3


def default_max_voxels() -> int:
    """Physical memory / ``BYTES_PER_VOXEL``: 1.6e9 voxels on a 24 GiB machine."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no os.sysconf, or the names are unknown
        ram = FALLBACK_RAM
    return max(ram, 1) // BYTES_PER_VOXEL


def max_voxels() -> int:
    """The budget: ``MEDSEG_MAX_VOXELS`` (e.g. ``2e9``) when set, else :func:`default_max_voxels`."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return default_max_voxels()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 1 or math.isinf(value):
        raise InputError(f"{ENV}={text!r}: expected a positive number of voxels, e.g. 2e9")
    return int(value)


def check_voxels(path: PathLike, shape: Sequence[int], dtype: npt.DTypeLike) -> None:
    """Raise ``InputError`` when ``shape`` (every value the reader will allocate: spatial axes, time,
    channels, samples) holds more voxels than the budget, naming ``path``, the size and the budget;
    or when it holds none (fewer than two axes, or an axis of length 0 or less).

    >>> check_voxels("scan.nii.gz", (4000, 4000, 4000), "float64")  # doctest: +SKIP
    InputError: scan.nii.gz: declared size 4000x4000x4000 float64 (477 GiB) exceeds the voxel budget ...
    """
    sizes = [int(s) for s in shape]
    if len(sizes) < 2 or min(sizes) <= 0:  # nothing to allocate, but nothing to segment either
        raise InputError(f"{path}: header declares no image (size {_size(sizes) or 'none'})")
    count = math.prod(sizes)  # Python ints: no overflow however large the header's numbers
    budget = max_voxels()
    if count <= budget:
        return
    dtype = np.dtype(dtype)
    raise InputError(
        f"{path}: declared size {_size(sizes)} {dtype} ({_bytes(count * dtype.itemsize)}) exceeds the "
        f"voxel budget of {_count(budget)} voxels ({ENV}; raise it only on a machine with the memory)"
    )


def _size(sizes: Sequence[int]) -> str:
    return "x".join(str(s) for s in sizes)


def _count(n: int) -> str:
    mantissa, exponent = f"{n:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"  # 2.0e9, as a user would type it


def _bytes(n: int) -> str:
    k = min(int(math.log(max(n, 1), 1024)), 4)
    return f"{n / 1024**k:.3g} {('B', 'KiB', 'MiB', 'GiB', 'TiB')[k]}"
