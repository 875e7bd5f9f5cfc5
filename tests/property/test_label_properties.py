"""Properties of the label conversions: ``check_instances``, touching cells (instances <-> 3 classes)
and the per-label intensity shift, 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from medseg.errors import InputError
from medseg.instance import check_instances, classes_to_instances, instances_to_classes
from medseg.instance.touching import BACKGROUND, BORDER, INTERIOR
from medseg.transforms import ClassesToInstancesd, InstancesToClassesd, shift_label_intensity

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)
MAX_SIDE = {2: 24, 3: 10}


@st.composite
def instance_maps(draw, ndim: int | None = None) -> np.ndarray:
    """Scattered pixels of a few ids or painted, overlapping boxes: any valid instance image."""
    ndim = draw(st.sampled_from([2, 3])) if ndim is None else ndim
    shape = tuple(draw(st.integers(1, MAX_SIDE[ndim])) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        density = draw(st.floats(0.0, 0.8))
        return np.where(rng.random(shape) < density, rng.integers(1, draw(st.integers(1, 8)) + 1, shape), 0)
    labels = np.zeros(shape, np.int64)
    for index in range(1, draw(st.integers(0, 6)) + 1):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
        labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = index
    return labels


@st.composite
def box_cells(draw, ndim: int | None = None) -> np.ndarray:
    """Boxes at least 3 voxels wide on a tiling, some touching, some apart, some missing: every
    cell then has a non-empty, connected interior, the case a round trip must recover exactly."""
    ndim = draw(st.sampled_from([2, 3])) if ndim is None else ndim
    cuts = []
    for _ in range(ndim):
        widths = draw(st.lists(st.integers(3, 7), min_size=1, max_size=3 if ndim == 3 else 4))
        cuts.append(np.cumsum([0, *widths]))
    labels = np.zeros([c[-1] for c in cuts], np.int32)
    tiles = np.ndindex(*[len(c) - 1 for c in cuts])
    for index, tile in enumerate(tiles, start=1):
        keep, shrink = draw(st.integers(0, 3)) > 0, draw(st.booleans())  # 3 tiles in 4 hold a cell
        if keep:
            box = tuple(
                slice(c[t] + shrink * (c[t + 1] - c[t] > 3), c[t + 1])
                for c, t in zip(cuts, tile, strict=True)
            )
            labels[box] = index
    return labels


def relabel(labels: np.ndarray, seed: int) -> np.ndarray:
    """The same cells under other ids: a random injective map, 0 kept for background."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    new = np.random.default_rng(seed).choice(10**6, size=ids.size, replace=False) + 1
    out = np.zeros(labels.shape, np.int64)
    for old, value in zip(ids, new, strict=True):
        out[labels == old] = value
    return out


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming the ids (background 0 stays 0)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def face_border(labels: np.ndarray) -> np.ndarray:
    """Cell pixels with a face neighbour (inside the image) of another value: the border, written out."""
    border = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        n = labels.shape[axis]
        ahead = np.take(labels, range(1, n), axis) != np.take(labels, range(n - 1), axis)
        pad = [(0, 0)] * labels.ndim
        border |= np.pad(ahead, [(0, 1) if a == axis else (0, 0) for a in range(labels.ndim)])
        pad[axis] = (1, 0)
        border |= np.pad(ahead, pad)
    return border & (labels > 0)


# check_instances


@SETTINGS
@given(instance_maps(), st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64]))
def test_check_instances_keeps_whole_values_of_any_dtype(labels, dtype):
    labels = labels.clip(0, 255)
    out = check_instances(labels.astype(dtype))
    assert out.dtype.kind in "iu"
    np.testing.assert_array_equal(out, labels)


@SETTINGS
@given(instance_maps())
def test_check_instances_boolean_mask_is_one_object(labels):
    out = check_instances(labels > 0)
    assert out.dtype.kind in "iu"
    np.testing.assert_array_equal(out, (labels > 0).astype(int))


