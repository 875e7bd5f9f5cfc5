"""Segment one scan with a bundle: label map (NIfTI, DICOM SEG, RTSTRUCT) on the input grid,
volume table, overlay PNG."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import InputError, MedsegError
from medseg.inference.stats import label_stats, write_table
from medseg.io import atomic_dir, read_image
from medseg.io.dicom import DicomSeries, find_series, select_series
from medseg.io.dicom_rtstruct import write_rtstruct
from medseg.io.dicom_seg import check_seg_source, write_seg
from medseg.io.overlay import save_overlay
from medseg.typing import PathLike
from medseg.workflows.bundles import bundle_labels, bundle_metadata, find_bundle, run_bundle

FORMATS = ("nifti", "seg", "rtstruct")

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    label_path: Path | None  # NIfTI label map, if asked for
    seg_path: Path | None  # DICOM SEG, if asked for and any label was found
    rtstruct_path: Path | None  # DICOM RTSTRUCT, likewise
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


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise InputError(
            f"unknown output format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def seg_source(image: Path, series: str | int | None, fmt: str) -> DicomSeries:
    """The DICOM series a SEG or RTSTRUCT will reference, checked before any work is done."""
    if not image.is_dir():
        raise InputError(f"{image}: --format {fmt} needs a DICOM folder as input (it references its source)")
    source = select_series(find_series(image), image, series)
    check_seg_source(source)
    return source


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
    series: str | int | None = None,
    formats: str | Sequence[str] = ("nifti",),
) -> SegmentResult:
    """Run the bundle's inference config on ``image`` (NIfTI file or DICOM folder) into ``out_dir``.

    ``series`` chooses one series of a folder that holds several (index or UID, as `medseg
    dicom ls` shows them); ``formats`` is any of ``nifti``, ``seg`` (DICOM SEG referencing the
    source series) and ``rtstruct`` (RT structure set, likewise). Everything is written into a
    temporary folder first and moved into ``out_dir`` only when the whole case succeeded, so a
    failure leaves no partial output.
    """
    image = Path(image)
    formats = parse_formats(formats)
    bundle_dir = find_bundle(bundle)
    dicom_formats = [f for f in formats if f in ("seg", "rtstruct")]
    source = seg_source(image, series, dicom_formats[0]) if dicom_formats else None
    array, geometry = read_image(image, series)
    check_volume(image, array)
    names = bundle_labels(bundle_dir)
    stem = output_stem(image)
    overrides = {"input_image": str(image), "input_series": series, "inferer#progress": progress}
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
        version = str(bundle_metadata(bundle_dir).get("version", "0"))
        dicom_out = {}
        for fmt, writer in (("seg", write_seg), ("rtstruct", write_rtstruct)):
            if fmt in formats:
                dicom_out[fmt] = writer(
                    label,
                    geometry,
                    source,
                    names,
                    tmp / f"{stem}_{fmt}.dcm",
                    algorithm_name=bundle_dir.name,
                    algorithm_version=version,
                )
        if "nifti" not in formats:
            written.unlink()
    out_dir = Path(out_dir)
    return SegmentResult(
        label_path=out_dir / written.name if "nifti" in formats else None,
        seg_path=out_dir / dicom_out["seg"].name if dicom_out.get("seg") else None,
        rtstruct_path=out_dir / dicom_out["rtstruct"].name if dicom_out.get("rtstruct") else None,
        stats_csv=out_dir / f"{stem}_volumes.csv",
        stats_json=out_dir / f"{stem}_volumes.json",
        overlay_png=out_dir / f"{stem}_overlay.png",
        label=label,
        affine=geometry.affine,
        stats=stats,
    )
