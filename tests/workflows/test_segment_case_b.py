"""Shipped weights on case B, read from its DICOM folder, checked with SimpleITK as the independent reader."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.workflows import segment

ORGANS = {"spleen": 1, "liver": 5, "stomach": 6}


@pytest.fixture(scope="module")
def result(tmp_path_factory, case_b_dicom):
    out = tmp_path_factory.mktemp("seg")
    return segment(case_b_dicom, out_dir=out, progress=False), out


def sitk_dicom(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.slow
def test_mask_is_on_the_dicom_grid(result, case_b_dicom):
    res, _ = result
    pred = sitk.ReadImage(str(res.label_path))
    ct = sitk_dicom(case_b_dicom)
    assert pred.GetSize() == ct.GetSize()
    np.testing.assert_allclose(pred.GetOrigin(), ct.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(pred.GetSpacing(), ct.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(pred.GetDirection(), ct.GetDirection(), atol=1e-6)
    assert res.stats_csv.is_file() and res.stats_json.is_file() and res.overlay_png.stat().st_size > 10_000


@pytest.mark.slow
def test_shipped_weights_reach_dice_on_unseen_case_b(result, case_b_dicom, case_b_reference):
    res, _ = result
    ct = sitk_dicom(case_b_dicom)
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(res.label_path)))
    reference = sitk.Resample(
        sitk.ReadImage(str(case_b_reference)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    ref = sitk.GetArrayFromImage(reference)
    dice = {}
    for name, value in ORGANS.items():
        a, b = pred == value, ref == value
        dice[name] = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    print("Dice on case B:", {k: round(float(v), 3) for k, v in dice.items()})
    assert dice["liver"] >= 0.80
    assert dice["spleen"] >= 0.50