@SETTINGS
@given(instance_maps(), st.sampled_from(["fraction", "nan", "negative"]), st.data())
def test_check_instances_refuses_what_is_not_an_id(labels, bad, data):
    spot = tuple(data.draw(st.integers(0, n - 1)) for n in labels.shape)
    broken = labels.astype(np.float64)
    broken[spot] = {"fraction": 2.5, "nan": np.nan, "negative": -3.0}[bad]
    with pytest.raises(InputError):
        check_instances(broken)
    if bad == "negative":
        with pytest.raises(InputError, match=">= 0"):
            check_instances(broken.astype(np.int32))


# instances -> classes


@SETTINGS
@given(instance_maps())
def test_classes_are_background_interior_border(labels):
    classes = instances_to_classes(labels)
    assert classes.shape == labels.shape
    assert set(np.unique(classes).tolist()) <= {BACKGROUND, INTERIOR, BORDER}
    np.testing.assert_array_equal(classes > BACKGROUND, labels > 0)
    # a cell pixel is border exactly when a face neighbour belongs to something else
    np.testing.assert_array_equal(classes == BORDER, face_border(labels))


@SETTINGS
@given(instance_maps(), st.integers(1, 4))
def test_wider_borders_contain_narrower_ones(labels, width):
    narrow, wide = instances_to_classes(labels, width), instances_to_classes(labels, width + 1)
    np.testing.assert_array_equal(narrow > 0, wide > 0)
    assert np.all(wide[narrow == BORDER] == BORDER)


@SETTINGS
@given(instance_maps(), st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_classes_ignore_the_ids_and_their_dtype(labels, seed, width):
    expected = instances_to_classes(labels, width)
    np.testing.assert_array_equal(instances_to_classes(relabel(labels, seed), width), expected)
    np.testing.assert_array_equal(instances_to_classes(labels.astype(np.float32), width), expected)
    small = labels.clip(0, 255)
    np.testing.assert_array_equal(
        instances_to_classes(small.astype(np.uint8), width),
        instances_to_classes(small.astype(np.int32), width),
    )


@SETTINGS
@given(instance_maps(), st.integers(1, 2), st.data())
def test_classes_commute_with_flips_and_axis_permutations(labels, width, data):
    expected = instances_to_classes(labels, width)
    axis = data.draw(st.integers(0, labels.ndim - 1))
    np.testing.assert_array_equal(instances_to_classes(np.flip(labels, axis), width), np.flip(expected, axis))
    order = data.draw(st.permutations(range(labels.ndim)))
    np.testing.assert_array_equal(
        instances_to_classes(labels.transpose(order), width), expected.transpose(order)
    )


# classes -> instances


@st.composite
def class_maps(draw) -> np.ndarray:
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, MAX_SIDE[ndim])) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = np.array(draw(st.tuples(*[st.floats(0.05, 1.0)] * 3)))
    return rng.choice(3, size=shape, p=p / p.sum()).astype(np.uint8)


@SETTINGS
@given(class_maps(), st.integers(0, 6))
def test_instances_grow_from_interior_seeds_inside_cells(classes, min_size):
    out = classes_to_instances(classes, min_size=min_size)
    assert out.shape == classes.shape
    assert np.all(classes[out > 0] > BACKGROUND)  # never outside a cell
    ids, sizes = np.unique(out[out > 0], return_counts=True)
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))  # sequential ids
    assert np.all(sizes >= min_size)
    structure = ndimage.generate_binary_structure(classes.ndim, min(classes.ndim, 2))
    seeds, n_seeds = ndimage.label(classes == INTERIOR, structure=structure)
    for seed in range(1, n_seeds + 1):  # each seed lies whole in one instance (or was removed)
        assert np.unique(out[seeds == seed]).size == 1
    for instance in ids:  # ... and each instance holds exactly one seed
        assert np.unique(seeds[(out == instance) & (seeds > 0)]).size == 1
    if min_size == 0:
        assert ids.size == n_seeds
        # the cells' pixels that a seed reaches through face neighbours inside cells, no more, no fewer
        reach, _ = ndimage.label(
            classes > BACKGROUND, structure=ndimage.generate_binary_structure(classes.ndim, 1)
        )
        reachable = np.isin(reach, np.unique(reach[seeds > 0])) & (reach > 0)
        np.testing.assert_array_equal(out > 0, reachable)


