from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.transforms import RandLabelIntensityShiftd, shift_label_intensity


def test_shift_without_blur_is_exact_per_label():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    label = rng.integers(0, 3, (1, 6, 5, 4))
    out = shift_label_intensity(image, label, {1: 10.0, 2: -5.0}, sigma=0)
    expected = image + np.where(label == 1, 10.0, 0) + np.where(label == 2, -5.0, 0)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert out is not image


def test_dict_transform_is_reproducible_and_within_range():
    image = torch.zeros(1, 8, 8, 8)
    label = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)
    label[:, :4] = 1
    t = RandLabelIntensityShiftd("image", "label", labels=[1], offset_range=(20, 30), sigma=0, prob=1.0)
    t.set_random_state(3)
    a = t({"image": image, "label": label})["image"]
    t.set_random_state(3)
    b = t({"image": image, "label": label})["image"]
    torch.testing.assert_close(a, b)
    inside = a[0, :4].unique()
    assert inside.numel() == 1 and 20 <= float(inside) <= 30
    assert float(a[0, 4:].abs().max()) == 0


@pytest.mark.parametrize("prob", [0.0])
def test_prob_zero_leaves_image_untouched(prob):
    image = torch.rand(1, 4, 4, 4)
    t = RandLabelIntensityShiftd("image", "label", labels=[1], prob=prob)
    out = t({"image": image, "label": torch.ones(1, 4, 4, 4)})["image"]
    assert out is image
