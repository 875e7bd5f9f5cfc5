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


def best_time(fn, folder: Path, repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(folder)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_series(folder, args.slices)
        t_medseg, ours = best_time(read_medseg, folder, args.repeat)
        t_sitk, theirs = best_time(read_sitk, folder, args.repeat)
        t_monai, monai = best_time(read_monai, folder, args.repeat)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, monai)  # PydicomReader applies the rescale too
    print(f"512x512x{args.slices} uncompressed CT, best of {args.repeat}:")
    print(f"  medseg                       {t_medseg:6.2f} s")
    print(f"  SimpleITK ImageSeriesReader  {t_sitk:6.2f} s   SimpleITK/medseg {t_sitk / t_medseg:.2f}x")
    print(f"  MONAI LoadImage(Pydicom)     {t_monai:6.2f} s   MONAI/medseg     {t_monai / t_medseg:.2f}x")


if __name__ == "__main__":
    main()
