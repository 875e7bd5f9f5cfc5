"""Write outputs under a temporary name, then rename: a failure never leaves a partial file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medseg.typing import PathLike


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz``...) so writers that dispatch on it work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the user's usual mode
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success its files are moved into ``path`` (created if needed)."""
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        for item in tmp.iterdir():
            os.replace(item, path / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(path.iterdir()):
            path.rmdir()  # a failed case leaves no trace, not even the folder we made
