"""Shipped samples are the files the manifest describes, byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.data import REPO_ROOT, manifest_path, sample_dir
from medseg.io import read_image


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_checksums_match_shipped_files():
    """The CT and MR manifests together checksum every shipped file, SHA256SUMS agrees, and every NIfTI
    image or label they name is in their sha256 map (the DICOM series by its files)."""
    folder = Path(sample_dir("totalsegmentator"))
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    checked = {}
    for name in ("totalsegmentator_samples", "totalsegmentator_mr"):
        manifest = json.loads(Path(manifest_path(name)).read_text())
        assert REPO_ROOT / manifest["files_dir"] == folder
        for rel, expected in manifest["sha256"].items():
            assert sha256(folder / rel) == expected == listed[rel], rel
            checked[rel] = expected
        for case in manifest["training"] + manifest["test"]:
            for key in ("image", "label"):
                if key in case and not (folder / case[key]).is_dir():
                    assert case[key] in manifest["sha256"], case[key]
    assert checked == listed  # 5 NIfTI files, 20 DICOM files, the benchmark CT


def test_sha256sums_cover_every_dicom_file():
    folder = Path(sample_dir("totalsegmentator"))
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    dicom = sorted((folder / "example_ct_dicom").iterdir())
    assert len(dicom) == 20
    for path in dicom:
        assert listed[f"example_ct_dicom/{path.name}"] == sha256(path)


def test_benchmark_ct_reads_with_nibabel_geometry_at_1_5_mm():
    manifest = json.loads(Path(manifest_path("totalsegmentator_samples")).read_text())
    (case,) = [c for c in manifest["test"] if c["case"] == "aorta"]
    assert "label" not in case
    folder = Path(sample_dir("totalsegmentator"))
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert listed[case["image"]] == manifest["sha256"][case["image"]]
    path = folder / case["image"]
    array, geometry = read_image(path)
    reference = nib.load(path)
    assert array.shape == reference.shape == (233, 167, 191)
    assert array.dtype == np.int16
    np.testing.assert_allclose(geometry.affine, reference.affine)
    np.testing.assert_allclose(geometry.spacing, (1.5, 1.5, 1.5))
    assert nib.aff2axcodes(geometry.affine) == ("L", "P", "S")
