"""The inputs of ``medseg evaluate``: pairing predictions with references, reading them onto one grid,
and the options that name labels and regions.

Pairing: two files are one case; two folders are matched by case name, where a case's name is the
file name without its image suffix and without one of ``CASE_SUFFIXES`` (``liver_7_seg.nii.gz`` and
``liver_7.nii.gz`` are case ``liver_7``; BraTS's ``-seg`` too); a folder written by ``medseg segment``
(one sub-folder per case) is read through its ``<case>_seg``/``_regions``/``_instances`` files. A
datalist is a JSON list of ``{"pred": ..., "label": ...}`` entries (optionally ``"name"``), or a
Decathlon-style object whose lists hold such entries; relative paths are from the JSON's folder.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.instance.labels import check_instances
from medseg.io.atomic import MARKER
from medseg.io.case import CaseImage, read_case
from medseg.io.registry import image_kind, image_stem
from medseg.io.resample import label_to_grid
from medseg.typing import PathLike

CASE_SUFFIXES = (
    *("_seg", "_regions", "_instances", "_pred", "_prediction", "_label", "_labels", "_mask"),
    *("-seg", "-label", "-pred"),
)
GRID_TOLERANCE = 0.1
"""Voxels: grids whose corners agree this well are the same grid (nearest-neighbour resampling would
not move a voxel), as the NIfTI reader's sform/qform check."""


@dataclass(frozen=True)
class CasePair:
    name: str
    pred: Path
    reference: Path


def case_name(path: PathLike) -> str:
    """A file's case name: its stem without one trailing ``CASE_SUFFIXES`` entry."""
    stem = image_stem(path)
    suffix = next((s for s in CASE_SUFFIXES if stem.endswith(s) and len(stem) > len(s)), "")
    return stem[: len(stem) - len(suffix)]


def pair_cases(
    pred: PathLike, reference: PathLike | None, prefer: Sequence[str] = ("seg", "regions")
) -> tuple[list[CasePair], list[str]]:
    """The cases to score, and the files that have no partner (``pred: name``, ``reference: name``)."""
    pred = Path(pred)
    if not pred.exists():
        raise InputError(f"{pred}: file not found")
    if reference is None:
        if pred.suffix.lower() != ".json" or not pred.is_file():
            raise InputError(
                f"{pred}: give a reference (file or folder), or a datalist JSON with pred/label entries"
            )
        return _datalist(pred), []
    if pred.suffix.lower() == ".json":
        raise InputError(f"{pred}: a datalist names its own references; give no REF after it")
    reference = Path(reference)
    if not reference.exists():
        raise InputError(f"{reference}: file not found")
    if pred.is_dir() != reference.is_dir():
        raise InputError(f"{pred}, {reference}: give two files or two folders, not one of each")
    if not pred.is_dir():
        return [CasePair(case_name(reference), pred, reference)], []
    preds, refs = _folder_cases(pred, prefer), _folder_cases(reference, prefer)
    pairs = [CasePair(name, preds[name], refs[name]) for name in sorted(preds.keys() & refs.keys())]
    if not pairs:
        raise InputError(
            f"{pred}, {reference}: no case name is in both folders ({len(preds)} and {len(refs)} images)"
        )
    unmatched = [f"pred: {n}" for n in sorted(preds.keys() - refs.keys())]
    return pairs, unmatched + [f"reference: {n}" for n in sorted(refs.keys() - preds.keys())]


def _folder_cases(folder: Path, prefer: Sequence[str]) -> dict[str, Path]:
    """Case name -> image file in ``folder`` (top level; ``medseg segment`` case folders included)."""
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and (entry / MARKER).is_file():
            path = _segment_output(entry, prefer)
        elif entry.is_file() and image_kind(entry) != "unknown" and not entry.name.endswith("_overlay.png"):
            path = entry
        else:
            continue
        if path is not None:
            found.setdefault(case_name(path), []).append(path)
    return {name: _one_per_case(folder, name, paths, prefer) for name, paths in found.items()}


def _one_per_case(folder: Path, name: str, paths: list[Path], prefer: Sequence[str]) -> Path:
    """The case's file; of several, the preferred ``medseg segment`` output (``<case>_regions`` and
    ``<case>_seg`` side by side), else a one-line error."""
    for kind in prefer if len(paths) > 1 else ():
        chosen = [p for p in paths if image_stem(p) == f"{name}_{kind}"]
        if len(chosen) == 1:
            return chosen[0]
    if len(paths) > 1:
        raise InputError(
            f"{folder}: {', '.join(p.name for p in paths)} are all case {name!r}; keep one per case"
        )
    return paths[0]


