"""Dataset manifests: a Decathlon datalist plus a header saying what the files are.

A manifest is one JSON file (format: ``data_manifests/README.md``). Its ``training``, ``validation``
and ``test`` lists are MONAI's Decathlon datalist (``monai.data.load_decathlon_datalist`` reads them);
the header names the dataset, its channels (``modality``), its label map (``labels``), licence,
citation, where to obtain it, the expected case counts and, where the files are fixed, a sha256 per
file. Paths are relative to the dataset's root folder and never leave it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from medseg.errors import InputError
from medseg.typing import PathLike

# Required header keys and the JSON types they must have.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "tensorImageSize": str,
    "modality": dict,
    "labels": dict,
    "licence": str,
    "citation": str,
    "source": (dict, str),
    "numTraining": int,
    "numTest": int,
}
# What reading the files needs; the rest of the header documents the dataset (data_manifests/ requires
# it all, but `medseg data verify` also takes an MSD dataset.json, which has no citation or source).
FILE_KEYS = ("tensorImageSize", "modality", "labels")
SECTIONS = ("training", "validation", "test")
# Spatial dimensions per declared tensor size: "4D" is a 3D image with a channel axis (MSD's BraTS).
SPATIAL_DIMS = {"2D": 2, "3D": 3, "4D": 3}
LABEL_TYPES = ("semantic", "instance")
GEOMETRY_CHECKS = ("affine", "shape")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# nnU-Net names channel files case_0000.nii.gz, case_0001.nii.gz, ...
CHANNEL_SUFFIX = re.compile(r"_\d{4}$")


class PathEscapeError(InputError):
    """A manifest path that would read outside the dataset's root."""

    def __init__(self, relative: str, reason: str) -> None:
        super().__init__(f"{relative}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """One case of a manifest list: its image (one path, or one per channel) and optional label."""

    section: str
    index: int
    images: tuple[str, ...]
    label: str | None
    case: str
    channel_list: bool  # the image was given as a list of files, one per channel

    @property
    def where(self) -> str:
        """How reports name the entry: ``training[3]``."""
        return f"{self.section}[{self.index}]"

    @property
    def files(self) -> tuple[str, ...]:
        return self.images + ((self.label,) if self.label is not None else ())


@dataclass(frozen=True)
class Manifest:
    path: Path
    data: dict[str, Any]
    entries: tuple[Entry, ...]

    @property
    def name(self) -> str:
        return str(self.data.get("name", self.path.stem))

    @property
    def labels(self) -> dict[int, str]:
        return {int(k): v for k, v in self.data["labels"].items()}

    @property
    def channels(self) -> int:
        return len(self.data["modality"])

    @property
    def tensor_image_size(self) -> str:
        return self.data["tensorImageSize"]

    @property
    def spatial_dims(self) -> int:
        return SPATIAL_DIMS[self.tensor_image_size]

    @property
    def label_type(self) -> str:
        return self.data.get("label_type", "semantic")

    @property
    def geometry_check(self) -> str:
        return self.data.get("geometry_check", "affine")

    @property
    def sha256(self) -> dict[str, str]:
        return dict(self.data.get("sha256", {}))

    def section(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.section == name]


def load_manifest(path: PathLike, complete: bool = True) -> Manifest:
    """Read and check a manifest; a malformed one raises ``InputError`` listing what is wrong.

    ``complete=False`` asks only for what reading the files needs (``FILE_KEYS`` and the lists).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the manifest ({err})") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    problems = manifest_problems(data, complete)
    if problems:
        raise InputError(f"{path}: not a valid manifest: {'; '.join(problems)}")
    return Manifest(path, data, tuple(_entries(data)))


def manifest_problems(data: object, complete: bool = True) -> list[str]:
    """What keeps ``data`` from being a manifest (empty when it is one)."""
    if not isinstance(data, dict):
        return ["the top level is not a JSON object"]
    required = {k: v for k, v in REQUIRED.items() if complete or k in FILE_KEYS or k in data}
    problems = [
        f"header key {key!r} missing" if key not in data else f"{key!r} must be {_type_name(kind)}"
        for key, kind in required.items()
        if not (key in data and isinstance(data[key], kind) and not isinstance(data[key], bool))
    ]
    if problems:
        return problems
    problems += _value_problems(data)
    for section in SECTIONS:
        items = data.get(section, [])
        if not isinstance(items, list):
            problems.append(f"{section!r} must be a list")
            continue
        problems += [p for i, item in enumerate(items) if (p := _item_problem(section, i, item))]
    return problems


def _value_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    if data["tensorImageSize"] not in SPATIAL_DIMS:
        problems.append(f"tensorImageSize must be one of {', '.join(SPATIAL_DIMS)}")
    if sorted(data["modality"]) != [str(i) for i in range(len(data["modality"]))] or not data["modality"]:
        problems.append('modality keys must be "0", "1", ... (one per channel)')
    if not data["labels"] or not all(
        _is_int_key(k) and isinstance(v, str) for k, v in data["labels"].items()
    ):
        problems.append('labels must map label ids to names: {"0": "background", "1": ...}')
    if data.get("label_type", "semantic") not in LABEL_TYPES:
        problems.append(f"label_type must be one of {', '.join(LABEL_TYPES)}")
    if data.get("geometry_check", "affine") not in GEOMETRY_CHECKS:
        problems.append(f"geometry_check must be one of {', '.join(GEOMETRY_CHECKS)}")
    sums = data.get("sha256", {})
    if not isinstance(sums, dict) or not all(isinstance(v, str) and SHA256.match(v) for v in sums.values()):
        problems.append('sha256 must map relative paths to 64 lower-case hex digits: {"a/b.nii.gz": "..."}')
    if data.get("numTraining", 0) < 0 or data.get("numTest", 0) < 0:
        problems.append("numTraining and numTest must not be negative")
    return problems


def _item_problem(section: str, index: int, item: object) -> str | None:
    where = f"{section}[{index}]"
    if isinstance(item, str) and section == "test":
        return None  # MSD lists test images as plain paths
    if not isinstance(item, dict) or "image" not in item:
        return f'{where} must be an object with an "image" path'
    image = item["image"]
    if not (
        isinstance(image, str)
        or (isinstance(image, list) and image and all(isinstance(p, str) for p in image))
    ):
        return f"{where} image must be a path or a list of paths (one per channel)"
    if "label" in item and not isinstance(item["label"], str):
        return f"{where} label must be a path"
    if "case" in item and not isinstance(item["case"], str):
        return f"{where} case must be a string"
    return None


def _entries(data: dict[str, Any]) -> list[Entry]:
    entries = []
    for section in SECTIONS:
        for index, item in enumerate(data.get(section, [])):
            item = {"image": item} if isinstance(item, str) else item
            image = item["image"]
            images = tuple(image) if isinstance(image, list) else (image,)
            case = item.get("case") or case_name(images[0])
            entries.append(Entry(section, index, images, item.get("label"), case, isinstance(image, list)))
    return entries


def case_name(image: str) -> str:
    """A case's name from its (first) image path: the file name without its image suffix and without
    nnU-Net's channel suffix (``imagesTr/la_003_0000.nii.gz`` -> ``la_003``)."""
    from medseg.io.registry import image_stem

    return CHANNEL_SUFFIX.sub("", image_stem(PurePosixPath(image).name))


def count_problems(manifest: Manifest) -> list[str]:
    """Listed cases that disagree with numTraining/numTest (lists left empty are not counted)."""
    data = manifest.data
    problems = []
    labelled = len(manifest.section("training")) + len(manifest.section("validation"))
    if labelled and labelled != data.get("numTraining", labelled):
        problems.append(f"numTraining is {data['numTraining']} but training and validation list {labelled}")
    tests = len(manifest.section("test"))
    if tests and tests != data.get("numTest", tests):
        problems.append(f"numTest is {data['numTest']} but test lists {tests}")
    return problems


def resolve_path(root: PathLike, relative: str) -> Path:
    """``root / relative``, refused (``PathEscapeError``) when it would leave ``root``: an absolute
    path, a ``..`` component, or a symlink (anywhere on the way) that points outside."""
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute():
        raise PathEscapeError(relative, "absolute path; manifest paths are relative to the root")
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if ".." in parts:
        raise PathEscapeError(relative, "path escapes the root ('..')")
    root = Path(root)
    path = root.joinpath(*parts)
    real_root = root.resolve()
    real = path.resolve()  # follows every symlink on the way; a missing tail resolves as written
    if real != real_root and real_root not in real.parents:
        raise PathEscapeError(relative, f"symlink points outside the root (to {real})")
    return path


def _is_int_key(key: str) -> bool:
    return key.lstrip("-").isdigit()


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", dict: "an object", int: "an integer", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names[k] for k in kinds)
