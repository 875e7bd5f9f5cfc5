"""Turn what a user typed (files, folders, globs, a datalist) into a list of cases to segment."""

from __future__ import annotations

import glob
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from medseg.errors import InputError
from medseg.io.registry import image_kind, image_stem
from medseg.privacy import case_name
from medseg.typing import PathLike

DATALIST_KEYS = ("test", "testing", "validation", "training")


@dataclass(frozen=True)
class Case:
    name: str  # output file stem, unique within a run
    image: Path  # an image file or a DICOM folder (the first channel, when there are several files)
    series: str | int | None = None  # which series of a DICOM folder
    channels: tuple[Path, ...] = ()  # further channel files, in the bundle's channel order

    @property
    def images(self) -> list[Path]:
        return [self.image, *self.channels]


def _is_image_file(path: Path) -> bool:
    return path.is_file() and image_kind(path) not in ("unknown", "dicom")


def _datalist(path: Path) -> list[list[Path]]:
    """Images of a Decathlon-style datalist (its first list of test, testing, validation or
    training), or of a plain JSON list of paths or ``{"image": ...}`` items; relative to the file.
    An item whose image is a list names one file per channel."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable JSON datalist ({err})") from None
    if isinstance(data, dict):
        key = next((k for k in DATALIST_KEYS if isinstance(data.get(k), list)), None)
        if key is None:
            raise InputError(f"{path}: datalist has none of the lists {', '.join(DATALIST_KEYS)}")
        data = data[key]
    if not isinstance(data, list):
        raise InputError(f"{path}: a datalist is a list of images or a dict of such lists")
    images = []
    for item in data:
        image = item.get("image") if isinstance(item, dict) else item
        files = image if isinstance(image, list) and image else [image]
        if not all(isinstance(f, str) for f in files):
            raise InputError(f"{path}: datalist item {item!r} has no image path")
        images.append([path.parent / f for f in files])  # as given: relative stays relative
    return images


def _dicom_cases(folder: Path, series: str | int | None, all_series: bool) -> list[Case]:
    """The chosen series of ``folder``, its only one, or with ``all_series`` one case per series."""
    from medseg.io.dicom import find_series, select_series

    found = find_series(folder)
    if all_series and len(found) > 1:
        return [Case(f"{folder.name}_series{i}", folder, i) for i in range(len(found))]
    chosen = select_series(found, folder, series)  # several and none chosen: a clear error
    return [Case(folder.name, folder, None if len(found) == 1 else chosen.key)]


def _expand_one(text: str, series: str | int | None, all_series: bool) -> list[Case]:
    if any(c in text for c in "*?["):
        matches = sorted(glob.glob(text))
        if not matches:
            raise InputError(f"{text}: the pattern matches nothing")
        return [case for m in matches for case in _expand_one(m, series, all_series)]
    path = Path(text)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_file() and path.suffix.lower() == ".json":
        return [Case(image_stem(p[0]), p[0], None, tuple(p[1:])) for p in _datalist(path)]
    if path.is_file():
        return [Case(image_stem(path), path, series)]
    files = sorted(p for p in path.iterdir() if _is_image_file(p))
    if files:
        return [Case(image_stem(p), p) for p in files]
    return _dicom_cases(path, series, all_series)


def expand_inputs(
    inputs: list[PathLike], series: str | int | None = None, all_series: bool = False, channels: bool = False
) -> list[Case]:
    """Cases from files, folders (of one DICOM series, or any series with ``series``, or each
    series with ``all_series``; a folder of image files: one case per file), glob patterns and
    JSON datalists; output names made unique. ``channels``: the inputs are the channel files of
    one case, in the bundle's channel order."""
    if channels:
        files = [Path(t) for t in inputs]
        missing = next((f for f in files if not f.exists()), None)  # files or DICOM folders
        if missing is not None:
            raise InputError(f"{missing}: file not found")
        if files[0].is_dir():  # DICOM channels: their headers name the patient the name must not
            from medseg.io.dicom import find_series

            find_series(files[0])
        return [_private(Case(image_stem(files[0]), files[0], None, tuple(files[1:])))]
    cases = [case for text in inputs for case in _expand_one(str(text), series, all_series)]
    return [_private(c) for c in unique_names(cases)]


def _private(case: Case) -> Case:
    """The case, renamed ``case-<hash>`` if its name holds a patient identifier read from the
    DICOM headers (a folder named after the patient): ``medseg.privacy.case_name``."""
    return replace(case, name=case_name(case.name, repr(_identity(case))))


def _identity(case: Case) -> tuple:
    return (case.image.resolve(), case.series, tuple(p.resolve() for p in case.channels))


def unique_names(cases: list[Case]) -> list[Case]:
    """The cases, each input once, with names unique within the run and independent of the order
    the inputs were given in (so ``--resume`` finds the same outputs): clashing names take as many
    parent folder names as it needs (``A/first``, ``B/first`` -> ``A_first``, ``B_first``), and
    cases that still clash a short hash of their path."""
    cases = list({_identity(c): c for c in cases}.values())  # the same input twice is one case
    names = [c.name for c in cases]
    for depth in range(1, 4):
        clashing = _clashing(names)
        if not clashing:
            break
        names = [_with_parents(c, depth) if n in clashing else n for c, n in zip(cases, names, strict=True)]
    clashing = _clashing(names)
    names = [f"{n}-{_short_hash(c)}" if n in clashing else n for c, n in zip(cases, names, strict=True)]
    return [replace(c, name=n) for c, n in zip(cases, names, strict=True)]


def _clashing(names: list[str]) -> set[str]:
    return {n for n, count in Counter(names).items() if count > 1}


def _with_parents(case: Case, depth: int) -> str:
    parents = [p for p in case.image.resolve().parent.parts[1:]][-depth:]
    return "_".join([*parents, case.name])


def _short_hash(case: Case) -> str:
    return hashlib.sha256(repr(_identity(case)).encode()).hexdigest()[:8]
