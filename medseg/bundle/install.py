"""Putting bundles in the user folder: from a folder, the model zoo's zip, or a zoo download.

A bundle is checked before anything is written, copied into a hidden folder beside its place in
the user folder (``medseg.bundle.locate.user_bundles_dir``), then renamed: a failed copy leaves
nothing behind, and a bundle is replaced (``force``) in one rename. Names of shipped bundles are
refused, since names resolve to shipped bundles first.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import urllib.error
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from medseg.bundle.locate import (
    CONFIG_SUFFIXES,
    NAME_PATTERN,
    check_bundle,
    shipped_bundles_dir,
    user_bundles_dir,
)
from medseg.errors import BundleError
from medseg.typing import PathLike

DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation: an unreachable host fails in seconds, not minutes
ZOO_RELEASES = "https://github.com/Project-MONAI/model-zoo/releases/tag/hosting_storage_v1"


def _zip_bundle_name(archive: Path) -> str:
    """The top folder of the model zoo's zip layout, after refusing members that would land
    outside it (absolute, ``..``, links) and checking it holds a bundle; nothing is extracted."""
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.filename.startswith("__MACOSX/")]
    for member in members:
        path = PurePosixPath(member.filename.replace("\\", "/"))
        is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
        if path.is_absolute() or ".." in path.parts or ":" in member.filename or is_link:
            raise BundleError(f"{archive}: refusing member {member.filename!r}: it points outside the bundle")
    tops = {PurePosixPath(m.filename).parts[0] for m in members}
    files = {m.filename for m in members if not m.is_dir()}
    name = tops.pop() if len(tops) == 1 else None
    has_inference = any(f"{name}/configs/inference{s}" in files for s in CONFIG_SUFFIXES)
    if name is None or f"{name}/configs/metadata.json" not in files or not has_inference:
        raise BundleError(
            f"{archive}: not a bundle zip: expected one top folder NAME/ holding configs/metadata.json "
            "and configs/inference.json (the model zoo's layout)"
        )
    return name


def _target(name: str, source: object, force: bool) -> Path:
    """Where bundle ``name`` goes in the user folder, if it may go there."""
    if not NAME_PATTERN.fullmatch(name):
        raise BundleError(f"{source}: {name!r} is not a bundle name (letters, digits, '_', '.', '-')")
    if (shipped_bundles_dir() / name).exists():
        raise BundleError(
            f"{source}: {name} is a shipped bundle's name (names find shipped bundles first); "
            "rename the folder to install it"
        )
    target = user_bundles_dir() / name
    if target.exists() and not force:
        raise BundleError(f"{target}: bundle {name} is already installed; use --force to replace it")
    return target


def _copy_folder(source: Path, dest: Path) -> None:
    def ignore(folder: str, names: list[str]) -> list[str]:
        top = folder == os.fspath(source)  # eval/ holds a bundle's evaluation outputs, not the bundle
        return [n for n in names if n in ("__pycache__", ".git") or (top and n == "eval")]

    shutil.copytree(source, dest, ignore=ignore)


def install_bundle(path: PathLike, force: bool = False) -> Path:
    """Copy the bundle folder or zoo zip ``path`` into the user folder under its name (the folder's
    name, or the zip's top folder); returns its new folder. ``force`` replaces an installed one.
    """
    source = Path(path).expanduser()
    if source.is_file() and zipfile.is_zipfile(source):
        name = _zip_bundle_name(source)
    elif source.is_dir():
        name = check_bundle(source).resolve().name
    else:
        raise BundleError(f"{source}: not a bundle folder or .zip file")
    target = _target(name, source, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    previous = staging / ".previous"
    try:
        if source.is_dir():
            _copy_folder(source, staging / name)
        else:
            with zipfile.ZipFile(source) as zf:
                zf.extractall(staging, [m for m in zf.namelist() if m.startswith(f"{name}/")])
        check_bundle(staging / name)
        if target.exists():
            target.rename(previous)
        try:
            (staging / name).rename(target)
        except OSError:
            if previous.exists():
                previous.rename(target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def _network_quiet(timeout: float) -> Iterator[None]:
    """A socket timeout (urllib and requests wait forever by default) and MONAI's download loggers
    silenced (they print to stdout); both restored after."""
    previous = socket.getdefaulttimeout()
    loggers = [logging.getLogger(name) for name in ("monai.apps", "monai.bundle.scripts")]
    disabled = [logger.disabled for logger in loggers]
    socket.setdefaulttimeout(timeout)
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
        for logger, was in zip(loggers, disabled, strict=True):
            logger.disabled = was


def _causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it wraps: ``__cause__``/``__context__``, urllib3's ``reason``, ``args``."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        wrapped = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(w for w in wrapped if isinstance(w, BaseException))


def _is_offline(err: BaseException) -> bool:
    for e in _causes(err):
        if isinstance(e, urllib.error.HTTPError) or "HTTPError" in type(e).__name__:
            return False  # the server answered
        if isinstance(e, (socket.gaierror, ConnectionError, TimeoutError, urllib.error.URLError)):
            return True
        if type(e).__module__.startswith(("requests", "urllib3")) and isinstance(e, OSError):
            return True  # requests' ConnectionError / Timeout, urllib3's NewConnectionError
    return False


def _download_error(name: str, err: BaseException) -> str:
    innermost = list(_causes(err))[-1]
    detail = " ".join(str(innermost).split())[:160] or type(innermost).__name__
    if _is_offline(err):
        return (
            f"cannot download bundle {name}: no network connection ({detail}). Download the zip on a "
            f"machine with internet access ({ZOO_RELEASES}, or `python -m monai.bundle download --name "
            f"{name} --source github --bundle_dir DIR`), then run: medseg bundle install PATH"
        )
    return f"cannot download bundle {name}: {' '.join(str(err).split())[:300] or type(err).__name__}"


def download_bundle(
    name: str, version: str | None = None, force: bool = False, progress: bool = False
) -> Path:
    """Download bundle ``name`` (its latest version, or ``version``) from the MONAI model zoo with
    ``monai.bundle.download`` and install it in the user folder; returns its folder.

    It is downloaded into a temporary folder and then installed as ``install_bundle`` does, so a
    failed download leaves nothing in the user folder. Without network this fails within seconds
    (``DOWNLOAD_TIMEOUT_S`` per connection attempt) with one line saying how to install offline.
    """
    if NAME_PATTERN.fullmatch(name) and (shipped_bundles_dir() / name).exists():
        raise BundleError(
            f"{name} is a shipped bundle's name: nothing to download (medseg bundle info {name})"
        )
    _target(name, f"bundle {name}", force)  # refuse before downloading what could not be installed
    from monai.bundle import download

    with tempfile.TemporaryDirectory(prefix="medseg-download-") as tmp:
        try:
            with _network_quiet(DOWNLOAD_TIMEOUT_S):
                download(name=name, version=version, bundle_dir=tmp, source="github", progress=progress)
        except Exception as err:  # MONAI raises ValueError, OSError, requests' errors...
            raise BundleError(_download_error(name, err)) from err
        folder = Path(tmp) / name
        if not folder.is_dir():
            raise BundleError(f"cannot download bundle {name}: the zoo's zip holds no folder {name}/")
        return install_bundle(folder, force=force)
