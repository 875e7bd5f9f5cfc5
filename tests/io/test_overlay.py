"""The overlay's intensity window follows the modality, and 2D images (grey and RGB) get one panel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medseg.io.overlay import CT_WINDOW, display_window, save_overlay_2d


def test_ct_gets_the_soft_tissue_window_and_others_their_percentiles():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 100.0, size=(40, 30, 10)).astype(np.float32)
    assert display_window(image, "CT") == CT_WINDOW == (-175.0, 250.0)
    for modality in ("MR", "light microscopy", ""):
        lo, hi = display_window(image, modality)
        assert (lo, hi) == pytest.approx((np.percentile(image, 1.0), np.percentile(image, 99.5)), rel=1e-6)
    assert display_window(np.zeros((4, 4)), "MR") == (0.0, 1.0)  # a flat image still gets a window


def test_2d_overlay_keeps_the_image_shape_and_shows_rgb_as_is(tmp_path):
    rgb = np.zeros((60, 40, 3), np.uint8)  # (x, y, c): 60 wide, 40 high
    rgb[..., 0] = 200
    label = np.zeros((60, 40), np.uint8)
    label[10:20, 5:15] = 1
    path = save_overlay_2d(tmp_path / "o.png", rgb, label, {1: "cell"})
    with Image.open(path) as png:
        width, height = png.size
    assert abs(width / height - 60 / 40) < 0.1  # not transposed
