"""Overlay PNG of a label map over its image: axial, coronal and sagittal views of a volume
(radiological view), or the whole of a 2D image; the intensity window chosen by modality."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.io.atomic import atomic_path
from medseg.typing import Affine, PathLike


def _canonical(array: np.ndarray, affine: Affine) -> tuple[np.ndarray, tuple[float, ...]]:
    array = np.asarray(array)
    if array.dtype in (np.int64, np.uint64, bool):  # nibabel refuses 64-bit ints
        array = array.astype(np.int32)
    image = nib.as_closest_canonical(nib.Nifti1Image(array, np.asarray(affine, float)))
    return np.asarray(image.dataobj), tuple(float(z) for z in image.header.get_zooms()[:3])


def _views(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices of a RAS volume, oriented as a radiologist reads them."""
    i, j, k = centre
    axial = volume[:, :, k].T[::-1, ::-1]  # anterior up, patient right on the left
    coronal = volume[:, j, :].T[::-1, ::-1]  # superior up, patient right on the left
    sagittal = volume[i, :, :].T[::-1, ::-1]  # superior up, anterior on the left
    return [axial, coronal, sagittal]


CT_WINDOW = (-175.0, 250.0)  # soft-tissue window (HU)


def display_window(image: np.ndarray, modality: str = "") -> tuple[float, float]:
    """CT: the soft-tissue window; anything else (MR, microscopy): the 1st-99.5th percentiles."""
    if modality.upper() == "CT":
        return CT_WINDOW
    lo, hi = np.percentile(np.asarray(image, dtype=np.float32), [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def save_overlay_2d(
    path: PathLike, image: np.ndarray, label: np.ndarray, names: dict[int, str], modality: str = ""
) -> Path:
    """One panel: a 2D image ``(x, y)`` or RGB ``(x, y, 3)`` (shown as is) with ``label`` ``(x, y)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colours = ListedColormap(matplotlib.colormaps["tab10"].colors)
    rgb = image.ndim == 3
    view = np.swapaxes(image, 0, 1)  # (x, y) -> rows, cols
    fig, ax = plt.subplots(figsize=(8, 8 * view.shape[0] / max(view.shape[1], 1)), facecolor="black")
    if rgb:
        ax.imshow(np.clip(view / max(float(view.max()), 1.0), 0, 1), interpolation="nearest")
    else:
        lo, hi = display_window(image, modality)
        ax.imshow(view, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    mask = label.T
    ax.imshow(
        np.ma.masked_where(mask == 0, (mask - 1) % 10),
        cmap=colours,
        vmin=0,
        vmax=9,
        alpha=0.45,
        interpolation="nearest",
    )
    ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, facecolor="black", format="png", bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def save_overlay(
    path: PathLike,
    image: np.ndarray,
    label: np.ndarray,
    affine: Affine,
    names: dict[int, str],
    window: tuple[float, float] = (-175.0, 250.0),
) -> Path:
    """Write a 3-panel PNG cut through the centre of the labelled voxels (or of the volume)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    img, (sx, sy, sz) = _canonical(image, affine)
    lab, _ = _canonical(label, affine)
    found = np.argwhere(lab > 0)
    centre = tuple(int(v) for v in (found.mean(0) if len(found) else np.array(lab.shape) / 2))
    colours = ListedColormap(matplotlib.colormaps["tab10"].colors)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), facecolor="black")
    aspects = [sy / sx, sz / sx, sz / sy]
    for ax, view, mask, aspect, title in zip(
        axes, _views(img, centre), _views(lab, centre), aspects, ("axial", "coronal", "sagittal"), strict=True
    ):
        ax.imshow(view, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="nearest")
        shown = np.ma.masked_where(mask == 0, (mask - 1) % 10)
        ax.imshow(shown, cmap=colours, vmin=0, vmax=9, alpha=0.45, aspect=aspect, interpolation="nearest")
        ax.set_title(title, color="white")
        ax.axis("off")
    present = [int(v) for v in np.unique(lab) if v > 0]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours((v - 1) % 10)) for v in present]
    fig.legend(
        handles,
        [names.get(v, str(v)) for v in present],
        loc="lower center",
        ncol=max(1, len(present)),
        facecolor="black",
        labelcolor="white",
        frameon=False,
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, facecolor="black", format="png")
    plt.close(fig)
    return Path(path)
