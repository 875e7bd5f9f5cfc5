"""Lung mask and lesion pasting: phantoms with known geometry, and the real chest CT samples."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from scipy import ndimage

from medseg.data import sample_path
from medseg.transforms import LungMaskd, RandLesionPasted, lung_mask, lung_region, paste_lesion
from medseg.transforms.lesion_paste import erase_lesion


def chest_phantom() -> tuple[np.ndarray, np.ndarray]:
    """Air around a soft-tissue body holding two air-filled 'lungs' (x, y, z axial slices)."""
    ct = np.full((64, 48, 10), -1000.0)
    ct[4:60, 4:44] = 40.0
    lungs = np.zeros(ct.shape, bool)
    lungs[10:28, 10:38, 1:9] = True
    lungs[36:54, 10:38, 1:9] = True
    ct[lungs] = -850.0
    return ct, lungs


def test_lung_mask_is_the_enclosed_air_of_a_phantom():
    ct, lungs = chest_phantom()
    ct[30:33, 20:22, 4] = -600.0  # a speck of enclosed air far smaller than a lung: dropped
    np.testing.assert_array_equal(lung_mask(ct), lungs)
    np.testing.assert_array_equal(lung_mask(ct[None])[None], lungs[None])


def test_lung_region_keeps_everything_without_lungs():
    abdomen = np.full((1, 20, 20, 4), 40.0)
    assert lung_region(abdomen).all() and lung_region(abdomen).shape == abdomen.shape


@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_real_chest_ct_lung_mask_holds_the_lesion(case):
    image = sitk.ReadImage(sample_path(f"{case}_image.nrrd", "pyradiomics"))
    label = sitk.GetArrayFromImage(sitk.ReadImage(sample_path(f"{case}_label.nrrd", "pyradiomics")))
    ct = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # (x, y, z): axial slices last
    mask = lung_mask(ct)
    litres = mask.sum() * np.prod(image.GetSpacing()) / 1e6
    assert 1.5 < litres < 8.0  # adult lungs in a chest CT (these scans cover most of both)
    lesion = np.argwhere(label.transpose(2, 1, 0) > 0)
    box = np.argwhere(mask)
    assert (lesion.min(0) >= box.min(0)).all() and (lesion.max(0) <= box.max(0)).all()


def test_lung_maskd_adds_a_mask_with_the_image_geometry():
    ct, lungs = chest_phantom()
    image = MetaTensor(torch.as_tensor(ct[None]), affine=torch.diag(torch.tensor([0.7, 0.7, 5.0, 1.0])))
    out = LungMaskd("image", mask_key="lung")({"image": image})
    np.testing.assert_array_equal(out["lung"][0].numpy(), lungs)
    np.testing.assert_allclose(out["lung"].affine, image.affine)


def lesion_case() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((40, 40, 40), np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[5:13, 6:12, 7:15] = 1
    image[label > 0] = np.arange(label.sum(), dtype=np.float32)  # a texture to follow
    return image, label


def test_paste_at_scale_one_copies_the_lesion_exactly():
    image, label = lesion_case()
    before = (image.copy(), label.copy())
    lesion = (image[5:13, 6:12, 7:15], label[5:13, 6:12, 7:15].astype(np.float32))
    out_image, out_label = paste_lesion(
        image, label, lesion, centre=(30, 30, 30), scale=1.0, offset=5.0, sigma=0
    )
    np.testing.assert_array_equal(out_image[26:34, 27:33, 26:34], lesion[0] + 5.0)
    np.testing.assert_array_equal(out_label[26:34, 27:33, 26:34], 1)
    assert out_label.sum() == 2 * label.sum()
    untouched = np.ones(image.shape, bool)
    untouched[26:34, 27:33, 26:34] = False
    np.testing.assert_array_equal(out_image[untouched], image[untouched])
    np.testing.assert_array_equal(image, before[0])  # inputs are not modified
    np.testing.assert_array_equal(label, before[1])


def test_paste_scales_the_volume_and_clips_at_the_border():
    image, label = lesion_case()
    sphere = (np.linalg.norm(np.indices((21, 21, 21)) - 10, axis=0) <= 10).astype(np.float32)
    _, half = paste_lesion(
        image, np.zeros_like(label), (sphere * 50, sphere), (20, 20, 20), scale=0.5, sigma=0
    )
    assert half.sum() == pytest.approx(sphere.sum() / 8, rel=0.2)
    _, edge = paste_lesion(image, np.zeros_like(label), (sphere * 50, sphere), (0, 0, 0), scale=1.0, sigma=0)
    assert edge.sum() == sphere[10:, 10:, 10:].sum()  # the part from the centre on lies inside


def test_rand_lesion_paste_is_seeded_and_stays_in_the_region():
    image, label = lesion_case()
    region = np.zeros(image.shape, np.uint8)
    region[25:35, 25:35, 25:35] = 1
    data = {
        "image": torch.as_tensor(image[None]),
        "label": torch.as_tensor(label[None]),
        "lung": region[None],
    }

    def run(seed):
        t = RandLesionPasted("image", scale_range=(0.5, 0.5), max_count=2, prob=1.0)
        t.set_random_state(seed)
        return t(data)

    a, b = run(1), run(1)
    torch.testing.assert_close(a["image"], b["image"])
    added = a["label"][0].numpy().astype(bool) & ~label.astype(bool)
    assert added.any()
    centres = np.argwhere(added).mean(0)
    assert ((centres > 20) & (centres < 40)).all()
    t = RandLesionPasted("image", prob=0.0)
    assert t(data)["image"] is data["image"]
    empty = dict(data, label=torch.zeros_like(data["label"]))
    t = RandLesionPasted("image", prob=1.0)
    assert t(empty)["image"] is empty["image"]


def test_erase_lesion_replaces_the_dilated_lesion_and_clears_its_label():
    image, label = lesion_case()
    fill = np.full(image.shape, -850.0, np.float32)
    out_image, out_label = erase_lesion(image, label, fill, sigma=0)
    grown = ndimage.binary_dilation(label > 0)
    assert (out_image[grown] == -850.0).all() and (out_image[~grown] == image[~grown]).all()
    assert not out_label.any()


def test_rand_lesion_paste_can_erase_the_original_lesion():
    image, label = lesion_case()
    region = np.zeros(image.shape, np.uint8)
    region[25:35, 25:35, 25:35] = 1
    image[region > 0] = -850.0
    data = {
        "image": torch.as_tensor(image[None]),
        "label": torch.as_tensor(label[None]),
        "lung": region[None],
    }
    t = RandLesionPasted("image", scale_range=(0.5, 0.5), max_count=1, sigma=0, erase_prob=1.0, prob=1.0)
    t.set_random_state(0)
    out = t(data)
    new_label, new_image = out["label"][0].numpy(), out["image"][0].numpy()
    assert not new_label[label > 0].any() and new_label.any()  # the original gone, a copy elsewhere
    assert (new_image[label > 0] == -850.0).all()  # filled with values drawn from the region


def test_lung_maskd_keeps_the_whole_scan_without_lungs():
    """An abdomen CT (no enclosed air) is not cropped to nothing by the bundle's CropForegroundd."""
    from monai.transforms import CropForegroundd

    abdomen = MetaTensor(torch.full((1, 20, 20, 4), 40.0))
    out = LungMaskd("image", mask_key="lung")({"image": abdomen})
    assert out["lung"].all()
    cropped = CropForegroundd(["image", "lung"], source_key="lung", margin=[8, 8, 4], allow_smaller=True)(out)
    assert cropped["image"].shape == abdomen.shape
