"""Where the embedded real samples and their manifests are; nothing is downloaded at run time."""

from __future__ import annotations

from pathlib import Path

from medseg.errors import InputError

SAMPLES = Path(__file__).resolve().parent / "samples"
REPO_ROOT = Path(__file__).resolve().parents[2]


def sample_root() -> str:
    """The folder holding every source's samples (bundle datalists give paths relative to it)."""
    return sample_dir(".")


def sample_dir(source: str = "totalsegmentator") -> str:
    """Folder of the samples taken from one source package (see ``data_manifests/``)."""
    folder = SAMPLES / source
    if not folder.is_dir():
        raise InputError(f"{folder}: sample folder missing (is medseg installed from a full clone?)")
    return str(folder)


def sample_path(name: str, source: str = "totalsegmentator") -> str:
    path = Path(sample_dir(source)) / name
    if not path.exists():
        raise InputError(f"{path}: sample missing")
    return str(path)


def manifest_path(name: str = "totalsegmentator_samples") -> str:
    path = REPO_ROOT / "data_manifests" / f"{name}.json"
    if not path.exists():
        raise InputError(f"{path}: manifest missing (data_manifests/ ships with the repository)")
    return str(path)
