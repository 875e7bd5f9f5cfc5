"""Derive the shipped lung CT samples from pyradiomics 3.0.1's ``data/`` (run once; not used at run time).

The original chest CTs are 12.5 and 17.8 MB; shipped unchanged they would more than double the
samples. Each image is halved in-plane by the mean of 2x2 voxel blocks (0.57 -> 1.14 mm, 0.63 ->
1.25 mm; slices stay 5 mm), the label by "at least 2 of the 4 voxels": the voxel centres of the
new grid sit at the centres of the blocks, so image and label keep their physical positions.

    pip download --no-deps --no-binary :all: --no-build-isolation pyradiomics==3.0.1
    tar xzf pyradiomics-3.0.1.tar.gz
    python data_manifests/recipes/pyradiomics_lung.py pyradiomics-3.0.1/data medseg/data/samples/pyradiomics
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def halve_in_plane(image: sitk.Image, reduce) -> sitk.Image:
    """``reduce(blocks)`` maps an array of shape (z, y/2, 2, x/2, 2) to (z, y/2, x/2)."""
    array = sitk.GetArrayFromImage(image)
    z, y, x = array.shape
    blocks = array[:, : y - y % 2, : x - x % 2].reshape(z, y // 2, 2, x // 2, 2)
    out = sitk.GetImageFromArray(reduce(blocks).astype(array.dtype))
    spacing = np.array(image.GetSpacing())
    new_spacing = spacing * (2, 2, 1)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    # the first new voxel's centre is the centre of the first 2x2 block
    origin = np.array(image.GetOrigin()) + direction @ ((new_spacing - spacing) / 2)
    out.SetSpacing(tuple(new_spacing))
    out.SetOrigin(tuple(origin))
    out.SetDirection(image.GetDirection())
    return out


def mean_block(blocks: np.ndarray) -> np.ndarray:
    return np.rint(blocks.astype(np.float64).mean(axis=(2, 4)))


def majority_block(blocks: np.ndarray) -> np.ndarray:
    return (blocks > 0).sum(axis=(2, 4)) >= 2


def main(source: str, target: str) -> None:
    Path(target).mkdir(parents=True, exist_ok=True)
    for case in ("lung1", "lung2"):
        for part, reduce in (("image", mean_block), ("label", majority_block)):
            name = f"{case}_{part}.nrrd"
            image = sitk.ReadImage(str(Path(source) / name))
            sitk.WriteImage(halve_in_plane(image, reduce), str(Path(target) / name), useCompression=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
