"""NIfTI errors, atomic writes and resampling between grids by world coordinates."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import InputError
from medseg.io import label_to_grid, read_image, write_nifti


def test_truncated_nifti_names_the_file(case_a, tmp_path):
    data = case_a[0].read_bytes()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="broken.nii.gz: not a readable NIfTI"):
        read_image(broken)


def test_text_file_with_nifti_name_is_refused(tmp_path):
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(InputError, match="fake.nii.gz"):
        read_image(fake)


def test_unknown_type_and_missing_file(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported image type"):
        read_image(tmp_path / "a.txt")
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "nope.nii.gz")


def test_write_nifti_round_trip_keeps_affine_and_leaves_no_temp(tmp_path):
    affine = np.array([[-0.8, 0, 0, 10], [0, 0.8, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    label = np.random.default_rng(0).integers(0, 5, (7, 6, 5)).astype(np.uint8)
    path = write_nifti(tmp_path / "lab.nii.gz", label, affine)
    back = nib.load(path)
    np.testing.assert_array_equal(np.asarray(back.dataobj), label)
    np.testing.assert_allclose(back.affine, affine)
    assert [p.name for p in tmp_path.iterdir()] == ["lab.nii.gz"]


def test_label_to_grid_undoes_a_flip_exactly():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 4, (9, 8, 5)).astype(np.uint8)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    flipped_affine = affine.copy()
    flipped_affine[1, 1] = -1.0
    flipped_affine[1, 3] = 7.0  # row j of the flipped grid is row 7 - j of the original
    out = label_to_grid(label[:, ::-1], flipped_affine, label.shape, affine)
    np.testing.assert_array_equal(out, label)


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path):
    from medseg.io import atomic_dir

    out = tmp_path / "new"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "partial.nii.gz").write_bytes(b"x")
        raise RuntimeError("case failed")
    assert not out.exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "earlier.csv").write_text("a")
    with pytest.raises(RuntimeError), atomic_dir(existing) as tmp:
        (tmp / "partial.nii.gz").write_bytes(b"x")
        raise RuntimeError("case failed")
    assert [p.name for p in existing.iterdir()] == ["earlier.csv"]
