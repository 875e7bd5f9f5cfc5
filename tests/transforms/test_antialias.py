from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from medseg.transforms import AntiAliasd, antialias, antialias_sigma


def test_sigma_follows_resize_convention():
    # MONAI Resize / skimage rescale: sigma = (downsampling factor - 1) / 2, zero when not coarser
    assert antialias_sigma((1.0, 1.0, 2.0), (3.0, 3.0, 2.0)) == pytest.approx((1.0, 1.0, 0.0))
    assert antialias_sigma((3.0, 3.0, 3.0), (1.5, 1.5, 1.5)) == (0.0, 0.0, 0.0)


def test_antialias_equals_direct_gaussian_and_keeps_input():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 16, 16, 8)).astype(np.float32)
    before = image.copy()
    out = antialias(image, (1.0, 1.0, 2.0), (3.0, 3.0, 3.0))
    expected = ndimage.gaussian_filter(image[0], (1.0, 1.0, 0.25), mode="nearest")
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(image, before)


def test_dict_transform_reads_spacing_from_affine():
    affine = torch.diag(torch.tensor([-0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.rand(1, 12, 12, 6), affine=affine)
    out = AntiAliasd("image", target_spacing=(1.5, 1.5, 2.0))({"image": img})["image"]
    expected = ndimage.gaussian_filter(img[0].numpy(), (1.0, 1.0, 0.0), mode="nearest")
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(out.affine, affine)
    unchanged = AntiAliasd("image", target_spacing=(0.5, 0.5, 2.0))({"image": img})["image"]
    assert unchanged is img
