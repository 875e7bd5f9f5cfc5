"""Write outputs so that a failure, a crash or a kill never leaves a partial result in view.

Three shapes, each staged next to its target (the same file system, so the final rename is atomic),
flushed to disk (``fsync``) before that rename, and cleaned up on every exit path that runs code:

- ``atomic_path``: one file;
- ``atomic_dir``: files added to an existing folder (a MetaImage header and its raw data), each
  renamed into place;
- ``atomic_folder``: a folder that appears whole in one rename (one case's outputs), replacing a
  previous medseg output of the same name but never anything else.

A SIGKILL runs no clean-up, so staging names carry the process id: ``clean_stale`` removes those
of processes that are gone, and every ``atomic_path`` and ``atomic_folder`` call runs it on the
folder it writes into.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import InputError
from medseg.typing import PathLike

STAGING = ".tmp-"
RETIRED = ".old-"
# Written into every output folder; only a folder holding it is ever replaced by a new run.
MARKER = ".medseg-output"


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz``...) so writers that dispatch on it work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(), suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the user's usual mode
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a staging folder; on success its files are moved into ``path`` (created if needed).

    Each file appears whole; for a group of files that must appear together use ``atomic_folder``.
    """
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(), dir=path))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        _fsync_tree(tmp)
        for item in tmp.iterdir():
            os.replace(item, path / item.name)
        _fsync(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(path.iterdir()):
            path.rmdir()  # a failed case leaves no trace, not even the folder we made


@contextlib.contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """Yield a staging folder that becomes ``path`` in one rename if the block succeeds.

    A previous medseg output at ``path`` (it holds ``MARKER``) is replaced: it stays complete until
    the new one is ready, and a kill between the two renames leaves no folder at ``path`` rather
    than a mixed one. Anything else at ``path`` (an input folder, the user's files) is refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    if path.exists() and not (path / MARKER).is_file():
        raise InputError(f"{path}: exists and is not a medseg output; choose another --out folder")
    tmp = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix()}{path.name}-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / MARKER).write_text("written by medseg; a new run may replace this folder\n")
        _fsync_tree(tmp)
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, path: Path) -> None:
    retired = None
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f"{RETIRED}{os.getpid()}-", dir=path.parent))
        os.replace(path, retired / path.name)
    os.replace(new, path)
    _fsync(path.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def clean_stale(folder: PathLike) -> None:
    """Remove staging and retired folders left in ``folder`` by processes that no longer run."""
    for entry in Path(folder).glob(".*-*"):
        pid = _owner(entry.name)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _staging_prefix() -> str:
    return f"{STAGING}{os.getpid()}-"


def _owner(name: str) -> int | None:
    for prefix in (STAGING, RETIRED):
        if name.startswith(prefix):
            pid = name[len(prefix) :].split("-", 1)[0]
            return int(pid) if pid.isdigit() else None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for item in folder.rglob("*"):
        if item.is_file():
            _fsync(item)
    for sub in [*(p for p in folder.rglob("*") if p.is_dir()), folder]:
        _fsync(sub)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
