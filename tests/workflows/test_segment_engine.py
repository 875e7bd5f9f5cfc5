"""Our microscopy bundles through `medseg segment`: TIFF in -> TIFF out in tifffile's axis order,
instance maps equal to what `python -m monai.bundle run` saves with the same weights, and a table
with one row per instance checked against scipy."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from bundle_refs import medseg_cli as medseg
from bundle_refs import monai_bundle
from scipy import ndimage

from medseg.data import REPO_ROOT, sample_path

pytestmark = pytest.mark.slow


def monai_instances(bundle: str, image: Path, out: Path) -> np.ndarray:
    """The instance map the bundle's own SaveImaged writes under `monai.bundle run` (medseg order)."""
    root = REPO_ROOT / "bundles" / bundle
    monai_bundle(
        "run", "--config_file", str(root / "configs" / "inference.json"), "--bundle_root", str(root),
        "--input_image", str(image), "--output_dir", str(out),
    )  # fmt: skip
    (saved,) = sorted(out.rglob("*_instances.nii.gz"))
    return np.asarray(nib.load(saved).dataobj).squeeze()


def check_table(out: Path, stem: str, instances_tifffile_order: np.ndarray) -> None:
    """One row per instance: ids, voxel counts and centroids (medseg order) as scipy computes them."""
    rows = json.loads((out / stem / f"{stem}_instances.json").read_text())
    ids = np.unique(instances_tifffile_order)
    ids = ids[ids > 0]
    assert [r["id"] for r in rows] == ids.tolist()
    medseg_order = np.transpose(instances_tifffile_order)  # (z, y, x) -> (x, y, z)
    counts = ndimage.sum_labels(np.ones_like(medseg_order), medseg_order, ids)
    centroids = ndimage.center_of_mass(np.ones_like(medseg_order), medseg_order, ids)
    for row, count, centroid in zip(rows, counts, centroids, strict=True):
        assert row["voxels"] == int(count)
        np.testing.assert_allclose(row["centroid_index"], centroid, atol=1e-3)


def test_2d_tiff_in_tiff_out_equals_monai_bundle_run(tmp_path):
    image = Path(sample_path("img2d.tif", "nuclei_2d"))
    out = tmp_path / "out"
    proc = medseg("segment", str(image), "--bundle", "nuclei_fluo_unet2d", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: nuclei_fluo_unet2d 0.2.0 ({REPO_ROOT / 'bundles' / 'nuclei_fluo_unet2d'})" in proc.stdout
    written = tifffile.imread(out / "img2d" / "img2d_instances.ome.tif")
    assert written.shape == tifffile.imread(image).shape  # tifffile's (rows, columns)
    reference = monai_instances("nuclei_fluo_unet2d", image, tmp_path / "monai")
    np.testing.assert_array_equal(written, reference.T)
    assert len(np.unique(written)) - 1 == 119  # the README's example prints "119 instances"
    check_table(out, "img2d", written)


def test_3d_nuclei_bundle_writes_instance_map_and_table(tmp_path):
    stack = tifffile.imread(sample_path("nuclei.tif", "nuclei_3d"))[:, :80, :80]  # (z, y, x), a corner
    image = tmp_path / "stack.tif"
    calibration = {"spacing": 0.5, "unit": "um", "axes": "ZYX"}  # ImageJ's z step and unit
    tifffile.imwrite(image, stack, imagej=True, resolution=(1 / 0.26, 1 / 0.26), metadata=calibration)
    out = tmp_path / "out"
    proc = medseg("segment", str(image), "--bundle", "nuclei_fluo_unet3d", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    written = tifffile.imread(out / "stack" / "stack_instances.ome.tif")
    assert written.shape == stack.shape
    with tifffile.TiffFile(out / "stack" / "stack_instances.ome.tif") as tif:  # the pixel size goes along
        pixels = tif.ome_metadata
    assert 'PhysicalSizeX="0.26' in pixels and 'PhysicalSizeZ="0.5"' in pixels
    reference = monai_instances("nuclei_fluo_unet3d", image, tmp_path / "monai")
    np.testing.assert_array_equal(written, np.transpose(reference))
    check_table(out, "stack", written)
    rows = json.loads((out / "stack" / "stack_instances.json").read_text())
    assert all(
        r["unit"] == "um^3" and r["size"] == pytest.approx(r["voxels"] * 0.26 * 0.26 * 0.5, rel=1e-3)
        for r in rows
    )


@pytest.mark.parametrize(
    ("bundle", "image_name", "source"),
    [
        ("nuclei_fluo_maskrcnn", "A9_p9d.tif", "bbbc007"),
        ("nuclei3d_fluo_maskrcnn", "nuclei.tif", "nuclei_3d"),
    ],
)
def test_mask_rcnn_bundles_write_instances_and_a_scored_table(tmp_path, bundle, image_name, source):
    """A Mask R-CNN bundle's detections reach the user as `monai.bundle run` pastes them: the same
    instance map, and a table whose `score` column is each instance's detection score."""
    image = Path(sample_path(image_name, source))
    if source == "nuclei_3d":  # a corner of the stack keeps the test short
        image = tmp_path / "corner.tif"
        tifffile.imwrite(image, tifffile.imread(sample_path(image_name, source))[:, :96, :96])
    out = tmp_path / "out"
    proc = medseg("segment", str(image), "--bundle", bundle, "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    written = tifffile.imread(out / image.stem / f"{image.stem}_instances.ome.tif")
    reference = monai_instances(bundle, image, tmp_path / "monai")
    np.testing.assert_array_equal(written, np.transpose(reference))
    assert written.max() >= 2
    check_table(out, image.stem, written)
    score_map = np.transpose(np.asarray(nib.load(tmp_path / "monai" / f"{image.stem}_scores.nii.gz").dataobj))
    rows = json.loads((out / image.stem / f"{image.stem}_instances.json").read_text())
    for row in rows:
        assert row["score"] == pytest.approx(float(score_map[written == row["id"]][0]), abs=1e-4)
        assert 0.5 <= row["score"] <= 1.0  # the bundle's score threshold
