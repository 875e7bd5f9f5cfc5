"""`medseg demo` end to end on case B (DICOM); SimpleITK is the independent reader."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.data import REPO_ROOT

ORGANS = {"spleen": 1, "liver": 5, "stomach": 6}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "demo", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def sitk_dicom(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def independent_dice(label_path, case_b_dicom, case_b_reference) -> dict[str, float]:
    ct = sitk_dicom(case_b_dicom)
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    reference = sitk.Resample(
        sitk.ReadImage(str(case_b_reference)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    ref = sitk.GetArrayFromImage(reference)
    return {
        name: 2 * np.logical_and(pred == v, ref == v).sum() / ((pred == v).sum() + (ref == v).sum())
        for name, v in ORGANS.items()
    }


@pytest.mark.slow
def test_demo_writes_every_output_on_the_dicom_grid(demo_run, case_b_dicom):
    out, stdout = demo_run
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert {
        "example_ct_dicom/example_ct_dicom_seg.nii.gz",
        "example_ct_dicom/example_ct_dicom_volumes.csv",
        "example_ct_dicom/example_ct_dicom_volumes.json",
        "example_ct_dicom/example_ct_dicom_overlay.png",
        "dice.csv",
        "dice.json",
    } <= names
    assert not [n for n in names if ".tmp" in n]
    pred = sitk.ReadImage(str(out / "example_ct_dicom" / "example_ct_dicom_seg.nii.gz"))
    ct = sitk_dicom(case_b_dicom)
    assert pred.GetSize() == ct.GetSize()
    np.testing.assert_allclose(pred.GetOrigin(), ct.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(pred.GetSpacing(), ct.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(pred.GetDirection(), ct.GetDirection(), atol=1e-6)
    assert "Dice against the sample's reference" in stdout and "liver" in stdout


@pytest.fixture(scope="module")
def case_b_dice(demo_run, case_b_dicom, case_b_reference) -> dict[str, float]:
    out, _ = demo_run
    dice = independent_dice(
        out / "example_ct_dicom" / "example_ct_dicom_seg.nii.gz", case_b_dicom, case_b_reference
    )
    print("Dice on case B:", {k: round(float(v), 3) for k, v in dice.items()})
    return dice


@pytest.mark.slow
def test_reported_dice_matches_independent_computation(demo_run, case_b_dice):
    out, _ = demo_run
    reported = {row["name"]: row["dice"] for row in json.loads((out / "dice.json").read_text())}
    for name, value in case_b_dice.items():
        assert reported[name] == pytest.approx(value, abs=1e-3)


@pytest.mark.slow
def test_shipped_weights_reach_liver_dice_on_unseen_case_b(case_b_dice):
    assert case_b_dice["liver"] >= 0.80


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="target not reached: spleen Dice on case B is far below 0.50 with weights trained on one "
    "non-contrast scan (figures and what was tried: bundles/abdomen_ct_segmentation/docs/README.md)",
)
def test_shipped_weights_reach_spleen_dice_on_unseen_case_b(case_b_dice):
    assert case_b_dice["spleen"] >= 0.50


def readme_demo_figures() -> tuple[dict[str, float | None], dict[str, float]]:
    """The Dice (3 decimals, ``n/a`` as None) and organ volumes (0.1 mL) the README's demo block
    shows: the promise the demo must keep (shipped weights, 2 CPU cores)."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text[text.index("Organ volumes (mL):") : text.index("The reference labels are TotalSegmentator")]
    volumes_text, dice_text = block.split("Dice against the sample's reference segmentation")
    volumes = {m[0]: float(m[1]) for m in re.findall(r"^  (\w+)\s+([\d.]+)$", volumes_text, re.M)}
    dice = {
        m[0]: None if m[1] == "n/a" else float(m[1])
        for m in re.findall(r"^(\w+)\s+([\d.]+|n/a)\s", dice_text, re.M)
    }
    return dice, volumes


@pytest.mark.slow
def test_demo_prints_the_figures_in_the_readme(demo_run):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the README's figures are from 2 CPU cores; with CUDA the demo runs on the GPU")
    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    readme_dice, readme_volumes = readme_demo_figures()
    assert len(readme_dice) == len(readme_volumes) == 7  # every organ of the bundle is shown
    dice = {row["name"]: None if row["dice"] is None else round(row["dice"], 3) for row in summary["dice"]}
    assert dice == readme_dice
    volumes = {row["name"]: round(row["volume_ml"], 1) for row in summary["volumes"]}
    assert volumes == readme_volumes
