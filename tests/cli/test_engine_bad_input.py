"""Bad input to the bundle engine through the real `medseg` command: one line, exit code 2, nothing
written; and bundles are code: a bare name never runs a folder of the working directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import SimpleITK as sitk
from bundle_refs import medseg_cli as medseg

from medseg.data import REPO_ROOT, sample_path


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseg: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bundle_folder_without_metadata(tmp_path):
    bundle = tmp_path / "my_bundle"
    shutil.copytree(REPO_ROOT / "bundles" / "nuclei_fluo_unet2d" / "configs", bundle / "configs")
    (bundle / "configs" / "metadata.json").unlink()
    out = tmp_path / "out"
    proc = medseg(
        "segment", sample_path("img2d.tif", "nuclei_2d"), "--bundle", str(bundle), "--out", str(out)
    )
    assert_one_line_error(proc, str(bundle), "metadata.json")
    assert not out.exists()


@pytest.mark.parametrize(
    "device", ["cpu') if print('INJECTED') is None else torch.device('cpu", "gpu0", "cuda:x"]
)
def test_unknown_device_is_refused_and_never_evaluated(tmp_path, device):
    out = tmp_path / "out"
    image = sample_path("img2d.tif", "nuclei_2d")
    proc = medseg("segment", image, "--bundle", "nuclei_fluo_unet2d", "--device", device, "--out", str(out))
    assert_one_line_error(proc, "--device", "cpu, cuda, cuda:N or mps")
    assert "INJECTED" not in proc.stdout
    assert not out.exists()


def test_truncated_nrrd(tmp_path):
    image = sitk.ReadImage(sample_path("example_ct.nii.gz"))[:64, :64, :32]
    nrrd = tmp_path / "scan.nrrd"
    sitk.WriteImage(image, str(nrrd), useCompression=False)
    data = nrrd.read_bytes()
    nrrd.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    proc = medseg("segment", str(nrrd), "--out", str(out))
    assert_one_line_error(proc, str(nrrd), "NRRD")
    assert not out.exists()


@pytest.mark.slow
def test_bare_name_runs_the_shipped_bundle_not_a_local_folder(tmp_path):
    """A folder named like a shipped bundle in the working directory, whose network definition would
    write a file if it were ever parsed: the shipped bundle runs and the decoy is never read."""
    decoy = tmp_path / "nuclei_fluo_unet2d"
    shutil.copytree(REPO_ROOT / "bundles" / "nuclei_fluo_unet2d" / "configs", decoy / "configs")
    config = json.loads((decoy / "configs" / "inference.json").read_text())
    config["network_def"] = "$open('PWNED', 'w').close()"
    (decoy / "configs" / "inference.json").write_text(json.dumps(config))
    image = sample_path("img2d.tif", "nuclei_2d")
    proc = medseg("segment", image, "--bundle", "nuclei_fluo_unet2d", "--out", "out", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shipped = Path(REPO_ROOT / "bundles" / "nuclei_fluo_unet2d")
    assert f"bundle: nuclei_fluo_unet2d 0.2.0 ({shipped})" in proc.stdout
    assert not (tmp_path / "PWNED").exists()
    assert (tmp_path / "out" / "img2d" / "img2d_instances.ome.tif").is_file()
    # written as a path, the user's own folder is used (and its code runs: bundles are code)
    proc = medseg("segment", image, "--bundle", "./nuclei_fluo_unet2d", "--out", "out2", cwd=tmp_path)
    assert (tmp_path / "PWNED").exists() and proc.returncode == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_ct_is_refused_by_the_default_bundle(tmp_path, bad):
    """Issue 12: the CT bundle has no finite check of its own; the engine refuses for every bundle."""
    import nibabel as nib
    import numpy as np

    ct = nib.load(sample_path("example_ct.nii.gz"))
    values = np.asarray(ct.dataobj, np.float32)[:96, :96, :24].copy()
    values[40:42, 50, 10] = bad
    image = tmp_path / "ct_with_holes.nii.gz"
    nib.save(nib.Nifti1Image(values, ct.affine), image)
    out = tmp_path / "out"
    proc = medseg("segment", str(image), "--out", str(out))
    assert_one_line_error(proc, str(image), "2 voxels are NaN or infinite")
    assert not out.exists()


def test_non_finite_microscopy_is_refused(tmp_path):
    import numpy as np
    import tifffile

    image = tmp_path / "cells.tif"
    values = tifffile.imread(sample_path("img2d.tif", "nuclei_2d")).astype(np.float32)
    values[3, 4] = np.nan
    tifffile.imwrite(image, values)
    out = tmp_path / "out"
    proc = medseg("segment", str(image), "--bundle", "nuclei_fluo_unet2d", "--out", str(out))
    assert_one_line_error(proc, str(image), "1 voxel is NaN or infinite")
    assert not out.exists()
