"""One check for instance label images, used by every function that takes them, and per-instance values."""

from __future__ import annotations

import numpy as np

from medseg.errors import InputError


def check_instances(instances: np.ndarray, name: str = "instance mask") -> np.ndarray:
    """The label image as an integer array, or an ``InputError`` saying what is wrong with it.

    Integer ids >= 0 (0 = background); floats are accepted when they hold whole numbers (TIFF and
    NIfTI often store labels as float); a boolean mask counts as one object with id 1.
    """
    array = np.asarray(instances)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError(
                f"{name} holds NaN or infinite values; non-integer values cannot be instance ids"
            )
        if not np.array_equal(array, np.round(array)):
            example = float(array[array != np.round(array)][0])
            raise InputError(
                f"{name} has non-integer values (e.g. {example:g}); instance ids are whole numbers 0, 1, 2..."
            )
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iu":
        raise InputError(f"{name} has dtype {array.dtype}; expected integer instance ids")
    if array.size and array.min() < 0:
        raise InputError(f"{name} has negative label {array.min()}; expected ids >= 0 (0 = background)")
    return array


def instance_scores_of(instances, scores) -> dict[int, float]:
    """``{id: score}`` read off the inferer's instance and score channels (each ``(*S)`` or ``(1, *S)``).

    Example:
        >>> ids = np.array([[0, 1, 1], [2, 2, 0]]); s = np.array([[0, .9, .9], [.6, .6, 0]])
        >>> instance_scores_of(ids, s)
        {1: 0.9, 2: 0.6}
    """
    ids = np.rint(np.asarray(instances)).astype(np.int64).reshape(-1)
    values = np.asarray(scores).reshape(-1)
    found = ids > 0
    unique, first = np.unique(ids[found], return_index=True)
    return {int(i): float(v) for i, v in zip(unique, values[found][first], strict=True)}
