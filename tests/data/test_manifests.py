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
    manifest = json.loads(Path(manifest_path("totalsegmentator_samples")).read_text())
    folder = REPO_ROOT / manifest["files_dir"]
    assert folder == Path(sample_dir("totalsegmentator"))
    checked = 0
    for section in ("training", "test", "mr", "benchmark"):
        for case in manifest[section]:
            for key in ("image", "label"):
                expected = case.get(f"sha256_{key}", "")
                if len(expected) == 64:
                    assert sha256(folder / case[key]) == expected, case[key]
                    checked += 1
    assert checked >= 6


def test_sha256sums_cover_every_dicom_file():
    folder = Path(sample_dir("totalsegmentator"))
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    dicom = sorted((folder / "example_ct_dicom").iterdir())
    assert len(dicom) == 20
    for path in dicom:
        assert listed[f"example_ct_dicom/{path.name}"] == sha256(path)


def test_benchmark_ct_reads_with_nibabel_geometry_at_1_5_mm():
    manifest = json.loads(Path(manifest_path("totalsegmentator_samples")).read_text())
    (case,) = manifest["benchmark"]
    folder = Path(sample_dir("totalsegmentator"))
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert listed[case["image"]] == case["sha256_image"]
    path = folder / case["image"]
    array, geometry = read_image(path)
    reference = nib.load(path)
    assert array.shape == reference.shape == (233, 167, 191)
    assert array.dtype == np.int16
    np.testing.assert_allclose(geometry.affine, reference.affine)
    np.testing.assert_allclose(geometry.spacing, (1.5, 1.5, 1.5))
    assert nib.aff2axcodes(geometry.affine) == ("L", "P", "S")
