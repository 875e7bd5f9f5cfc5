"""The geometry every medseg reader returns: a RAS affine on the array's own index order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.typing import Affine

# DICOM and ITK use LPS; NIfTI, nibabel and MONAI use RAS. This flips x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Voxel-to-world mapping of a volume, in RAS millimetres (micrometres for microscopy TIFF).

    ``affine @ [i, j, k, 1]`` is the RAS position of voxel ``array[i, j, k]``.
    """

    affine: Affine

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def direction(self) -> np.ndarray:
        """Unit column vectors of the voxel axes in RAS."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def origin(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.affine[:3, 3])

    def lps_affine(self) -> Affine:
        return LPS_TO_RAS @ self.affine
