from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from weight_map_refs import reference_weight_map

from medseg.data import sample_path
from medseg.errors import InputError
from medseg.transforms import weight_map
from medseg.transforms.weight_map import (
    UNetWeightMapd,
    balanced_class_weights,
    border_cutoff,
    unet_weight_map,
)


def assert_matches_reference(labels: np.ndarray, spacing=None, **kwargs) -> np.ndarray:
    """The README's "equal to a per-cell reference to 1e-6": the float64 map within 1e-6 of the
    reference, and the float32 map (the default) that map rounded. Returns the float32 map."""
    exact = unet_weight_map(labels, spacing, dtype=np.float64, **kwargs)
    assert exact.dtype == np.float64
    np.testing.assert_allclose(exact, reference_weight_map(labels, spacing, **kwargs), rtol=0, atol=1e-6)
    out = unet_weight_map(labels, spacing, **kwargs)
    assert out.dtype == np.float32 and out.shape == labels.shape
    np.testing.assert_array_equal(out, exact.astype(np.float32))
    return out


def touching_cells(shape: tuple[int, ...], n: int, radius: tuple[float, float], seed: int) -> np.ndarray:
    """Non-overlapping discs/spheres, half of them placed right against an earlier one."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(20 * n):
        r = rng.uniform(*radius)
        if centres and rng.random() < 0.5:  # touching or one pixel apart
            j = rng.integers(len(centres))
            u = rng.normal(size=len(shape))
            c = centres[j] + (radii[j] + r + rng.uniform(0.0, 1.0)) * u / np.linalg.norm(u)
        else:
            c = rng.uniform(0, shape)
        box = tuple(
            slice(max(0, int(ci - r)), min(s, int(ci + r) + 2)) for ci, s in zip(c, shape, strict=True)
        )
        grid = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
        inside = sum((g - ci) ** 2 for g, ci in zip(grid, c, strict=True)) <= r * r
        if not inside.any() or labels[box][inside].any():
            continue
        centres.append(c)
        radii.append(r)
        labels[box][inside] = len(centres)
        if len(centres) == n:
            break
    return labels


CASES = {
    "2d": ((96, 112), 30, (4.0, 9.0), None),
    "2d-anisotropic": ((96, 112), 30, (4.0, 9.0), (0.7, 1.3)),
    "3d": ((24, 40, 36), 24, (2.5, 6.0), None),
    "3d-anisotropic": ((24, 40, 36), 24, (2.5, 6.0), (2.0, 0.6, 0.8)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_per_cell_reference(case):
    shape, n, radius, spacing = CASES[case]
    labels = touching_cells(shape, n, radius, seed=len(case))
    before = labels.copy()
    for sigma in (5.0, 2.0):
        out = assert_matches_reference(labels, spacing, sigma=sigma)
    np.testing.assert_array_equal(labels, before)
    # the border term is really there: some gaps between touching cells weigh ~ w_c + w0
    assert out.max() > balanced_class_weights(labels)[0] + 5


@pytest.mark.parametrize("shape", [(40, 36), (12, 14, 16)], ids=["2d", "3d"])
def test_scattered_pixels_of_few_ids(shape):
    # cells in many pieces, one-pixel runs and exact distance ties everywhere: the hard cases
    rng = np.random.default_rng(1)
    labels = np.where(rng.random(shape) < 0.1, rng.integers(1, 9, shape), 0)
    for spacing in (None, (1.5, 1.0, 0.5)[-len(shape) :]):
        assert_matches_reference(labels, spacing, sigma=2.0)


def test_large_sigma_cutoff_beyond_the_image():
    labels = touching_cells((64, 72), 12, (4.0, 8.0), seed=3)
    assert_matches_reference(labels, (1.0, 0.5), w0=4.0, sigma=30.0, class_weights=(1.0, 2.0))


@pytest.mark.parametrize("case", ["2d", "3d-anisotropic"])
def test_without_numba_the_scipy_fallback_agrees(case, monkeypatch):
    # the path taken when numba is missing: one EDT per cell, on its box grown by the cutoff
    monkeypatch.setattr(weight_map, "_numba_stage", lambda: None)
    shape, n, radius, spacing = CASES[case]
    labels = touching_cells(shape, n, radius, seed=7)
    assert_matches_reference(labels, spacing)


def shipped_mask(source: str, name: str) -> np.ndarray:
    # A shipped sample is part of the product: a missing one fails here (InputError names it).
    return tifffile.imread(sample_path(name, source=source))


def test_real_nuclei_2d():
    labels = shipped_mask("nuclei_2d", "mask2d.tif")[128:384, 128:384]  # DSB 2018 (StarDist), 27 nuclei
    assert_matches_reference(labels)


def test_real_nuclei_3d_anisotropic():
    # cells3d nuclei (tifffile's z, y, x), its documented voxel size in um; sigma 1.5 um ~ 6 voxels
    labels = shipped_mask("nuclei_3d", "nuclei_label.tif")[25:55, 48:128, 160:240]  # 6 nuclei, touching
    assert_matches_reference(labels, (0.29, 0.26, 0.26), sigma=1.5)


def test_one_pixel_gap_by_hand():
    labels = np.zeros((5, 7), np.int32)
    labels[:, :3], labels[:, 4:] = 1, 2  # column 3 is the gap: d1 = d2 = 1
    out = unet_weight_map(labels)
    w_bg, w_fg = 35 / (2 * 5), 35 / (2 * 30)  # N / (2 n_c): 5 background, 30 cell pixels
    np.testing.assert_allclose(out[:, 3], w_bg + 10 * np.exp(-((1 + 1) ** 2) / (2 * 5**2)), rtol=1e-6)
    np.testing.assert_allclose(out[:, [0, 2, 4, 6]], w_fg, rtol=1e-6)


def test_one_slice_gap_is_physical_distance():
    labels = np.zeros((5, 4, 4), np.int32)
    labels[:2], labels[3:] = 1, 2  # slice 2 is the gap, 2.5 mm from each cell
    out = unet_weight_map(labels, spacing=(2.5, 0.5, 0.5), w0=10.0, sigma=2.5, class_weights=(1.0, 1.0))
    np.testing.assert_allclose(out[2], 1 + 10 * np.exp(-(5.0**2) / (2 * 2.5**2)), rtol=1e-6)
    np.testing.assert_array_equal(out[[0, 1, 3, 4]], 1.0)


def test_single_cell_has_no_border_term():
    labels = np.zeros((30, 40), np.int64)
    labels[10:20, 12:25] = 7
    w_bg, w_fg = balanced_class_weights(labels)
    out = unet_weight_map(labels)
    np.testing.assert_array_equal(out, np.where(labels > 0, np.float32(w_fg), np.float32(w_bg)))


def test_empty_mask_gives_class_weights_only():
    assert np.all(unet_weight_map(np.zeros((8, 9, 10), np.uint8)) == 1.0)  # one class present: w_c = 1
    assert np.all(unet_weight_map(np.zeros((16, 16)), class_weights=(0.25, 3.0)) == 0.25)


def test_ids_need_not_be_consecutive_small_integer_typed_or_contiguous():
    labels = touching_cells((48, 56), 10, (4.0, 8.0), seed=5)
    expected = unet_weight_map(labels)
    scattered = np.where(labels > 0, labels.astype(np.int64) * 2**40 + 3, 0)  # beyond int32
    np.testing.assert_array_equal(unet_weight_map(scattered), expected)
    np.testing.assert_array_equal(unet_weight_map(labels.astype(np.float32)), expected)
    # a non-contiguous view; the axes run in another order, so tails < 1e-6 may drop elsewhere
    np.testing.assert_allclose(unet_weight_map(labels.T), expected.T, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0.0, 1.0], [2.5, 0.0]]), "whole numbers"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
        (np.array([[0, -1], [1, 2]]), ">= 0"),
        (np.ones((4, 4), bool), "boolean mask"),
        (np.ones((1, 2, 4, 4), np.int32), "no channel axis"),
        (np.ones(5, np.int32), "no channel axis"),
    ],
    ids=["fractional", "nan", "negative", "bool", "4d", "1d"],
)
def test_bad_labels_raise_input_error(labels, message):
    with pytest.raises(InputError, match=message):
        unet_weight_map(labels)


def test_bad_parameters_raise_value_error():
    labels = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="spacing"):
        unet_weight_map(labels, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="sigma"):
        unet_weight_map(labels, sigma=0.0)
    with pytest.raises(ValueError, match="background, foreground"):
        unet_weight_map(labels, class_weights=(1.0, 2.0, 3.0))


def test_dict_transform_reads_spacing_from_metatensor():
    labels = touching_cells((20, 32, 28), 14, (2.5, 5.0), seed=11)
    affine = torch.diag(torch.tensor([-2.0, 0.6, 0.8, 1.0], dtype=torch.float64))
    label = MetaTensor(torch.from_numpy(labels[None]), affine=affine)
    image = MetaTensor(torch.rand(1, *labels.shape), affine=affine)
    out = UNetWeightMapd("label", sigma=3.0)({"image": image, "label": label})
    weight = out["weight"]
    assert (
        isinstance(weight, MetaTensor)
        and weight.shape == (1, *labels.shape)
        and weight.dtype == torch.float32
    )
    torch.testing.assert_close(weight.affine, affine)
    expected = assert_matches_reference(labels, (2.0, 0.6, 0.8), sigma=3.0)
    np.testing.assert_array_equal(weight[0].numpy(), expected)
    assert out["label"] is label and out["image"] is image


def test_dict_transform_2d_numpy_and_explicit_spacing():
    labels = touching_cells((40, 44), 8, (3.0, 6.0), seed=2)[None]
    out = UNetWeightMapd("mask", weight_key="w", spacing=(0.5, 2.0))({"mask": labels})["w"]
    assert isinstance(out, np.ndarray) and out.shape == labels.shape
    np.testing.assert_array_equal(out[0], assert_matches_reference(labels[0], (0.5, 2.0)))
    # spacing given explicitly wins over the label's affine
    meta = MetaTensor(torch.from_numpy(labels), affine=torch.diag(torch.tensor([9.0, 9.0, 1.0, 1.0])))
    again = UNetWeightMapd("mask", weight_key="w", spacing=(0.5, 2.0))({"mask": meta})["w"]
    np.testing.assert_array_equal(again[0].numpy(), out[0])


def test_dict_transform_rejects_mismatched_image_and_channels():
    label = np.zeros((1, 16, 16), np.int32)
    with pytest.raises(InputError, match="spatial shape"):
        UNetWeightMapd("label")({"label": label, "image": np.zeros((1, 16, 18), np.float32)})
    with pytest.raises(InputError, match="one channel"):
        UNetWeightMapd("label")({"label": np.zeros((2, 16, 16), np.int32)})


def test_cutoff_drops_only_negligible_terms():
    assert 10.0 * np.exp(-(border_cutoff(10.0, 5.0) ** 2) / (2 * 5.0**2)) == pytest.approx(1e-6)
    assert border_cutoff(0.0, 5.0) == 0.0
