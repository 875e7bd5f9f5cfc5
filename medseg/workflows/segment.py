"""Segment one scan with a bundle: label map on the input grid, volume table, overlay PNG."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import InputError, MedsegError
from medseg.inference.stats import label_stats, write_table
from medseg.io import atomic_dir, read_image
from medseg.io.overlay import save_overlay
from medseg.typing import PathLike
from medseg.workflows.bundles import bundle_labels, find_bundle, run_bundle

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    label_path: Path
    stats_csv: Path
    stats_json: Path
    overlay_png: Path
    label: np.ndarray
    affine: np.ndarray
    stats: list[dict]


def output_stem(image: PathLike) -> str:
    name = Path(image).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_volume(path: PathLike, array: np.ndarray, spatial_dims: int = 3) -> None:
    """A 3D bundle needs a 3D volume with more than one slice along every axis."""
    shape = array.shape
    if array.ndim < spatial_dims or sum(s > 1 for s in shape[:3]) < spatial_dims:
        raise InputError(f"{path}: image of shape {shape} is not a 3D volume; this bundle segments 3D scans")


def _root_medseg_error(err: BaseException) -> MedsegError | None:
    """MONAI wraps errors raised inside transforms; find ours in the chain of causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, MedsegError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def segment(
    image: PathLike,
    bundle: PathLike = "abdomen_ct_segmentation",
    out_dir: PathLike = "outputs/segment",
    device: str | None = None,
    progress: bool = True,
) -> SegmentResult:
    """Run the bundle's inference config on ``image`` (NIfTI file or DICOM folder) into ``out_dir``.

    Everything is written into a temporary folder first and moved into ``out_dir`` only when the
    whole case succeeded, so a failure leaves no partial output.
    """
    image = Path(image)
    array, geometry = read_image(image)
    check_volume(image, array)
    bundle_dir = find_bundle(bundle)
    names = bundle_labels(bundle_dir)
    stem = output_stem(image)
    overrides = {"input_image": str(image), "inferer#progress": progress}
    if device:
        overrides["device"] = f"$torch.device('{device}')"
    with atomic_dir(out_dir) as tmp:
        overrides["output_dir"] = str(tmp)
        try:
            run_bundle(bundle_dir, ["inference"], overrides, workflow_type="infer")
        except Exception as err:
            raise _root_medseg_error(err) or err from None
        written = tmp / f"{stem}_seg.nii.gz"
        label, label_geometry = read_image(written)
        if label.shape != array.shape or not np.allclose(label_geometry.affine, geometry.affine, atol=1e-4):
            raise MedsegError(f"{written}: label map is not on the input grid (bug: please report)")
        stats = label_stats(label, geometry.affine, names, image=array)
        write_table(stats, tmp / f"{stem}_volumes.csv", tmp / f"{stem}_volumes.json")
        save_overlay(tmp / f"{stem}_overlay.png", array, label, geometry.affine, names)
    out_dir = Path(out_dir)
    return SegmentResult(
        label_path=out_dir / f"{stem}_seg.nii.gz",
        stats_csv=out_dir / f"{stem}_volumes.csv",
        stats_json=out_dir / f"{stem}_volumes.json",
        overlay_png=out_dir / f"{stem}_overlay.png",
        label=label,
        affine=geometry.affine,
        stats=stats,
    )