@SETTINGS
@given(box_cells(), st.integers(0, 2**32 - 1))
def test_round_trip_recovers_box_cells(labels, seed):
    assume(labels.any())
    labels = relabel(labels, seed)
    recovered = classes_to_instances(instances_to_classes(labels))
    assert same_partition(recovered, labels)
    # with the border probability as the elevation too (a network sure of its classes)
    classes = instances_to_classes(labels)
    recovered = classes_to_instances(classes, (classes == BORDER).astype(np.float32))
    assert np.array_equal(recovered > 0, labels > 0)


@SETTINGS
@given(instance_maps())
def test_dictionary_transforms_equal_the_functions(labels):
    classes = InstancesToClassesd("mask", name="classes")({"mask": labels[None]})["classes"]
    np.testing.assert_array_equal(classes, instances_to_classes(labels)[None])
    probs = np.stack([classes[0] == c for c in (BACKGROUND, INTERIOR, BORDER)]).astype(np.float32)
    out = ClassesToInstancesd("pred")({"pred": torch.from_numpy(probs)})["instances"]
    assert out.dtype == np.int32 and out.shape == (1, *labels.shape)
    np.testing.assert_array_equal(out[0], classes_to_instances(classes[0], probs[BORDER]))


# per-label intensity shift


@st.composite
def images_and_labels(draw):
    labels = draw(instance_maps())
    channels = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = rng.normal(0.0, 200.0, (channels, *labels.shape)).astype(
        draw(st.sampled_from([np.float32, np.float64]))
    )
    present = np.unique(labels).tolist()
    named = draw(st.lists(st.sampled_from([*present, 99]), unique=True, max_size=4))
    offsets = {label: draw(st.floats(-100.0, 100.0)) for label in named}
    return image, labels[None], offsets


@SETTINGS
@given(images_and_labels())
def test_unblurred_shift_adds_each_label_its_offset(case):
    image, label, offsets = case
    before = image.copy()
    out = shift_label_intensity(image, label, offsets, sigma=0)
    assert out.dtype == image.dtype and out.shape == image.shape
    expected_offset = np.vectorize(lambda v: offsets.get(v, 0.0), otypes=[np.float64])(label[0])
    np.testing.assert_allclose(
        out, image + expected_offset.astype(np.float32).astype(image.dtype), rtol=0, atol=0
    )
    np.testing.assert_array_equal(image, before)


@SETTINGS
@given(images_and_labels(), st.floats(0.3, 3.0))
def test_blurred_shift_stays_between_the_offsets_and_keeps_their_total(case, sigma):
    image, label, offsets = case
    image = image.astype(np.float64)
    shift = shift_label_intensity(image, label, offsets, sigma=sigma) - image
    assert np.allclose(shift, shift[:1])  # the same shift on every channel
    low, high = min([0.0, *offsets.values()]), max([0.0, *offsets.values()])
    slack = 1e-4 * max(1.0, high - low)
    assert shift.min() >= low - slack and shift.max() <= high + slack
    sharp = shift_label_intensity(np.zeros_like(image), label, offsets, sigma=0)
    assert shift[0].sum() == pytest.approx(sharp[0].sum(), rel=1e-4, abs=1e-2)  # blurring moves, never adds


@SETTINGS
@given(images_and_labels(), st.floats(0.0, 2.0))
def test_tensor_and_array_inputs_agree(case, sigma):
    image, label, offsets = case
    expected = shift_label_intensity(image, label, offsets, sigma)
    out = shift_label_intensity(torch.from_numpy(image), torch.from_numpy(label), offsets, sigma)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.from_numpy(image).dtype
    np.testing.assert_array_equal(out.numpy(), expected)
