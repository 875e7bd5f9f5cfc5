"""``medseg data verify``: check a dataset's files against its manifest, reading and never writing.

Every listed file must be present inside the root, match its sha256 (where the manifest gives one),
be readable, hold the declared channels, lie on its image's grid (labels and channel files), and hold
only label values of the label map. Each finding is one ``Problem`` naming the entry and the file;
a damaged file is a finding like any other, not a crash.

Compared with nnU-Net's ``verify_dataset_integrity`` (which checks the same grid and label facts on
its own layout and stops at the first failure), this reports everything at once and on any manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from medseg.data.image_info import READ_ERRORS, FileInfo, grid_difference, is_nifti, read_info, read_voxels
from medseg.data.manifest import Entry, Manifest, PathEscapeError, count_problems, load_manifest, resolve_path
from medseg.errors import InputError
from medseg.typing import Array, PathLike

SHOWN_VALUES = 8  # unknown label values listed in one problem line


@dataclass(frozen=True)
class Problem:
    where: str  # "training[3]", "sha256" (a checksummed file no entry names) or "header"
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.where} {self.path}: {self.message}" if self.path else f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Report:
    entries: int
    files: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        return (
            f"{_count(self.entries, 'entry', 'entries')}, {_count(self.files, 'file')} checked, "
            f"{_count(len(self.problems), 'problem')}"
        )

    def format(self) -> str:
        """One line per problem, then the summary line."""
        return "\n".join([*(str(p) for p in self.problems), self.summary])


def verify_dataset(
    manifest: PathLike | Manifest, root: PathLike | None = None, read_images: bool = False
) -> Report:
    """Check the files of ``manifest`` under ``root`` (default: the manifest's folder, where MSD and
    nnU-Net keep dataset.json). Image headers only, unless ``read_images``; labels are always read.

    The manifest needs only what reading the files takes (an MSD dataset.json will do); that it is
    fully documented is ``load_manifest``'s check, which ``data_manifests/`` passes.
    """
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest, complete=False)
    root = Path(root) if root is not None else manifest.path.parent
    if not root.is_dir():
        raise InputError(f"{root}: dataset root folder not found")
    return _Verifier(manifest, root, read_images).run()


class _Verifier:
    def __init__(self, manifest: Manifest, root: Path, read_images: bool) -> None:
        self.manifest = manifest
        self.root = root
        self.read_images = read_images
        self.sums = {_key(rel): digest for rel, digest in manifest.sha256.items()}
        self.problems: list[Problem] = []
        self.checked: set[str] = set()

    def run(self) -> Report:
        self.problems += [Problem("header", "", message) for message in count_problems(self.manifest)]
        for entry in self.manifest.entries:
            self._entry(entry)
        self._listed_checksums()
        return Report(len(self.manifest.entries), len(self.checked), tuple(self.problems))

    def _add(self, where: str, rel: str, message: str) -> None:
        self.problems.append(Problem(where, rel, message))

    def _entry(self, entry: Entry) -> None:
        where = entry.where
        if entry.label is None and entry.section != "test":
            self._add(where, entry.images[0], "no label (training and validation entries need one)")
        paths = {rel: self._locate(where, rel) for rel in entry.files}
        infos = {rel: self._read(where, rel, path) for rel, path in paths.items() if path is not None}
        images = [(rel, infos[rel]) for rel in entry.images if infos.get(rel) is not None]
        self._channels(entry, images)
        label = infos.get(entry.label) if entry.label is not None else None
        if label is not None:
            self._label(entry, paths[entry.label], label)
        if images:
            self._grids(entry, images, label)

    def _locate(self, where: str, rel: str) -> Path | None:
        """The file's path when it is inside the root and present (checksummed on the way)."""
        self.checked.add(_key(rel))
        try:
            path = resolve_path(self.root, rel)
        except PathEscapeError as err:
            self._add(where, rel, f"refused: {err.reason}")
            return None
        if not path.exists():
            self._add(where, rel, "file not found")
            return None
        if path.is_dir() and not self._folder_inside(where, rel, path):
            return None
        if path.is_file() and _key(rel) in self.sums:
            self._checksum(where, rel, path)
        return path

    def _folder_inside(self, where: str, rel: str, folder: Path) -> bool:
        """A folder image (DICOM series): none of its files may be a symlink leading out of the root."""
        for item in sorted(folder.rglob("*")):
            try:
                resolve_path(self.root, item.relative_to(self.root).as_posix())
            except PathEscapeError as err:
                self._add(where, f"{rel}/{item.relative_to(folder).as_posix()}", f"refused: {err.reason}")
                return False
        return True

    def _checksum(self, where: str, rel: str, path: Path) -> None:
        expected = self.sums[_key(rel)]
        actual = sha256_file(path)
        if actual != expected:
            message = f"sha256 mismatch: the manifest says {expected[:12]}..., the file is {actual[:12]}..."
            self._add(where, rel, message)

    def _read(self, where: str, rel: str, path: Path) -> FileInfo | None:
        try:
            info = read_info(path)
            if self.read_images and is_nifti(path):
                read_voxels(path, info)
        except READ_ERRORS as err:
            self._add(where, rel, f"unreadable ({_reason(err, path)})")
            return None
        return info

    def _channels(self, entry: Entry, images: list[tuple[str, FileInfo]]) -> None:
        """Channels as declared: one file per channel, or one file with a channel axis (4D)."""
        channels = self.manifest.channels
        if entry.channel_list and len(entry.images) != channels:
            message = f"{len(entry.images)} channel files, modality declares {channels}"
            self._add(entry.where, entry.images[0], message)
        for rel, info in images:
            message = channel_problem(info, self.manifest, one_channel=entry.channel_list or channels == 1)
            if message:
                self._add(entry.where, rel, message)

    def _label(self, entry: Entry, path: Path, info: FileInfo) -> None:
        spatial = self.manifest.spatial_dims
        if info.squeezed_ndim(spatial) != spatial:
            message = f"label is {len(info.shape)}D {info.shape}; a label map is {spatial}D"
            self._add(entry.where, entry.label, message)
            return
        try:
            values = np.unique(read_voxels(path, info))
        except READ_ERRORS as err:
            self._add(entry.where, entry.label, f"unreadable ({_reason(err, path)})")
            return
        message = label_value_problem(values, self.manifest.labels, self.manifest.label_type)
        if message:
            self._add(entry.where, entry.label, message)

    def _grids(self, entry: Entry, images: list[tuple[str, FileInfo]], label: FileInfo | None) -> None:
        spatial, affine = self.manifest.spatial_dims, self.manifest.geometry_check == "affine"
        first_rel, first = images[0]
        for rel, info in images[1:]:
            if (difference := grid_difference(info, first, spatial, affine, first_rel)) is not None:
                self._add(entry.where, rel, f"channel on another grid: {difference}")
        if label is not None and (difference := grid_difference(label, first, spatial, affine)) is not None:
            self._add(entry.where, entry.label, f"label on another grid: {difference}")

    def _listed_checksums(self) -> None:
        """Files the sha256 map lists that no entry names as such (the files of a DICOM folder...)."""
        owners = {_key(rel): e.where for e in self.manifest.entries for rel in e.files}
        for rel in self.sums:
            if rel in self.checked:
                continue
            where = owners.get(rel) or next(
                (w for owned, w in owners.items() if rel.startswith(owned + "/")), "sha256"
            )
            path = self._locate(where, rel)
            if path is not None and path.is_dir():
                self._add(where, rel, "a folder: the sha256 map lists files")


