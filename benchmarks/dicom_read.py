"""Read a 512x512x300 uncompressed CT series: medseg vs SimpleITK vs MONAI's PydicomReader.

    python benchmarks/dicom_read.py [--slices 300] [--repeat 3]

Writes the series into a temporary folder (about 150 MB), reads it with each reader (best of
``--repeat`` warm runs, so every reader sees the files in the page cache), checks all three
return the same voxels, and prints the times and the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from monai.transforms import LoadImage

from medseg.data.synthetic import write_dicom_series
from medseg.io import read_image


def make_series(folder: Path, slices: int) -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 2000, size=(512, 512, slices), dtype=np.int16)
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    affine[:3, 3] = (-180.0, -150.0, -400.0)
    write_dicom_series(volume, affine, folder, rescale=(1.0, -1024.0))


def read_medseg(folder: Path) -> np.ndarray:
    return read_image(folder)[0]


def read_sitk(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute()).transpose(2, 1, 0)


def read_monai(folder: Path) -> np.ndarray:
    return np.asarray(LoadImage(reader="PydicomReader", image_only=True)(str(folder)))


READERS = {"medseg": read_medseg, "SimpleITK": read_sitk, "MONAI": read_monai}


def best_times(folder: Path, repeat: int) -> dict[str, float]:
    """Best time of each reader over ``repeat`` rounds; rounds interleave the readers so that a
    slow moment of a shared machine does not fall on one reader only. All must read the same
    voxels (PydicomReader and SimpleITK apply the rescale too)."""
    times: dict[str, list[float]] = {name: [] for name in READERS}
    for _ in range(repeat):
        ours = None
        for name, read in READERS.items():
            start = time.perf_counter()
            volume = read(folder)
            times[name].append(time.perf_counter() - start)
            if ours is None:
                ours = volume
            else:
                np.testing.assert_array_equal(ours, volume)
            del volume
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_series(folder, args.slices)
        best = best_times(folder, args.repeat)
    t_medseg, t_sitk, t_monai = best["medseg"], best["SimpleITK"], best["MONAI"]
    print(f"512x512x{args.slices} uncompressed CT, best of {args.repeat}:")
    print(f"  medseg                       {t_medseg:6.2f} s")
    print(f"  SimpleITK ImageSeriesReader  {t_sitk:6.2f} s   SimpleITK/medseg {t_sitk / t_medseg:.2f}x")
    print(f"  MONAI LoadImage(Pydicom)     {t_monai:6.2f} s   MONAI/medseg     {t_monai / t_medseg:.2f}x")


if __name__ == "__main__":
    main()
