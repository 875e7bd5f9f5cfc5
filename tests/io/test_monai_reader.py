"""MONAI's LoadImage/LoadImaged read DICOM folders through medseg.io.MedsegReader."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from monai.transforms import LoadImage, LoadImaged, Orientation

from medseg.data.synthetic import write_dicom_series
from medseg.io import MedsegReader


def test_load_image_matches_simpleitk(case_b_dicom):
    image = LoadImage(reader=MedsegReader(), image_only=True)(str(case_b_dicom))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(case_b_dicom)))
    ref = reader.Execute()
    np.testing.assert_array_equal(image.numpy(), sitk.GetArrayFromImage(ref).transpose(2, 1, 0))
    lps = np.eye(4)
    lps[:3, :3] = np.reshape(ref.GetDirection(), (3, 3)) * ref.GetSpacing()
    lps[:3, 3] = ref.GetOrigin()
    np.testing.assert_allclose(image.affine.numpy(), np.diag([-1.0, -1, 1, 1]) @ lps, atol=1e-4)


def test_load_imaged_picks_a_series_and_orients(tmp_path):
    """Two series in one folder: the reader's ``series`` chooses; MONAI's Orientation then works."""
    affine = np.array([[0, 0, 2.0, 5], [0.9, 0, 0, -40], [0, -0.9, 0, 60], [0, 0, 0, 1.0]])  # sagittal
    volume = np.arange(12 * 10 * 6, dtype=np.int16).reshape(12, 10, 6)
    write_dicom_series(volume, affine, tmp_path / "sag", uids={"series": "1.2.3.1"})
    write_dicom_series(
        np.zeros((8, 8, 3), np.int16), np.eye(4), tmp_path / "other", uids={"series": "1.2.3.2"}
    )
    loaded = LoadImaged("image", reader=MedsegReader(series="1.2.3.1"), image_only=True)(
        {"image": str(tmp_path)}
    )
    image = Orientation(axcodes="RAS")(loaded["image"][None])[0]
    # The expected RAS-ordered array, from the known affine alone: flip axes pointing to L/P/I, permute.
    ras = np.diag([-1.0, -1, 1, 1]) @ affine
    codes = np.abs(ras[:3, :3]).argmax(0)  # world axis of each voxel axis
    expected = volume
    for axis in range(3):
        if ras[codes[axis], axis] < 0:
            expected = np.flip(expected, axis)
    expected = np.transpose(expected, np.argsort(codes))
    np.testing.assert_array_equal(image.numpy(), expected)
