from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from medseg.transforms.elastic import RandElasticDeformd, coarse_displacements, dense_field, elastic_deform

SHAPES = {2: (40, 36), 3: (12, 20, 16)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def spatial_dims(request) -> int:
    return request.param


def instance_labels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """(1, *shape) label map of many blocky instances with scattered ids, so that an
    interpolated id (say 7.5 -> 8 between 5 and 10) would be a value the input lacks."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(np.arange(0, 1000, 5), size=tuple(max(1, s // 4) for s in shape))
    return ndimage.zoom(cells, [s / c for s, c in zip(shape, cells.shape, strict=True)], order=0)[None]


def test_zero_field_is_identity(spatial_dims):
    shape = SHAPES[spatial_dims]
    image = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    field = dense_field(np.zeros((spatial_dims, *[3] * spatial_dims)), shape)
    assert not field.any()
    for order in (0, 1):
        np.testing.assert_array_equal(elastic_deform(image, field, order=order), image)
    # cubic goes through a spline prefilter and back: identity up to rounding
    np.testing.assert_allclose(elastic_deform(image, field, order=3), image, atol=1e-5)


@pytest.mark.parametrize("order", [0, 1])
def test_constant_field_shifts_by_whole_voxels(spatial_dims, order):
    shape = SHAPES[spatial_dims]
    image = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    shift = np.array([3, -2, 1][:spatial_dims])
    coarse = np.broadcast_to(shift.reshape(-1, *[1] * spatial_dims), (spatial_dims, *[3] * spatial_dims))
    field = dense_field(coarse, shape)
    np.testing.assert_array_equal(
        field, np.broadcast_to(coarse[(..., *[slice(0, 1)] * spatial_dims)], field.shape)
    )
    out = elastic_deform(image, field, order=order)
    # out[x] = image[x + d]: the content moves by -d; compare where x + d stays inside
    expected = np.roll(image, tuple(-shift), axis=tuple(range(1, spatial_dims + 1)))
    interior = (slice(None), *[slice(max(0, -d), n - max(0, d)) for d, n in zip(shift, shape, strict=True)])
    np.testing.assert_array_equal(out[interior], expected[interior])


def test_field_passes_through_control_points_and_matches_scipy_zoom(spatial_dims):
    # (n - 1) divisible by (g - 1): every control point lands on a voxel
    grid, shape = {2: ((3, 5), (9, 17)), 3: ((3, 3, 4), (9, 5, 13))}[spatial_dims]
    coarse = coarse_displacements(np.random.default_rng(2), grid, sigma=10.0)
    field = dense_field(coarse, shape)
    steps = tuple(slice(None, None, (n - 1) // (g - 1)) for n, g in zip(shape, grid, strict=True))
    np.testing.assert_allclose(field[(slice(None), *steps)], coarse, atol=1e-5)
    zoom = [s / g for s, g in zip(shape, grid, strict=True)]
    expected = np.stack([ndimage.zoom(c, zoom, order=3, mode="mirror", grid_mode=False) for c in coarse])
    np.testing.assert_allclose(field, expected, atol=1e-5)


def test_field_is_c2_smooth(spatial_dims):
    """Cubic B-splines of control values |c| <= M spaced h voxels apart have |f''| <= 12 M / h**2
    and |f'''| <= 24 M / h**3 (basis derivatives times the interpolation prefilter's gain of 3).
    A kinked (linear) field or a C1-only one (Keys bicubic) breaks the third-difference bound."""
    grid, shape = {2: ((3, 4), (201, 301)), 3: ((3, 3, 3), (41, 61, 81))}[spatial_dims]
    coarse = coarse_displacements(np.random.default_rng(3), grid, sigma=10.0)
    bound = np.abs(coarse).max()
    for order, smooth in ((3, True), (1, False)):
        field = dense_field(coarse, shape, order=order).astype(np.float64)
        for axis, (n, g) in enumerate(zip(shape, grid, strict=True)):
            h = (n - 1) / (g - 1)
            assert np.abs(np.diff(field, 2, axis=axis + 1)).max() <= 12 * bound / h**2 or not smooth
            third = np.abs(np.diff(field, 3, axis=axis + 1)).max()
            assert (third <= 24 * bound / h**3) == smooth


def test_labels_keep_their_ids(spatial_dims):
    label = instance_labels(SHAPES[spatial_dims]).astype(np.int32)
    field = dense_field(coarse_displacements(4, 3, sigma=4.0, spatial_dims=spatial_dims), label.shape[1:])
    out = elastic_deform(label, field, order=0)
    assert out.dtype == label.dtype
    assert set(np.unique(out)) <= set(np.unique(label))
    assert (out != label).mean() > 0.05  # the field did move things
    mask = label.astype(bool)
    assert elastic_deform(mask, field, order=0).dtype == np.bool_


def test_dtypes():
    field = dense_field(np.full((2, 3, 3), 0.5), (6, 6))
    assert elastic_deform(np.ones((1, 6, 6), np.int16), field, order=1).dtype == np.float32
    assert elastic_deform(np.ones((1, 6, 6), np.float16), field, order=1).dtype == np.float16
    assert elastic_deform(np.ones((1, 6, 6), np.float64), field, order=3).dtype == np.float64
    with pytest.raises(ValueError, match="field must be"):
        elastic_deform(np.ones((1, 5, 6)), field)


def test_sigma_in_physical_units_is_divided_by_spacing():
    mm = coarse_displacements(5, (3, 3), sigma=10.0, spacing=(2.0, 0.5))
    voxels = coarse_displacements(5, (3, 3), sigma=(5.0, 20.0))
    np.testing.assert_allclose(mm, voxels, rtol=1e-12)
    wide = coarse_displacements(np.random.RandomState(0), (100, 100), sigma=(5.0, 20.0))
    np.testing.assert_allclose(wide.std(axis=(1, 2)), (5.0, 20.0), rtol=0.05)
    with pytest.raises(ValueError, match="spatial_dims"):
        coarse_displacements(0, 3)


def test_one_field_for_image_label_and_weight(spatial_dims):
    label = instance_labels(SHAPES[spatial_dims], seed=6).astype(np.int64)
    weight = np.random.default_rng(6).random(label.shape).astype(np.float32)
    t = RandElasticDeformd(["image", "label", "weight"], sigma=4.0, order=(0, 0, 1))
    out = t.set_random_state(6)({"image": label.astype(np.float32), "label": label, "weight": weight})
    np.testing.assert_array_equal(out["image"], out["label"].astype(np.float32))
    field = dense_field(t.coarse, label.shape[1:])
    np.testing.assert_array_equal(out["weight"], elastic_deform(weight, field, order=1))
    assert out["label"].dtype == np.int64 and not np.array_equal(out["label"], label)


def test_seeded_reproducible_and_seeds_differ(spatial_dims):
    image = torch.rand(1, *SHAPES[spatial_dims])
    t = RandElasticDeformd("image", sigma=5.0)
    a = t.set_random_state(7)({"image": image})["image"]
    b = t.set_random_state(7)({"image": image})["image"]
    c = t.set_random_state(8)({"image": image})["image"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert t.coarse.shape == (spatial_dims, *[3] * spatial_dims)


def test_prob_zero_returns_input_unchanged():
    image = torch.rand(1, 8, 8)
    out = RandElasticDeformd("image", prob=0.0)({"image": image})
    assert out["image"] is image


def test_metatensor_keeps_meta_and_label_dtype(spatial_dims):
    shape = SHAPES[spatial_dims]
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0][-(spatial_dims + 1) :], dtype=torch.float64))
    image = MetaTensor(torch.rand(1, *shape), affine=affine, meta={"filename_or_obj": "ct.nii.gz"})
    label = MetaTensor(torch.as_tensor(instance_labels(shape)).to(torch.int16), affine=affine)
    t = RandElasticDeformd(["image", "label"], order=(1, 0), spacing=(0.8, 0.8, 2.5)[:spatial_dims])
    out = t.set_random_state(9)({"image": image, "label": label})
    for key, dtype in (("image", torch.float32), ("label", torch.int16)):
        assert isinstance(out[key], MetaTensor) and out[key].dtype == dtype
        torch.testing.assert_close(out[key].affine, affine)
    assert out["image"].meta["filename_or_obj"] == "ct.nii.gz"
    assert set(out["label"].unique().tolist()) <= set(label.unique().tolist())


def test_keys_must_share_a_shape():
    t = RandElasticDeformd(["image", "label"])
    with pytest.raises(ValueError, match="one spatial shape"):
        t({"image": np.zeros((1, 8, 8)), "label": np.zeros((1, 8, 9))})
