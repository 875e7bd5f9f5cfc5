"""Images with NaN or infinite values are refused with the file's name (not segmented as empty)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medseg.errors import InputError
from medseg.io import MedsegReader
from medseg.transforms import CheckFinited, check_finite


def test_nan_tiff_is_refused_with_its_name(tmp_path):
    image = np.ones((16, 12), np.float32)
    image[3, 4], image[5, 6] = np.nan, np.inf
    tifffile.imwrite(tmp_path / "cells.tif", image)
    load = Compose(
        [LoadImaged("image", reader=MedsegReader(), image_only=True), EnsureChannelFirstd("image")]
    )
    with pytest.raises(InputError, match=r"cells.tif: 2 voxels are NaN or infinite"):
        CheckFinited("image")(load({"image": str(tmp_path / "cells.tif")}))


def test_finite_and_integer_images_pass():
    check_finite(np.zeros((4, 4), np.float32))
    check_finite(np.zeros((4, 4), np.uint16))
