"""Where bundles live, and which folder a bundle name or path means.

Two places hold bundles by name: the bundles shipped with medseg (the repository's ``bundles/``,
installed as the package ``medseg._bundles``) and the user folder (``$MEDSEG_BUNDLE_DIR``, else
``~/.medseg/bundles``), where ``medseg bundle install`` and ``download`` put them. A bundle's configs
run code (``$`` expressions, imports), so a bare name never means a folder of the current directory:
``abdomen_ct_segmentation`` is the shipped bundle even where ``./abdomen_ct_segmentation/`` exists,
and a local folder is used only when written as a path (``./name``, ``~/x``, ``/abs/x``, ``a/b``).
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from medseg.errors import BundleError
from medseg.typing import PathLike

BUNDLE_DIR_ENV = "MEDSEG_BUNDLE_DIR"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # what install accepts as a name


def shipped_bundles_dir() -> Path:
    """The folder of the bundles installed with medseg.

    ``site-packages/medseg/_bundles`` after ``pip install .``; the repository's ``bundles/`` after
    ``pip install -e .`` (its finder maps the package there).
    """
    try:
        return Path(str(resources.files("medseg._bundles")))
    except ModuleNotFoundError:
        raise BundleError(
            "the shipped bundles are not installed (no package medseg._bundles): reinstall medseg "
            "(`make install`, or `pip install -e .` in the repository)"
        ) from None


def user_bundles_dir() -> Path:
    """The folder of the bundles the user installed: ``$MEDSEG_BUNDLE_DIR`` if set, else
    ``~/.medseg/bundles``. It need not exist.

    The same path on every platform (on Windows ``%USERPROFILE%\\.medseg\\bundles``; not
    ``%APPDATA%`` or ``$XDG_DATA_HOME``), so one sentence documents it everywhere; set
    ``MEDSEG_BUNDLE_DIR`` to keep bundles elsewhere, e.g. on a shared drive.
    """
    value = os.environ.get(BUNDLE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".medseg" / "bundles"


def bundle_roots() -> list[tuple[str, Path]]:
    """``(origin, folder)`` in the order names resolve: shipped first, then the user folder."""
    return [("shipped", shipped_bundles_dir()), ("user", user_bundles_dir())]


def is_bare_name(name_or_path: PathLike) -> bool:
    """A name (``abdomen_ct_segmentation``), not a path: no separator, no leading ``.`` or ``~``."""
    text = os.fspath(name_or_path)
    separators = {"/", os.sep, os.altsep} - {None}
    return (
        bool(text)
        and not any(sep in text for sep in separators)
        and not text.startswith((".", "~"))
        and not Path(text).is_absolute()
    )


def bundle_names(root: Path) -> list[str]:
    """The bundles in ``root`` (folders with ``configs/metadata.json``), sorted; hidden and ``_``
    folders (install staging, ``__pycache__``) are not bundles."""
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.startswith((".", "_")) and (p / "configs" / "metadata.json").is_file()
    )


def inference_config(bundle: Path) -> Path | None:
    """``configs/inference.json`` (or ``.yaml``/``.yml``) of ``bundle``, or None."""
    for suffix in CONFIG_SUFFIXES:
        path = bundle / "configs" / f"inference{suffix}"
        if path.is_file():
            return path
    return None


def read_metadata(bundle: Path) -> dict:
    """``configs/metadata.json`` of ``bundle`` as a dict; a one-line BundleError if unreadable."""
    path = bundle / "configs" / "metadata.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: unreadable bundle metadata ({err})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: bundle metadata is not a JSON object")
    return data


def check_bundle(folder: Path) -> Path:
    """``folder`` if it holds a bundle (a readable ``configs/metadata.json`` and an inference
    config), else a one-line BundleError naming the folder and what is missing."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such bundle folder")
    missing = []
    if not (folder / "configs" / "metadata.json").is_file():
        missing.append("configs/metadata.json")
    if inference_config(folder) is None:
        missing.append("configs/inference.json (or .yaml/.yml)")
    if missing:
        raise BundleError(f"{folder}: not a bundle folder: no {' and no '.join(missing)}")
    read_metadata(folder)
    return folder


def find_bundle(name_or_path: PathLike) -> Path:
    """The bundle folder meant by ``name_or_path``, resolved.

    A bare name is looked up among the shipped bundles, then in the user folder, and nowhere
    else; anything written as a path is that folder.

    >>> find_bundle("nuclei_fluo_unet2d").name
    'nuclei_fluo_unet2d'
    """
    text = os.fspath(name_or_path)
    if not is_bare_name(text):
        return check_bundle(Path(text).expanduser()).resolve()
    for _, root in bundle_roots():
        if (root / text).is_dir():
            return check_bundle(root / text).resolve()
    raise BundleError(_unknown_name(text))


def _unknown_name(name: str) -> str:
    shipped_dir, user_dir = (root for _, root in bundle_roots())
    shipped = ", ".join(bundle_names(shipped_dir)) or "none"
    user = ", ".join(bundle_names(user_dir)) or "none"
    local = f"; to use the folder ./{name} here, write ./{name}" if Path(name).is_dir() else ""
    return (
        f"unknown bundle {name!r}: shipped: {shipped}; in {user_dir}: {user}. Install one with "
        f"`medseg bundle install FOLDER_OR_ZIP` or `medseg bundle download NAME`{local}"
    )


def refuse_shipped(path: PathLike, what: str) -> None:
    """Training never writes into the bundles installed with medseg: refuse ``path`` (where
    ``what`` would go) if it lies inside them, before anything is written."""
    root = shipped_bundles_dir().resolve()
    target = Path(path).resolve()
    if target == root or root in target.parents:
        raise BundleError(
            f"{path}: inside medseg's shipped bundles ({root}); {what} would change an installed "
            "bundle: use medseg train (it writes a run folder), or train a copy (cp -r) of the bundle"
        )
