"""The lung tumour bundle: metadata and network, held-apart Dice on lung1 through MONAI's runner and
`medseg segment` (scored here with numpy on SimpleITK's reading of the NRRD label), and training."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
import torch
from bundle_refs import bundle_evaluation, medseg_cli, monai_bundle, shipped_network, train_beside_shipped

from medseg.data import REPO_ROOT, sample_path

BUNDLE = REPO_ROOT / "bundles" / "lung_tumor_ct_segmentation"
CONFIGS = BUNDLE / "configs"
REPORTED = json.loads((CONFIGS / "metadata.json").read_text())["eval_metrics"]


def dice_on_reference_grid(pred: sitk.Image, reference: sitk.Image) -> float:
    for attr in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(pred, attr)() == pytest.approx(getattr(reference, attr)(), abs=1e-4), attr
    p, r = (sitk.GetArrayFromImage(x) > 0 for x in (pred, reference))
    return float(2 * (p & r).sum() / (p.sum() + r.sum()))


def test_metadata_and_network_shapes():
    _, network = shipped_network(BUNDLE)
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 96, 96, 32)).shape == (1, 2, 96, 96, 32)


@pytest.mark.slow
def test_heldout_lung1_dice_through_monai_bundle_and_medseg_segment(tmp_path):
    reference = sitk.ReadImage(sample_path("lung1_label.nrrd", "pyradiomics"))
    monai_bundle(
        "run", "--config_file", str(CONFIGS / "inference.json"), "--bundle_root", str(BUNDLE),
        "--output_dir", str(tmp_path / "monai"),
    )  # fmt: skip
    via_monai = dice_on_reference_grid(
        sitk.ReadImage(str(tmp_path / "monai" / "lung1_image_seg.nii.gz")), reference
    )
    print(f"lung1 Dice (monai.bundle run): {via_monai:.3f}")
    assert abs(via_monai - REPORTED["lung1_heldout_dice"]) <= 0.02

    image = sample_path("lung1_image.nrrd", "pyradiomics")
    proc = medseg_cli("segment", image, "--bundle", str(BUNDLE), "--out", str(tmp_path / "medseg"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    (written,) = (tmp_path / "medseg").rglob("*.nrrd")  # the input's format (3D Slicer's NRRD)
    via_medseg = dice_on_reference_grid(sitk.ReadImage(str(written)), reference)
    assert via_medseg == pytest.approx(via_monai, abs=0.01)

    # The bundle's own evaluation (evaluate.json) scores lung1 on the model's 1.25 x 1.25 x 2.5 mm
    # grid: another grid, so close to the figure above but not equal to it.
    ours = bundle_evaluation(BUNDLE, tmp_path / "eval", "val_tumor_dice")
    assert ours == pytest.approx(via_monai, abs=0.05)


@pytest.mark.slow
def test_training_writes_its_own_checkpoint_and_leaves_the_shipped_one(tmp_path):
    train_beside_shipped(BUNDLE, tmp_path, "--num_workers", "0", "--val_interval", "10", "--num_samples", "2")
