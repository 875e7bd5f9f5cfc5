"""Every shipped sample and every shipped bundle's weights are there: they are part of the product,
so the tests that use them fail (never skip) without them, and this file says which one is gone."""

from __future__ import annotations

import json

import pytest

from medseg.bundle.locate import shipped_bundles_dir
from medseg.data import REPO_ROOT
from medseg.data.samples import SAMPLES

# Manifests of shipped samples name their folder in files_dir; those of public datasets do not.
MANIFESTS = sorted(
    m for m in (REPO_ROOT / "data_manifests").glob("*.json") if "files_dir" in json.loads(m.read_text())
)


def listed_files(manifest: dict) -> list[str]:
    """The images and labels a manifest names (files or DICOM folders), relative to its files_dir."""
    return [
        case[key]
        for section in manifest.values()
        if isinstance(section, list)
        for case in section
        if isinstance(case, dict)
        for key in ("image", "label")
        if key in case
    ]


def test_every_sample_folder_has_a_manifest():
    described = {(REPO_ROOT / json.loads(m.read_text())["files_dir"]).resolve() for m in MANIFESTS}
    folders = {p.resolve() for p in SAMPLES.iterdir() if p.is_dir()}
    assert folders and folders <= described, f"sample folders without a manifest: {folders - described}"


@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=[m.stem for m in MANIFESTS])
def test_every_listed_sample_is_shipped(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    folder = REPO_ROOT / manifest["files_dir"]
    assert folder.is_dir(), f"{folder}: sample folder missing (restore it from the repository)"
    named = listed_files(manifest)
    sums = folder / "SHA256SUMS"
    assert sums.is_file(), f"{sums} missing"
    named += [line.split()[1] for line in sums.read_text().splitlines() if line.strip()]
    named += ["LICENSE", "ATTRIBUTION.md"]
    missing = sorted({name for name in named if not (folder / name).exists()})
    assert named and not missing, f"{folder}: shipped samples missing: {missing}"


def test_every_shipped_bundle_has_its_weights():
    root = shipped_bundles_dir()
    bundles = sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())
    assert bundles, f"no bundles under {root}"
    missing = {b.name for b in bundles if not (b / "models" / "model.pt").is_file()}
    # brain_tumor_mri_segmentation ships untrained on purpose (no 4-channel MRI can be had here)
    assert missing == {"brain_tumor_mri_segmentation"}, f"shipped weights missing: {missing}"
