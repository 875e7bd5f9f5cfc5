"""U-Net border weight map: medseg vs the straightforward one-EDT-per-cell implementation.

    python benchmarks/weight_map.py [--repeat 5] [--skip-3d-check]

Builds two seeded instance label images of random non-overlapping discs/spheres, half of them
placed 0-1 px from an earlier one so that many touch: 512x512 with 300 nuclei (radius 6-11 px)
and 256x256x64 with 500 nuclei (radius 4-7 voxels). Times ``unet_weight_map`` with the paper's
w0 = 10, sigma = 5 px (best of ``--repeat`` warm runs; the first call, which loads or compiles
the numba kernel, reported apart) and, once each:
- the reference, 2D only (in 3D it would take ~8 min): one full-image
  ``scipy.ndimage.distance_transform_edt`` per cell, the two smallest distances per pixel, as
  Guerrero-Pena's ``unetwmap`` and its Python ports do;
- medseg's path without numba: one EDT per cell on its box grown by the cutoff (exact).
Checks each against medseg (max abs difference of the weights), prints the times, the ratios
and PASS/FAIL against the targets: 2D under 0.2 s, 3D under 3 s.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from unittest.mock import patch

import numpy as np
from scipy import ndimage

from medseg.transforms import weight_map
from medseg.transforms.weight_map import border_cutoff, unet_weight_map

W0, SIGMA = 10.0, 5.0
TARGETS = {2: 0.2, 3: 3.0}


def touching_cells(shape: tuple[int, ...], n: int, radius: tuple[float, float], seed: int) -> np.ndarray:
    """``n`` non-overlapping discs/spheres; half are put against an earlier one (0-1 px apart)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    while len(centres) < n:
        r = rng.uniform(*radius)
        if centres and rng.random() < 0.5:
            j = rng.integers(len(centres))
            u = rng.normal(size=len(shape))
            c = centres[j] + (radii[j] + r + rng.uniform(0.0, 1.0)) * u / np.linalg.norm(u)
        else:
            c = rng.uniform(0, shape)
        box = tuple(
            slice(max(0, int(ci - r)), min(s, int(ci + r) + 2)) for ci, s in zip(c, shape, strict=True)
        )
        grid = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
        inside = sum((g - ci) ** 2 for g, ci in zip(grid, c, strict=True)) <= r * r
        if inside.any() and not labels[box][inside].any():
            centres.append(c)
            radii.append(r)
            labels[box][inside] = len(centres)
    return labels


def touching_pairs(labels: np.ndarray) -> int:
    """Pairs of cells with face-adjacent pixels."""
    pairs = []
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1].ravel(), a[1:].ravel()
        keep = (lo > 0) & (hi > 0) & (lo != hi)
        pairs.append(np.stack([np.minimum(lo, hi)[keep], np.maximum(lo, hi)[keep]], axis=1))
    return len(np.unique(np.concatenate(pairs), axis=0))


def per_cell_reference(labels: np.ndarray) -> np.ndarray:
    """One full-image EDT per cell, sorted, two smallest: the common implementation."""
    n_fg = np.count_nonzero(labels)
    w_bg, w_fg = labels.size / (2 * (labels.size - n_fg)), labels.size / (2 * n_fg)
    ids = [i for i in np.unique(labels) if i != 0]
    dist = np.sort([ndimage.distance_transform_edt(labels != i) for i in ids], axis=0)
    border = W0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * SIGMA**2)) * (labels == 0)
    return np.where(labels > 0, w_fg, w_bg) + border


def without_numba(labels: np.ndarray) -> np.ndarray:
    """``unet_weight_map`` as it runs where numba is not installed (one EDT per cell box)."""
    with patch.object(weight_map, "_numba_stage", lambda: None):
        return unet_weight_map(labels, w0=W0, sigma=SIGMA)


def timed(fn: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(name: str, labels: np.ndarray, repeat: int, baselines: dict[str, Callable]) -> bool:
    start = time.perf_counter()
    unet_weight_map(labels, w0=W0, sigma=SIGMA)
    first = time.perf_counter() - start
    ours, weights = timed(lambda: unet_weight_map(labels, w0=W0, sigma=SIGMA), repeat)
    cells = len(np.unique(labels)) - 1
    print(f"{name}: {cells} cells, {touching_pairs(labels)} pairs touching (face-adjacent pixels)")
    print(f"  {'medseg unet_weight_map':40s} {ours:7.3f} s  (best of {repeat}; first call {first:.2f} s)")
    for label, fn in baselines.items():
        theirs, expected = timed(lambda fn=fn: fn(labels), 1)
        diff = np.abs(weights - expected).max()
        print(f"  {label:40s} {theirs:7.3f} s  {theirs / ours:6.1f}x medseg's time, max |diff| {diff:.1e}")
    ok = ours < TARGETS[labels.ndim]
    print(f"  target < {TARGETS[labels.ndim]} s: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-3d-check", action="store_true", help="skip the 3D no-numba run (~10 s)")
    args = parser.parse_args()
    try:
        import numba

        kernel = f"numba {numba.__version__}"
    except ImportError:
        kernel = "no numba: scipy per-cell boxes"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"w0={W0}, sigma={SIGMA} px, cutoff {border_cutoff(W0, SIGMA):.1f} px; {kernel}; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )
    image = touching_cells((512, 512), 300, (6.0, 11.0), seed=0)
    volume = touching_cells((64, 256, 256), 500, (4.0, 7.0), seed=1)
    fallback = "medseg without numba (EDT per cell box)"
    reference = {"reference (one full EDT per cell)": per_cell_reference, fallback: without_numba}
    ok = run("2D 512x512", image, args.repeat, reference)
    ok &= run("3D 256x256x64", volume, args.repeat, {} if args.skip_3d_check else {fallback: without_numba})
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
