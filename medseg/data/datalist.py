"""``medseg data datalist``: write a manifest for a dataset folder in the nnU-Net v2 or MSD layout.

Recognised (the layouts of nnU-Net v2's ``nnUNet_raw/DatasetXXX_Name`` and of the Medical Segmentation
Decathlon's ``TaskXX_Name``)::

    imagesTr/case_0000.nii.gz [case_0001.nii.gz ...]   nnU-Net: one file per channel
    imagesTr/case.nii.gz                              MSD: one file per case (a 4D file for channels)
    labelsTr/case.nii.gz
    imagesTs/...                                      optional, no labels
    dataset.json                                      optional: names, channels, labels, licence

MONAI's ``monai.apps.datasets.DecathlonDataset`` and nnU-Net read these folders but neither writes a
datalist with checksums for an arbitrary copy, so the folder walk is ours; reading uses nibabel and
``medseg.io``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.image_info import READ_ERRORS, read_info, read_voxels
from medseg.data.manifest import manifest_problems
from medseg.data.verify import sha256_file
from medseg.errors import InputError
from medseg.io.atomic import atomic_path
from medseg.io.registry import image_kind, image_stem
from medseg.typing import PathLike

CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
FILL_IN = "unknown: fill in"


def build_manifest(folder: PathLike) -> dict[str, Any]:
    """A manifest (header, lists, sha256 per file) for the dataset in ``folder``; reads every file."""
    folder = Path(folder)
    if not (folder / "imagesTr").is_dir():
        raise InputError(f"{folder}: no imagesTr/ folder (expected the nnU-Net v2 or MSD layout)")
    described = _dataset_json(folder)
    labels = _label_files(folder / "labelsTr")
    training, nnunet = _group(folder / "imagesTr", labels)
    test, _ = _group(folder / "imagesTs", None, nnunet) if (folder / "imagesTs").is_dir() else ({}, nnunet)
    if unused := sorted(set(labels) - set(training)):
        raise InputError(
            f"{folder / 'labelsTr' / labels[unused[0]].name}: a label without an image in imagesTr/"
        )
    channels = _channel_count(folder, {**training, **test})
    manifest = _header(folder, described, channels, training, labels)
    manifest["numTest"] = len(test)
    every = [f for files in (*training.values(), *test.values()) for f in files] + list(labels.values())
    manifest["sha256"] = {_rel(folder, f): sha256_file(f) for f in sorted(every)}
    manifest["training"] = [_entry(folder, files, labels[case]) for case, files in training.items()]
    manifest["test"] = [_entry(folder, files, None) for case, files in test.items()]
    problems = manifest_problems(manifest)
    if problems:  # only a dataset.json with unusable values gets here
        raise InputError(f"{folder / 'dataset.json'}: cannot make a manifest of it: {'; '.join(problems)}")
    return manifest


def write_json(data: object, out: PathLike) -> Path:
    """Write ``data`` as JSON, atomically (the file appears whole or not at all)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def _dataset_json(folder: Path) -> dict[str, Any]:
    path = folder / "dataset.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    return data


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and image_kind(p) not in ("unknown", "dicom"))


def _label_files(folder: Path) -> dict[str, Path]:
    return {image_stem(p): p for p in _image_files(folder)} if folder.is_dir() else {}


def _group(folder: Path, labels: dict[str, Path] | None, nnunet: bool | None = None) -> tuple[dict, bool]:
    """Image files by case: ``{case: [channel files]}``, and whether the names are nnU-Net's.

    With labels, a name is a whole case when its label exists (MSD), else a channel file when the name
    without ``_XXXX`` has one (nnU-Net). Without labels (imagesTs/) the training layout decides.
    """
    cases: dict[str, dict[int, Path]] = {}
    uses_suffix = False
    for path in _image_files(folder):
        stem, match = image_stem(path), CHANNEL_FILE.match(image_stem(path))
        whole = stem in labels if labels is not None else not nnunet
        if not whole and match and (labels is None or match["case"] in labels):
            cases.setdefault(match["case"], {})[int(match["channel"])] = path
            uses_suffix = True
        elif whole or labels is None:
            cases.setdefault(stem, {})[0] = path
        else:
            expected = f"labelsTr/{match['case'] if match else stem}{_suffix(path)}"
            raise InputError(f"{path}: no label for this image in labelsTr/ (expected {expected})")
    for case, channels in cases.items():
        if sorted(channels) != list(range(len(channels))):
            found = ", ".join(f"{c:04d}" for c in sorted(channels))
            raise InputError(
                f"{folder}: case {case} has channel files {found}; expected 0000 to {len(channels) - 1:04d}"
            )
    return {case: [ch[i] for i in sorted(ch)] for case, ch in sorted(cases.items())}, uses_suffix