def channel_problem(info: FileInfo, manifest: Manifest, one_channel: bool) -> str | None:
    """Why an image file does not hold the channels the manifest declares, or ``None``: a file of a
    channel list (or of a one-channel dataset) is spatial only; a single multi-channel file has one
    more axis, of the declared length."""
    spatial, channels, shape = manifest.spatial_dims, manifest.channels, info.shape
    ndim = info.squeezed_ndim(spatial)
    if one_channel and ndim != spatial:
        return f"{ndim}D image {shape} where tensorImageSize {manifest.tensor_image_size} was declared"
    if one_channel:
        return None
    if ndim != spatial + 1:
        return (
            f"{ndim}D image {shape}, but modality declares {channels} channels: "
            f"give a {spatial + 1}D image or a list of {channels} files"
        )
    if shape[spatial] != channels:
        return f"{shape[spatial]} channels in {shape}, modality declares {channels}"
    return None


def label_value_problem(values: Array, labels: dict[int, str], label_type: str = "semantic") -> str | None:
    """Why the label values ``values`` (unique) do not fit the label map, or ``None``.

    Semantic labels must be ids of the map; instance labels any whole number >= 0 (0 is background).
    """
    values = np.asarray(values)
    whole = np.equal(np.mod(values, 1), 0) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    if label_type == "instance":
        bad = values[~whole | (values < 0)]
        return f"instance ids must be whole numbers >= 0, found {_values(bad)}" if bad.size else None
    known = np.isin(values, np.asarray(sorted(labels)))
    bad = values[~(whole & known)]
    if not bad.size:
        return None
    return f"label values not in the label map: {_values(bad)} (the map has {_ids(sorted(labels))})"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _key(rel: str) -> str:
    """Manifest paths compare without a leading ``./`` (MSD writes ``./imagesTr/...``)."""
    return PurePosixPath(rel.replace("\\", "/")).as_posix()


def _reason(err: BaseException, path: Path) -> str:
    """The reader's message on one line, the file named by its name only (the line names it already)."""
    text = " ".join((str(err) or type(err).__name__).split()).removeprefix(f"{path}: ")
    return text.replace(str(path), path.name)


def _values(values: Array) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:SHOWN_VALUES].tolist())
    return shown + (f" and {len(values) - SHOWN_VALUES} more" if len(values) > SHOWN_VALUES else "")


def _ids(ids: list[int]) -> str:
    """``0-3`` for contiguous ids, else the list."""
    if ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 2:
        return f"ids {ids[0]}-{ids[-1]}"
    return "ids " + ", ".join(str(i) for i in ids)


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
