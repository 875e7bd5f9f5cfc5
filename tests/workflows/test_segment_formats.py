"""NRRD and MetaImage in -> the same format out (and NIfTI beside it), on the input's grid, with
the same labels as from the NIfTI of the same scan; batch mode and --resume with another bundle."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from bundle_refs import medseg_cli

from medseg.data import sample_path

pytestmark = pytest.mark.slow


def medseg(*args: str) -> subprocess.CompletedProcess:
    """`medseg ARGS --quiet`, which must succeed."""
    proc = medseg_cli(*args, "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """One real CT crop as NIfTI, NRRD and MetaImage (SimpleITK writes the latter two)."""
    folder = tmp_path_factory.mktemp("scans")
    image = sitk.ReadImage(sample_path("example_ct.nii.gz"))[:, :, 40:100]
    for name in ("ct.nii.gz", "ct_nrrd.nrrd", "ct_mha.mha"):
        sitk.WriteImage(image, str(folder / name))
    return folder


@pytest.fixture(scope="module")
def from_nifti(scans, tmp_path_factory):
    out = tmp_path_factory.mktemp("nifti_out")
    medseg("segment", str(scans / "ct.nii.gz"), "--out", str(out))
    return np.asarray(nib.load(out / "ct" / "ct_seg.nii.gz").dataobj)


@pytest.mark.parametrize("name, suffix", [("ct_nrrd", ".nrrd"), ("ct_mha", ".mha")])
def test_same_format_out(scans, from_nifti, tmp_path, name, suffix):
    proc = medseg("segment", str(scans / f"{name}{suffix}"), "--out", str(tmp_path))
    assert f"label map (nifti): {tmp_path / name / (name + '_seg.nii.gz')}" in proc.stdout
    written = sitk.ReadImage(str(tmp_path / name / f"{name}_seg{suffix}"))
    source = sitk.ReadImage(str(scans / f"{name}{suffix}"))
    assert written.GetSize() == source.GetSize()
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    labels = np.transpose(sitk.GetArrayFromImage(written))  # (z, y, x) -> (x, y, z)
    np.testing.assert_array_equal(labels, from_nifti)
    assert np.array_equal(np.asarray(nib.load(tmp_path / name / f"{name}_seg.nii.gz").dataobj), from_nifti)


def test_batch_and_resume_with_an_instance_bundle(tmp_path):
    """Many cases with the 2D nuclei bundle: a folder of TIFFs, a bad one among them, then --resume."""
    import tifffile

    image = tifffile.imread(sample_path("img2d.tif", "nuclei_2d"))
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image[:256])
    tifffile.imwrite(folder / "b.tif", image[256:])
    (folder / "c.tif").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(folder), "--bundle", "nuclei_fluo_unet2d",
         "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1  # one case failed, the others are done
    summary = {r["case"]: r for r in json.loads((out / "summary.json").read_text())}
    assert [summary[c]["status"] for c in "abc"] == ["done", "done", "failed"]
    assert "c.tif" in summary["c"]["reason"]
    for case in "ab":
        assert tifffile.imread(out / case / f"{case}_instances.ome.tif").shape == (256, 512)
    assert not (out / "c").exists() and not list(out.glob(".*"))
    again = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(folder / "a.tif"), str(folder / "b.tif"),
         "--bundle", "nuclei_fluo_unet2d", "--out", str(out), "--resume", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0 and "2 skipped" in again.stdout