def _channel_count(folder: Path, cases: dict[str, list[Path]]) -> int:
    counts = {len(files) for files in cases.values()}
    if len(counts) > 1:
        raise InputError(f"{folder}: cases have different numbers of channel files ({sorted(counts)})")
    return counts.pop() if counts else 1


def _header(
    folder: Path, described: dict, channels: int, training: dict[str, list[Path]], labels: dict[str, Path]
) -> dict[str, Any]:
    first = next(iter(training.values()))[0] if training else None
    size, file_channels = _tensor_size(first, channels) if first is not None else ("3D", channels)
    modality = described.get("channel_names") or described.get("modality") or {}
    if len(modality) != file_channels:
        modality = {str(i): f"channel {i}" for i in range(file_channels)}
    header = {
        "name": str(described.get("name", folder.name)),
        "description": str(described.get("description", "")),
        "tensorImageSize": described.get("tensorImageSize", size),
        "modality": {str(k): str(v) for k, v in modality.items()},
        "labels": _label_map(folder, described.get("labels"), labels),
        "numTraining": len(training),
        "numTest": 0,
        "licence": str(described.get("licence", described.get("license", FILL_IN))),
        "citation": str(described.get("citation", described.get("reference", FILL_IN))),
        "source": {
            "note": f"built by `medseg data datalist` from the folder {folder.name}; say where it comes from"
        },
    }
    header.update({k: described[k] for k in ("reference", "release") if k in described})
    regions = {k: v for k, v in (described.get("labels") or {}).items() if isinstance(v, list)}
    if regions:
        header["regions"] = regions  # nnU-Net region training: a name for a set of label ids
    return header


def _tensor_size(first: Path, channels: int) -> tuple[str, int]:
    """ "2D"/"3D"/"4D" and the channels per case, from the first training image's header."""
    try:
        info = read_info(first)
    except READ_ERRORS as err:
        raise InputError(f"{first}: unreadable ({err})") from None
    ndim, shape = info.squeezed_ndim(2), info.shape
    if ndim == 4 and channels == 1:
        return "4D", shape[3]  # MSD: one 4D file holds the channels
    return ("2D" if ndim == 2 else "4D" if channels > 1 else "3D"), channels


def _label_map(folder: Path, described: object, labels: dict[str, Path]) -> dict[str, str]:
    """dataset.json's labels in the manifest's ``{"id": "name"}`` form (MSD's form already; nnU-Net v2
    writes ``{"name": id}``, or a list of ids for a region). Without them: the ids found in the files."""
    if isinstance(described, dict) and described:
        if all(isinstance(v, str) for v in described.values()):
            return {str(k): v for k, v in described.items()}
        try:
            ids = {int(v): str(name) for name, v in described.items() if not isinstance(v, list)}
            for value in (v for v in described.values() if isinstance(v, list)):
                for i in value:  # ids that only appear inside regions have no name of their own
                    ids.setdefault(int(i), f"label {i}")
        except (TypeError, ValueError):
            raise InputError(
                f'{folder / "dataset.json"}: labels are neither MSD\'s {{"1": "name"}} nor nnU-Net\'s '
                '{"name": 1} form'
            ) from None
        return {str(i): ids[i] for i in sorted(ids)}
    found: set[int] = {0}
    for path in labels.values():
        try:
            found |= {int(v) for v in np.unique(read_voxels(path, read_info(path)))}
        except READ_ERRORS as err:
            raise InputError(f"{path}: unreadable label ({err})") from None
    return {str(i): "background" if i == 0 else f"label {i}" for i in sorted(found)}


def _entry(folder: Path, files: list[Path], label: Path | None) -> dict[str, Any]:
    images = [_rel(folder, f) for f in files]
    entry: dict[str, Any] = {"image": images if len(images) > 1 else images[0]}
    if label is not None:
        entry["label"] = _rel(folder, label)
    return entry


def _rel(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()


def _suffix(path: Path) -> str:
    return path.name[len(image_stem(path)) :]
