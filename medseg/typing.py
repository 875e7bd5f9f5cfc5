"""Type aliases shared across medseg."""

from __future__ import annotations

import os
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

PathLike: TypeAlias = str | os.PathLike[str]
Array: TypeAlias = npt.NDArray[np.generic]
Affine: TypeAlias = npt.NDArray[np.float64]