def _segment_output(case_dir: Path, prefer: Sequence[str]) -> Path | None:
    for kind in prefer:
        for path in sorted(case_dir.glob(f"{case_dir.name}_{kind}.*")):
            if image_kind(path) != "unknown":
                return path
    return None


def _datalist(path: Path) -> list[CasePair]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable JSON datalist ({err})") from None
    if isinstance(data, dict):  # Decathlon-style: every list in it ("training", "validation", ...)
        data = list(itertools.chain.from_iterable(v for v in data.values() if isinstance(v, list)))
    entries = data if isinstance(data, list) else []
    if not entries:
        raise InputError(f'{path}: no entries; expected a list of {{"pred": ..., "label": ...}}')
    pairs = []
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("pred"), str)
            or not isinstance(entry.get("label"), str)
        ):
            raise InputError(f'{path}: entry {i} needs "pred" and "label" paths, got {str(entry)[:80]}')
        pred, ref = (path.parent / entry[k] for k in ("pred", "label"))
        pairs.append(CasePair(str(entry.get("name") or case_name(ref)), pred, ref))
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f'{path}: case {dup!r} appears twice; give entries a unique "name"')
    return pairs


def read_pair(pair: CasePair) -> tuple[CaseImage, CaseImage, bool]:
    """Both sides as integer label maps (or 0/1 channels), the prediction on the reference's grid;
    the flag says whether it had to be resampled."""
    pred, ref = (_read_labels(p) for p in (pair.pred, pair.reference))
    if pred.spatial_dims != ref.spatial_dims:
        raise InputError(
            f"{pair.pred}: {pred.spatial_dims}D prediction, {ref.spatial_dims}D reference {pair.reference}"
        )
    if same_grid(pred, ref):
        return pred, ref, False
    return _resampled(pred, ref), ref, True


def _read_labels(path: Path) -> CaseImage:
    case = read_case(path)
    case.array = check_instances(case.array, f"{path}: label map")
    if case.array.ndim > case.spatial_dims and case.channels == 1:  # a NIfTI's trailing axis of size 1
        case.array = case.array[..., 0]
    return case


def _corners(case: CaseImage) -> np.ndarray:
    """World positions (RAS) of the grid's corner voxels, one per column."""
    ends = [(0, n - 1) for n in case.spatial_shape] + [(0,)] * (3 - case.spatial_dims)
    index = np.array(list(itertools.product(*ends)), float).T
    return (case.geometry.affine @ np.vstack([index, np.ones(index.shape[1])]))[:3]


def same_grid(a: CaseImage, b: CaseImage, tolerance: float = GRID_TOLERANCE) -> bool:
    """Same spatial shape, and every corner voxel at the same place within ``tolerance`` voxels of ``b``."""
    if a.spatial_shape != b.spatial_shape:
        return False
    in_voxels = np.linalg.solve(b.geometry.affine[:3, :3], _corners(a) - _corners(b))
    return bool(np.abs(in_voxels).max() <= tolerance)


def _resampled(pred: CaseImage, ref: CaseImage) -> CaseImage:
    where = f"{pred.path} (shape {pred.spatial_shape}) vs reference {ref.path} (shape {ref.spatial_shape})"
    if "raster" in (pred.kind, ref.kind):
        raise InputError(f"{where}: the grids differ and PNG/JPEG carry no geometry to resample by")
    if int(pred.array.max(initial=0)) > np.iinfo(np.int16).max:
        raise InputError(f"{where}: the grids differ and ids above 32767 cannot be resampled")
    pc, rc = _corners(pred), _corners(ref)
    if (np.maximum(pc.min(1), rc.min(1)) > np.minimum(pc.max(1), rc.max(1)) + 1e-6).any():
        raise InputError(f"{where}: the two grids do not overlap in space; check their affines")
    channels = pred.channel_first() if pred.channels > 1 else pred.array[None]
    flat = ref.spatial_dims == 2  # nibabel resamples 3D images: 2D grids get a one-voxel third axis
    shape = (*ref.spatial_shape, 1) if flat else ref.spatial_shape
    out = [
        label_to_grid(c[..., None] if flat else c, pred.geometry.affine, shape, ref.geometry.affine)
        for c in channels
    ]
    out = [o[..., 0] if flat else o for o in out]
    array = out[0] if pred.channels == 1 else np.stack(out, axis=-1)
    return CaseImage(pred.path, array, ref.geometry, ref.spatial_dims, pred.kind)


