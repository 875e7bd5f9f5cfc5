"""Properties of the U-Net border weight map (``medseg.transforms.weight_map``), 2D and 3D.

The reference is the straightforward one: one full-image ``distance_transform_edt`` per cell,
the two smallest per pixel, in float64. The map is float32 and drops border terms under
``BORDER_TOLERANCE`` (1e-6), so "equal" means within 1e-6 plus half a float32 step of the value.
"""

from __future__ import annotations

import inspect
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from weight_map_refs import reference_weight_map

from medseg.errors import InputError
from medseg.transforms import weight_map
from medseg.transforms.weight_map import (
    BORDER_TOLERANCE,
    UNetWeightMapd,
    balanced_class_weights,
    unet_weight_map,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
MAX_SIDE = {2: 24, 3: 10}


@st.composite
def instance_maps(draw, ndim: int | None = None, min_side: int = 1) -> np.ndarray:
    """Small label images: scattered pixels of a few ids (ties, cells in pieces) or painted boxes
    (touching cells)."""
    ndim = draw(st.sampled_from([2, 3])) if ndim is None else ndim
    shape = tuple(draw(st.integers(min_side, MAX_SIDE[ndim])) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        density = draw(st.floats(0.0, 0.6))
        ids = draw(st.integers(1, 8))
        return np.where(rng.random(shape) < density, rng.integers(1, ids + 1, shape), 0).astype(np.int32)
    labels = np.zeros(shape, np.int32)
    for index in range(1, draw(st.integers(0, 6)) + 1):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
        labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = index
    return labels


def spacings(ndim: int):
    return st.none() | st.tuples(*[st.floats(0.3, 3.0)] * ndim)


@st.composite
def maps_with_parameters(draw):
    labels = draw(instance_maps())
    spacing = draw(spacings(labels.ndim))
    w0 = draw(st.floats(0.0, 20.0))
    sigma = draw(st.floats(0.3, 12.0))
    class_weights = draw(st.none() | st.tuples(st.floats(0.01, 5.0), st.floats(0.01, 5.0)))
    return labels, spacing, w0, sigma, class_weights


def assert_close_to(out: np.ndarray, expected: np.ndarray) -> None:
    """Within the dropped-tail tolerance plus the float32 rounding of the expected value."""
    tolerance = BORDER_TOLERANCE + np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
    error = np.abs(out.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - tolerance), error.shape)
    assert np.all(error <= tolerance), f"at {worst}: {out[worst]} vs {expected[worst]}"


def memory_layouts(labels: np.ndarray):
    """The same image as a C array or as views in other memory orders (a transposed tensor's numpy view)."""
    reverse = tuple(range(labels.ndim))[::-1]
    return st.sampled_from(
        [
            labels,
            np.asfortranarray(labels),
            np.ascontiguousarray(labels.transpose(reverse)).transpose(reverse),
            np.flip(np.flip(labels, 0).copy(), 0),
        ]
    )


@SETTINGS
@given(maps_with_parameters(), st.data())
def test_equals_per_cell_edt_reference(case, data):
    labels, spacing, w0, sigma, class_weights = case
    labels = data.draw(memory_layouts(labels), label="layout")
    before = labels.copy()
    out = unet_weight_map(labels, spacing, w0, sigma, class_weights)
    assert out.dtype == np.float32 and out.shape == labels.shape
    assert_close_to(out, reference_weight_map(labels, spacing, w0, sigma, class_weights))
    np.testing.assert_array_equal(labels, before)  # the input is not modified


@SETTINGS
@given(maps_with_parameters(), st.data())
def test_float64_map_is_within_the_border_tolerance_of_the_reference(case, data):
    if "dtype" not in inspect.signature(unet_weight_map).parameters:
        pytest.skip("unet_weight_map has no dtype argument: float32 only")
    labels, spacing, w0, sigma, class_weights = case
    labels = data.draw(memory_layouts(labels), label="layout")
    out = unet_weight_map(labels, spacing, w0, sigma, class_weights, dtype=np.float64)
    assert out.dtype == np.float64
    expected = reference_weight_map(labels, spacing, w0, sigma, class_weights)
    # only the dropped tails (each < 1e-6) and float64 rounding separate the two
    np.testing.assert_allclose(out, expected, rtol=0, atol=BORDER_TOLERANCE + 1e-12)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(maps_with_parameters())
def test_scipy_fallback_without_numba_equals_reference(case):
    labels, spacing, w0, sigma, class_weights = case
    with mock.patch.object(weight_map, "_numba_stage", lambda: None):
        out = unet_weight_map(labels, spacing, w0, sigma, class_weights)
    assert_close_to(out, reference_weight_map(labels, spacing, w0, sigma, class_weights))


@SETTINGS
@given(maps_with_parameters())
def test_bounds_cells_get_class_weight_background_at_most_w0_more(case):
    labels, spacing, w0, sigma, class_weights = case
    w_bg, w_fg = balanced_class_weights(labels) if class_weights is None else class_weights
    out = unet_weight_map(labels, spacing, w0, sigma, class_weights)
    np.testing.assert_array_equal(out[labels > 0], np.float32(w_fg))  # no border term inside cells
    background = out[labels == 0]
    assert np.all(background >= np.float32(w_bg))
    assert np.all(background <= np.float32(w_bg + w0))
    if len(np.unique(labels[labels > 0])) < 2:  # no second cell: d2 is infinite, the term is 0
        np.testing.assert_array_equal(background, np.float32(w_bg))


@SETTINGS
@given(instance_maps(), st.integers(0, 2**32 - 1), spacings(3))
def test_relabelling_cells_changes_nothing(labels, seed, spacing):
    spacing = None if spacing is None else spacing[: labels.ndim]
    ids = np.unique(labels)
    ids = ids[ids > 0]
    rng = np.random.default_rng(seed)
    # any injective map of the ids, beyond int32 too: only "same cell or not" may matter
    new = rng.choice(2**40, size=ids.size, replace=False) + 1
    lookup = dict(zip(ids.tolist(), new.tolist(), strict=True))
    relabelled = np.vectorize(lambda v: lookup.get(v, 0), otypes=[np.int64])(labels)
    np.testing.assert_array_equal(
        unet_weight_map(relabelled, spacing, sigma=2.0), unet_weight_map(labels, spacing, sigma=2.0)
    )


@SETTINGS
@given(instance_maps(), spacings(3), st.data())
def test_flips_and_axis_permutations_commute(labels, spacing, data):
    spacing = (1.0,) * labels.ndim if spacing is None else spacing[: labels.ndim]
    out = unet_weight_map(labels, spacing, sigma=3.0).astype(np.float64)
    axis = data.draw(st.integers(0, labels.ndim - 1))
    flipped = unet_weight_map(np.flip(labels, axis), spacing, sigma=3.0)
    assert_close_to(flipped, np.flip(out, axis))
    order = data.draw(st.permutations(range(labels.ndim)))
    permuted = unet_weight_map(labels.transpose(order), [spacing[a] for a in order], sigma=3.0)
    # the axes run in another order, so tails under 1e-6 may drop at other pixels
    assert_close_to(permuted, out.transpose(order))


@SETTINGS
@given(instance_maps(), st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64]))
def test_integer_and_whole_float_dtypes_agree(labels, dtype):
    labels = labels.clip(0, 255)
    expected = unet_weight_map(labels.astype(np.int32))
    np.testing.assert_array_equal(unet_weight_map(labels.astype(dtype)), expected)


