"""The writers, in one registry: a ``Prediction`` and the case it came from -> output files.

``--format`` chooses the label-map formats (``auto``: the input's own format, and NIfTI beside NRRD
and MetaImage); a table and an overlay PNG are always written. By kind:

- labels: ``<case>_seg.<ext>``, ``<case>_volumes.csv/json`` (one row per label), DICOM SEG/RTSTRUCT;
- regions: ``<case>_regions.<ext>`` (one channel per region, channel last), the bundle's merged label
  map ``<case>_seg.<ext>`` if it makes one, ``<case>_volumes.csv/json`` (one row per region), DICOM
  SEG with overlapping segments;
- instances: ``<case>_instances.<ext>`` (ids), ``<case>_classes.<ext>`` (the class map, if any),
  ``<case>_instances.csv/json`` (one row per instance).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.bundle.prediction import Prediction
from medseg.errors import InputError
from medseg.inference.stats import label_stats, write_table
from medseg.io.case import CaseImage

VOLUME_FORMATS = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "tiff": ".ome.tif"}
DICOM_FORMATS = ("seg", "rtstruct")
DICOM_NAMES = {"seg": "DICOM SEG", "rtstruct": "RTSTRUCT"}
FORMATS = ("auto", *VOLUME_FORMATS, *DICOM_FORMATS)
AUTO = {
    "dicom": ("nifti",),
    "nifti": ("nifti",),
    "nrrd": ("nifti", "nrrd"),
    "mha": ("nifti", "mha"),
    "tiff": ("tiff",),
    "raster": ("tiff",),
}


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise InputError(
            f"unknown output format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def volume_formats(formats: Sequence[str], case: CaseImage) -> list[str]:
    """The label-map formats for this case (``auto`` expanded by the input's format)."""
    chosen = [f for f in formats if f in VOLUME_FORMATS]
    if "auto" in formats:
        chosen += [f for f in AUTO.get(case.kind, ("nifti",)) if f not in chosen]
    if "tiff" in chosen and case.kind not in ("tiff", "raster"):
        raise InputError(f"{case.path}: --format tiff is for microscopy images (TIFF/PNG input)")
    return chosen


def write_volume(path: Path, array: np.ndarray, case: CaseImage, channel_last: bool = False) -> Path:
    """A label map (or a channel-last stack) on the case's grid, in the format its suffix names."""
    name = path.name.lower()
    if name.endswith((".nii.gz", ".nii")):
        from medseg.io.nifti import write_nifti

        return write_nifti(path, array, case.geometry.affine)
    if name.endswith((".tif", ".tiff")):
        from medseg.io.tiff import write_tiff

        return write_tiff(path, array, case.geometry, channel_last=channel_last)
    from medseg.io.sitk_image import write_sitk_image

    return write_sitk_image(path, array, case.geometry)


def _intensity(case: CaseImage) -> np.ndarray | None:
    return case.array if case.channels == 1 else None


def _overlay(path: Path, case: CaseImage, label: np.ndarray, names: dict[int, str], modality: str) -> Path:
    from medseg.io.overlay import display_window, save_overlay, save_overlay_2d

    rgb = case.kind == "raster"  # a photo or slide is shown in its own colours
    image = case.array if case.channels == 1 or rgb else case.array[..., 0]  # else the first channel
    if case.spatial_dims == 2:
        return save_overlay_2d(path, image, label, names, modality)
    return save_overlay(
        path, image, label, case.geometry.affine, names, window=display_window(image, modality)
    )


def region_rows(regions: np.ndarray, case: CaseImage, names: dict[int, str]) -> list[dict]:
    """One statistics row per region (regions may overlap, so each is counted on its own)."""
    rows = []
    for r, region in enumerate(regions, start=1):
        rows += label_stats(
            region.astype(np.uint8),
            case.geometry.affine,
            {1: names.get(r, f"region_{r}")},
            image=_intensity(case),
        )
        rows[-1]["label"] = r
    return rows


def write_prediction(
    pred: Prediction,
    case: CaseImage,
    out_dir: Path,
    stem: str,
    formats: Sequence[str],
    modality: str = "",
    source=None,
    algorithm: tuple[str, str] = ("medseg", "0"),
    deidentify=None,
) -> tuple[dict[str, Path], list[dict]]:
    """Write every output of ``pred`` into ``out_dir``; returns ``{what: path}`` and the table rows.
    ``deidentify`` (a ``medseg.io.deid.Deidentifier``): the SEG and RTSTRUCT are anonymised with it."""
    files: dict[str, Path] = {}
    exts = {f: VOLUME_FORMATS[f] for f in volume_formats(formats, case)}
    if pred.kind == "instances":
        from medseg.instance.table import instance_table

        unit = "um" if case.kind == "tiff" else "px" if case.kind == "raster" else "mm"
        for fmt, ext in exts.items():
            files[f"instances ({fmt})"] = write_volume(
                out_dir / f"{stem}_instances{ext}", pred.instances, case
            )
            if pred.labels is not None:
                files[f"classes ({fmt})"] = write_volume(out_dir / f"{stem}_classes{ext}", pred.labels, case)
        rows, table = (
            instance_table(pred.instances, case.geometry, pred.labels, pred.names, unit, pred.scores),
            "instances",
        )
        shown, shown_names = pred.instances, {}
    elif pred.kind == "regions":
        stack = np.moveaxis(pred.regions.astype(np.uint8), 0, -1)
        for fmt, ext in exts.items():
            files[f"regions ({fmt})"] = write_volume(
                out_dir / f"{stem}_regions{ext}", stack, case, channel_last=True
            )
            if pred.labels is not None:
                files[f"label map ({fmt})"] = write_volume(out_dir / f"{stem}_seg{ext}", pred.labels, case)
        rows, table = region_rows(pred.regions, case, pred.names), "volumes"
        numbers = np.arange(1, len(pred.regions) + 1, dtype=np.uint8).reshape(-1, *[1] * case.spatial_dims)
        shown = np.max(pred.regions * numbers, axis=0)  # where regions overlap, the later one shows
        shown_names = pred.names
    else:
        for fmt, ext in exts.items():
            files[f"label map ({fmt})"] = write_volume(out_dir / f"{stem}_seg{ext}", pred.labels, case)
        rows = label_stats(pred.labels, case.geometry.affine, pred.names, image=_intensity(case))
        table = "volumes"
        shown, shown_names = pred.labels, pred.names
    files["table (csv)"], files["table (json)"] = write_table(
        rows, out_dir / f"{stem}_{table}.csv", out_dir / f"{stem}_{table}.json"
    )
    files["overlay"] = _overlay(out_dir / f"{stem}_overlay.png", case, shown, shown_names, modality)
    files.update(_dicom_outputs(pred, case, out_dir, stem, formats, source, algorithm, deidentify))
    return files, rows


def _dicom_outputs(pred, case, out_dir, stem, formats, source, algorithm, deidentify) -> dict[str, Path]:
    if not any(f in DICOM_FORMATS for f in formats):
        return {}  # and pydicom and highdicom are not loaded
    from medseg.io.dicom_rtstruct import write_rtstruct
    from medseg.io.dicom_seg import write_seg, write_seg_regions

    files = {}
    name, version = algorithm
    for fmt in (f for f in formats if f in DICOM_FORMATS):
        path = out_dir / f"{stem}_{fmt}.dcm"
        if pred.kind == "instances":
            raise InputError(f"{case.path}: --format {fmt} is for semantic labels and regions, not instances")
        if pred.kind == "regions" and fmt == "rtstruct":
            raise InputError(
                f"{case.path}: RTSTRUCT holds one structure per voxel; use --format seg for regions"
            )
        writer = {"seg": write_seg, "rtstruct": write_rtstruct}[fmt]
        data = pred.labels
        if pred.kind == "regions":
            writer, data = write_seg_regions, pred.regions
        written = writer(
            data, case.geometry, source, pred.names, path, algorithm_name=name, algorithm_version=version
        )
        if written:
            # They copy the source's patient module, as the standard asks; shared outside the
            # hospital they must not (out_dir is a temporary folder: never seen un-anonymised).
            files[DICOM_NAMES[fmt]] = deidentify.file(written) if deidentify else written
    return files