def units(kind: str, spatial_dims: int) -> tuple[str, str, float]:
    """``(distance unit, volume unit, unit volume per spacing unit^dims)`` for an image of ``kind``."""
    if kind == "tiff":
        return "um", f"um{spatial_dims}", 1.0
    if kind == "raster":
        return "px", "px", 1.0
    return ("mm", "mL", 1e-3) if spatial_dims == 3 else ("mm", "mm2", 1.0)


REGION_PRESETS = {
    # MONAI's channel order (ConvertToMultiChannelBasedOnBratsClasses), which medseg's
    # brain_tumor_mri_segmentation bundle writes: region channels are matched by position.
    "brats": "TC=1,3;WT=1,2,3;ET=3",  # BraTS 2023 labels: 1 necrosis, 2 oedema, 3 enhancing
    "brats2021": "TC=1,4;WT=1,2,4;ET=4",  # BraTS 2018-2021 labels: 4 enhancing
}


def parse_regions(text: str) -> dict[str, tuple[int, ...]]:
    """``"TC=1,3;WT=1,2,3;ET=3"`` (or a ``REGION_PRESETS`` name) -> ``{"TC": (1, 3), ...}``, in order."""
    text = REGION_PRESETS.get(text.strip().lower(), text)
    regions = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, values = part.partition("=")
        try:
            ids = tuple(int(v) for v in values.split(","))
        except ValueError:
            ids = ()
        if not sep or not name.strip() or not ids or min(ids) < 1:
            raise InputError(
                f"--regions {text!r}: expected NAME=1,2,3;NAME=1,3 (label values >= 1 per region)"
            )
        regions[name.strip()] = ids
    if not regions:
        raise InputError(f"--regions {text!r}: no region defined")
    return regions


def read_label_names(path: PathLike) -> dict[int, str]:
    """Label value -> name from a JSON file: ``{"1": "liver"}``, ``{"liver": 1}`` (nnU-Net), or either
    under a ``"labels"`` key (Decathlon and nnU-Net ``dataset.json``); background (0) left out."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        data = data.get("labels", data)
        if all(isinstance(v, int) for v in data.values()):
            names = {int(v): str(k) for k, v in data.items()}
        else:
            names = {int(k): str(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise InputError(
            f'{path}: not a JSON object of label value -> name, e.g. {{"1": "liver"}} ({err})'
        ) from None
    return {k: v for k, v in names.items() if k != 0}


def bundle_label_names(bundle: PathLike) -> dict[int, str]:
    """A bundle's label names (its metadata's ``channel_def``); a sigmoid bundle's are region numbers."""
    from medseg.bundle.contract import read_contract
    from medseg.workflows.bundles import find_bundle

    contract = read_contract(find_bundle(bundle))
    return contract.label_names() if contract.background_first else contract.region_names()


def label_numbers(text: str, names: dict[int, str]) -> tuple[int, ...]:
    """``"1,3"`` or ``"liver,spleen"`` (names from ``names``) -> label numbers."""
    return tuple(
        _label_number(item.strip(), names, "--labels-to-score") for item in text.split(",") if item.strip()
    )


def parse_tolerance(text: str, names: dict[int, str]) -> tuple[float | None, dict[int, float]]:
    """``"2"``, ``"1=1.5,liver=3"`` or ``"2,3=0.5"`` -> (default or None, {label: mm})."""
    default, per_label = None, {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.rpartition("=")
        try:
            mm = float(value)
        except ValueError:
            mm = -1.0
        if not np.isfinite(mm) or mm < 0:
            raise InputError(f"--nsd-tolerance {text!r}: expected MM or LABEL=MM (>= 0), comma-separated")
        if sep:
            per_label[_label_number(key.strip(), names, "--nsd-tolerance")] = mm
        else:
            default = mm
    return default, per_label


def _label_number(item: str, names: dict[int, str], option: str) -> int:
    if item.isdigit():
        return int(item)
    found = [k for k, v in names.items() if v.lower() == item.lower()]
    if not found:
        known = ", ".join(names.values()) or "none: give --labels or --bundle"
        raise InputError(f"{option}: {item!r} is neither a label number nor a label name (names: {known})")
    return found[0]