@SETTINGS
@given(instance_maps())
def test_boolean_mask_is_refused(labels):
    with pytest.raises(InputError, match="boolean"):
        unet_weight_map(labels > 0)


@SETTINGS
@given(maps_with_parameters(), st.floats(0.25, 4.0))
def test_distances_scale_with_spacing(case, factor):
    labels, spacing, w0, sigma, class_weights = case
    spacing = (1.0,) * labels.ndim if spacing is None else spacing
    # the same image in other units: spacing and sigma scaled alike give the same map
    out = unet_weight_map(labels, spacing, w0, sigma, class_weights)
    scaled = unet_weight_map(labels, [s * factor for s in spacing], w0, sigma * factor, class_weights)
    assert_close_to(scaled, out.astype(np.float64))


@SETTINGS
@given(instance_maps())
def test_balanced_class_weights_average_one(labels):
    w_bg, w_fg = balanced_class_weights(labels)
    n_fg = np.count_nonzero(labels)
    mean = (w_bg * (labels.size - n_fg) + w_fg * n_fg) / labels.size
    assert mean == pytest.approx(1.0, rel=1e-12)
    if 0 < n_fg < labels.size:  # the rarer class weighs more, in inverse proportion
        assert w_bg * (labels.size - n_fg) == pytest.approx(w_fg * n_fg, rel=1e-12)


@SETTINGS
@given(instance_maps(ndim=3), st.permutations(range(3)))
def test_dictionary_transform_on_a_permuted_tensor(labels, order):
    # what a pipeline hands over after a transposing transform: a non-contiguous channel-first tensor
    tensor = torch.from_numpy(labels).permute(*order)[None]
    out = UNetWeightMapd("label", sigma=2.0, image_key=None)({"label": tensor})["weight"]
    assert isinstance(out, torch.Tensor) and out.shape == tensor.shape
    expected = reference_weight_map(labels.transpose(order), None, 10.0, 2.0, None)
    assert_close_to(out[0].numpy(), expected)
