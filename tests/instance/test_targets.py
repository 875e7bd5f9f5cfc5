"""Detection targets: boxes against find_objects, classes against a numpy vote, RoI sampling and
pasting against slow per-bin / per-voxel loops, and label map -> targets -> label map round trips."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from medseg.errors import InputError
from medseg.instance.targets import detections_to_instances, instances_to_targets, mask_targets

PROPERTY = settings(deadline=None, derandomize=True, database=None, max_examples=60)


# ---- independent references ------------------------------------------------------------------


def reference_boxes(instances: np.ndarray) -> dict[int, list[int]]:
    """find_objects on the ids as they are; its slice stop is already max + 1 (the edge convention)."""
    return {
        i + 1: [s.start for s in box] + [s.stop for s in box]
        for i, box in enumerate(ndimage.find_objects(instances.astype(np.int64)))
        if box is not None
    }


def reference_majority(instances: np.ndarray, classes: np.ndarray, value: int) -> int:
    inside = classes[(instances == value) & (classes > 0)]
    if inside.size == 0:
        return 0
    names, counts = np.unique(inside, return_counts=True)
    return int(names[np.argmax(counts)])  # first maximum: the smallest class on ties


def reference_roi_align(mask: np.ndarray, box, size) -> np.ndarray:
    """torchvision's roi_align (aligned=True, sampling_ratio=1) CPU kernel, one bin at a time."""
    dims = mask.ndim
    out = np.zeros(size)
    for bin_index in itertools.product(*[range(m) for m in size]):
        lows, highs, fractions = [], [], []
        for a in range(dims):
            bin_size = (box[dims + a] - box[a]) / size[a]
            y = box[a] - 0.5 + (bin_index[a] + 0.5) * bin_size
            if y < -1.0 or y > mask.shape[a]:
                break
            y = max(y, 0.0)
            low = int(y)
            if low >= mask.shape[a] - 1:
                low = high = mask.shape[a] - 1
                y = float(low)
            else:
                high = low + 1
            lows.append(low), highs.append(high), fractions.append(y - low)
        else:
            total = 0.0
            for corner in itertools.product((0, 1), repeat=dims):
                index = tuple(highs[a] if c else lows[a] for a, c in enumerate(corner))
                weight = np.prod([fractions[a] if c else 1 - fractions[a] for a, c in enumerate(corner)])
                total += weight * mask[index]
            out[bin_index] = total
    return out


def reference_paste(mask: np.ndarray, box, shape) -> np.ndarray:
    """Each image voxel centre mapped into the mask's bin frame, linear between bin centres, 0 outside."""
    dims = mask.ndim
    out = np.zeros(shape)
    for voxel in itertools.product(*[range(n) for n in shape]):
        u = [(voxel[a] + 0.5 - box[a]) * mask.shape[a] / (box[dims + a] - box[a]) - 0.5 for a in range(dims)]
        low = [int(np.floor(v)) for v in u]
        total = 0.0
        for corner in itertools.product((0, 1), repeat=dims):
            index = tuple(low[a] + c for a, c in enumerate(corner))
            if all(0 <= index[a] < mask.shape[a] for a in range(dims)):
                weight = np.prod([u[a] - low[a] if c else 1 - (u[a] - low[a]) for a, c in enumerate(corner)])
                total += weight * mask[index]
        out[voxel] = total
    return out


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]).astype(np.int64), axis=1)
    return (
        pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))
        and np.array_equal(a == 0, b == 0)  # background maps to background
    )


# ---- phantoms ---------------------------------------------------------------------------------


def touching_blobs(shape, count: int, radius: float, seed: int) -> np.ndarray:
    """Balls split between nearest centres: neighbours touch along a face, some touch the border."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, np.array(shape), size=(count, len(shape)))
    grid = np.indices(shape).reshape(len(shape), -1).T
    distances = np.linalg.norm(grid[:, None, :] - centres[None], axis=2)
    nearest = distances.argmin(1)
    inside = distances[np.arange(len(grid)), nearest] <= radius
    return np.where(inside, nearest + 1, 0).reshape(shape)


def scattered_boxes(shape, count: int, seed: int) -> np.ndarray:
    """Random non-overlapping cuboids of any size from 1 voxel (later ones do not overwrite)."""
    rng = np.random.default_rng(seed)
    instances = np.zeros(shape, np.int64)
    for value in range(1, count + 1):
        start = [rng.integers(0, n) for n in shape]
        stop = [min(n, s + rng.integers(1, 6)) for s, n in zip(start, shape, strict=True)]
        window = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
        instances[window] = np.where(instances[window] == 0, value, instances[window])
    return instances


def sparse_ids(instances: np.ndarray, seed: int, dtype=np.int64) -> np.ndarray:
    """The same objects under non-consecutive ids (e.g. 3, 17, 900), in the given dtype."""
    rng = np.random.default_rng(seed)
    top = min(np.iinfo(dtype).max, 5000)
    table = np.concatenate([[0], np.sort(rng.choice(np.arange(1, top + 1), instances.max(), replace=False))])
    return table[instances].astype(dtype)


PHANTOMS = {
    "blobs2d": lambda seed: touching_blobs((40, 48), 12, 7.0, seed),
    "blobs3d": lambda seed: touching_blobs((14, 18, 16), 8, 4.5, seed),
    "boxes2d": lambda seed: scattered_boxes((30, 26), 15, seed),
    "boxes3d": lambda seed: scattered_boxes((12, 10, 14), 12, seed),
}


# ---- instances_to_targets ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.uint64, np.int64])
@pytest.mark.parametrize("phantom", sorted(PHANTOMS))
def test_boxes_and_ids_equal_find_objects(phantom, dtype):
    instances = sparse_ids(PHANTOMS[phantom](1), seed=2, dtype=dtype)
    targets = instances_to_targets(instances)
    expected = reference_boxes(instances)
    assert targets["ids"].dtype == np.int64 and targets["ids"].tolist() == sorted(expected)
    assert targets["boxes"].dtype == np.float32
    assert targets["boxes"].shape == (len(expected), 2 * instances.ndim)
    np.testing.assert_array_equal(targets["boxes"], [expected[i] for i in sorted(expected)])
    np.testing.assert_array_equal(targets["labels"], 1)
    dims = instances.ndim
    for box, value, mask in zip(targets["boxes"].astype(int), targets["ids"], targets["masks"], strict=True):
        window = tuple(slice(box[a], box[dims + a]) for a in range(dims))
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, instances[window] == value)
        assert (instances == value).sum() == mask.sum()  # nothing of the object outside its box


def test_huge_ids_and_classes():
    """Ids too large for a lookup table (the sorting path): boxes from np.nonzero, votes by numpy."""
    small = touching_blobs((20, 24), 9, 5.0, seed=11)
    instances = np.where(small > 0, small.astype(np.int64) * 2**40 + 3, 0)
    classes = np.where(small > 0, (small % 2) * 2**50 + 1, 0).astype(np.uint64)
    targets = instances_to_targets(instances, classes)
    assert targets["ids"].tolist() == sorted(set(np.unique(instances)) - {0})
    for value, box, label in zip(targets["ids"], targets["boxes"], targets["labels"], strict=True):
        where = np.nonzero(instances == value)
        assert box.tolist() == [w.min() for w in where] + [w.max() + 1 for w in where]
        assert label == reference_majority(instances, classes.astype(np.int64), value)


@pytest.mark.parametrize("phantom", sorted(PHANTOMS))
def test_labels_are_the_majority_class(phantom):
    instances = sparse_ids(PHANTOMS[phantom](3), seed=4)
    rng = np.random.default_rng(5)
    classes = rng.choice([0, 2, 7, 300], size=instances.shape, p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint16)
    classes[instances == instances.max()] = 0  # one instance entirely on class 0: label 0
    targets = instances_to_targets(instances, classes)
    expected = [reference_majority(instances, classes, v) for v in targets["ids"]]
    assert targets["labels"].dtype == np.int64 and targets["labels"].tolist() == expected
    assert 0 in expected


def test_majority_ties_go_to_the_smaller_class():
    instances = np.array([[5, 5, 5, 5]])
    assert instances_to_targets(instances, np.array([[9, 4, 9, 4]]))["labels"].tolist() == [4]
    assert instances_to_targets(instances, np.array([[0, 0, 0, 9]]))["labels"].tolist() == [9]


@pytest.mark.parametrize("shape", [(7, 9), (4, 5, 6)])
def test_single_voxel_and_border_objects(shape):
    instances = np.zeros(shape, np.uint16)
    corner, single = (0,) * len(shape), tuple(n // 2 for n in shape)
    instances[corner] = 1  # one voxel in the corner: box of size 1 touching the border
    instances[single] = 900
    instances[(slice(None),) + (-1,) * (len(shape) - 1)] = 3  # a line along the far border
    targets = instances_to_targets(instances)
    assert targets["ids"].tolist() == [1, 3, 900]
    far = [0] + [n - 1 for n in shape[1:]]
    np.testing.assert_array_equal(
        targets["boxes"],
        [
            [*corner, *(c + 1 for c in corner)],
            [*far, shape[0], *shape[1:]],
            [*single, *(c + 1 for c in single)],
        ],
    )
    point, line = (1,) * len(shape), (shape[0],) + (1,) * (len(shape) - 1)
    assert [m.shape for m in targets["masks"]] == [point, line, point]


@pytest.mark.parametrize(
    "instances", [np.zeros((6, 5), int), np.zeros((3, 4, 5), np.uint8), np.zeros((0, 4))]
)
def test_no_objects_gives_empty_targets(instances):
    targets = instances_to_targets(instances, classes=np.zeros(instances.shape, int))
    assert targets["boxes"].shape == (0, 2 * instances.ndim) and targets["boxes"].dtype == np.float32
    assert targets["labels"].shape == targets["ids"].shape == (0,) and targets["masks"] == []


def test_no_background_bool_and_float_label_maps():
    full = instances_to_targets(np.full((3, 4), 8, np.int8))
    assert full["ids"].tolist() == [8] and full["boxes"].tolist() == [[0, 0, 3, 4]]
    mask = np.zeros((5, 5), bool)
    mask[1:3, 2] = True
    assert instances_to_targets(mask)["boxes"].tolist() == [[1, 2, 3, 3]]
    floats = instances_to_targets(np.where(mask, 17.0, 0.0).astype(np.float32))
    assert floats["ids"].tolist() == [17]


@pytest.mark.parametrize(
    "instances, message",
    [
        (np.array([[0, -3], [1, 1]]), "negative"),
        (np.array([[0, 1.5], [1, 1]]), "non-integer"),
        (np.array([[0, np.nan]]), "NaN"),
        (np.array(["a", "b"]), "dtype"),
        (np.zeros(5, int), "2D or 3D"),
        (np.zeros((2, 2, 2, 2), int), "2D or 3D"),
    ],
)
def test_bad_label_maps_are_refused(instances, message):
    with pytest.raises(InputError, match=message):
        instances_to_targets(instances)


def test_bad_class_maps_are_refused():
    instances = np.ones((3, 3), int)
    with pytest.raises(InputError, match="does not match"):
        instances_to_targets(instances, np.ones((3, 4), int))
    with pytest.raises(InputError, match="negative"):
        instances_to_targets(instances, -np.ones((3, 3), int))


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    instances = torch.zeros(6, 6, dtype=torch.int64)
    instances[1:4, 2:5] = 12
    targets = instances_to_targets(instances)
    assert targets["boxes"].tolist() == [[1, 2, 4, 5]]
    rois = torch.tensor([[0.5, 1.0, 4.5, 5.0]])
    out = mask_targets(instances, torch.tensor([12]), rois, (4, 3))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), mask_targets(instances.numpy(), [12], rois.numpy(), (4, 3)))


# ---- mask_targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("phantom", sorted(PHANTOMS))
def test_mask_targets_equal_the_roi_align_loop(phantom):
    instances = sparse_ids(PHANTOMS[phantom](6), seed=7)
    dims, rng = instances.ndim, np.random.default_rng(8)
    targets = instances_to_targets(instances)
    picks = rng.integers(0, len(targets["ids"]), 10)
    # proposals: the instance boxes jittered, scaled, partly outside the image, one degenerate
    centre = (targets["boxes"][picks, :dims] + targets["boxes"][picks, dims:]) / 2
    half = rng.uniform(0.3, 8, (10, dims))
    centre += rng.normal(0, 2, (10, dims))
    rois = np.concatenate([centre - half, centre + half], 1).astype(np.float32)
    rois[0, :dims] = -3.7  # reaches beyond the image
    rois[1, dims:] = rois[1, :dims]  # zero size
    size = (5, 4, 3)[:dims]
    out = mask_targets(instances, targets["ids"][picks], rois, size)
    assert out.shape == (10, *size) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    for k, (value, roi) in enumerate(zip(targets["ids"][picks], rois, strict=True)):
        expected = reference_roi_align((instances == value).astype(float), roi.astype(float), size)
        np.testing.assert_allclose(out[k], expected, atol=1e-6)


@PROPERTY
@given(
    instances=arrays(np.uint8, st.tuples(st.integers(1, 7), st.integers(1, 7)), elements=st.integers(0, 3)),
    roi=st.lists(st.floats(-3, 10, allow_nan=False), min_size=4, max_size=4),
    size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    value=st.integers(0, 3),
)
def test_mask_targets_property(instances, roi, size, value):
    out = mask_targets(instances, [value], [roi], size)[0]
    expected = reference_roi_align((instances == value).astype(float), roi, size) if value else np.zeros(size)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_mask_targets_edge_cases():
    instances = np.zeros((4, 4), int)
    instances[0, 0] = 5
    assert mask_targets(instances, [], np.zeros((0, 4)), 7).shape == (0, 7, 7)
    np.testing.assert_array_equal(mask_targets(instances, [5], [[0, 0, 1, 1]], 1), [[[1.0]]])  # one voxel
    np.testing.assert_array_equal(mask_targets(instances, [9], [[0, 0, 1, 1]], 1), [[[0.0]]])  # absent id
    np.testing.assert_array_equal(mask_targets(instances, [5], [[-9, -9, -5, -5]], 2), 0)  # off the image
    with pytest.raises(InputError, match="one matched id"):
        mask_targets(instances, [5, 5], [[0, 0, 1, 1]], 2)
    with pytest.raises(InputError, match="output_size"):
        mask_targets(instances, [5], [[0, 0, 1, 1]], (2, 0))
    with pytest.raises(InputError, match="NaN"):
        mask_targets(instances, [5], [[0, 0, np.nan, 1]], 2)
    with pytest.raises(InputError, match="negative"):
        mask_targets(instances, [-5], [[0, 0, 1, 1]], 2)


# ---- detections_to_instances ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("phantom", sorted(PHANTOMS))
def test_round_trip_through_targets_and_paste(phantom, seed):
    instances = sparse_ids(PHANTOMS[phantom](seed), seed=seed, dtype=np.uint16)
    classes = np.random.default_rng(seed).integers(1, 4, instances.max() + 1)[instances] * (instances > 0)
    targets = instances_to_targets(instances, classes)
    scores = np.random.default_rng(seed).uniform(0.5, 1, len(targets["ids"]))
    # full-resolution mask targets (RoI = the voxel-aligned box, one bin per voxel) are the crops
    masks = []
    for box, value, crop in zip(targets["boxes"], targets["ids"], targets["masks"], strict=True):
        size = tuple(int(n) for n in box[instances.ndim :] - box[: instances.ndim])
        masks.append(mask_targets(instances, [value], box[None], size)[0])
        np.testing.assert_array_equal(masks[-1], crop)
    pasted, pasted_classes, kept = detections_to_instances(
        targets["boxes"], scores, masks, instances.shape, labels=targets["labels"]
    )
    assert same_up_to_relabelling(instances, pasted)
    np.testing.assert_array_equal(pasted_classes, classes)
    np.testing.assert_array_equal(kept, np.argsort(-scores, kind="stable"))  # ids by descending score
    for new_id, index in enumerate(kept, start=1):
        assert np.all(instances[pasted == new_id] == targets["ids"][index])


@PROPERTY
@given(arrays(np.int16, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.integers(0, 4)))
def test_round_trip_property(instances):
    targets = instances_to_targets(instances)
    scores = np.ones(len(targets["ids"]))  # equal scores: input order
    pasted, _, kept = detections_to_instances(targets["boxes"], scores, targets["masks"], instances.shape)
    assert same_up_to_relabelling(instances, pasted)
    np.testing.assert_array_equal(kept, np.arange(len(targets["ids"])))


@pytest.mark.parametrize(
    "shape, mask_size, widest, threshold",
    [((9, 11), (5, 4), 8, 0.5), ((14, 12), (2, 1), 14, 0.2), ((5, 6, 7), (3, 4, 2), 8, 0.3)],
)
def test_paste_equals_the_per_voxel_loop(shape, mask_size, widest, threshold):
    rng = np.random.default_rng(9)
    dims = len(shape)
    for _ in range(8):
        start = rng.uniform(-4, np.array(shape) - 1)
        box = np.concatenate(
            [start, start + rng.uniform(0.7, widest, dims)]
        )  # unaligned, often partly outside
        mask = rng.uniform(0, 1, mask_size)
        expected = reference_paste(mask, box, shape) >= threshold
        instances, classes, kept = detections_to_instances(
            [box], [0.9], mask[None], shape, labels=[3], mask_threshold=threshold
        )
        np.testing.assert_array_equal(instances == 1, expected)
        np.testing.assert_array_equal(classes, 3 * expected)
        assert kept.tolist() == ([0] if expected.any() else [])


@pytest.mark.parametrize("dims", [2, 3])
def test_overlaps_go_to_the_higher_score(dims):
    shape = (6,) * dims
    boxes = [[0] * dims + [4] * dims, [2] * dims + [6] * dims]
    masks = np.ones((2,) + (4,) * dims)
    both = (slice(2, 4),) * dims
    for scores, first in [([0.6, 0.9], 1), ([0.9, 0.6], 0), ([0.7, 0.7], 0)]:  # ties: input order
        instances, classes, kept = detections_to_instances(boxes, scores, masks, shape, labels=[5, 8])
        assert kept.tolist() == [first, 1 - first]
        assert np.all(instances[both] == 1) and np.all(classes[both] == [5, 8][first])
        assert (instances == 1).sum() == 4**dims and (instances == 2).sum() == 4**dims - 2**dims


def test_equal_scores_keep_the_input_order():
    boxes = [[i, 0, i + 1, 1] for i in range(60)]
    scores = np.repeat([0.7, 0.9, 0.8], 20)
    instances, _, kept = detections_to_instances(boxes, scores, np.ones((60, 1, 1)), (60, 1))
    expected = np.concatenate([np.arange(20, 40), np.arange(40, 60), np.arange(20)])
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(instances[expected, 0], np.arange(1, 61))


def test_torchvision_mask_layout_and_thresholds():
    boxes = [[0, 0, 3, 3], [3, 3, 6, 6], [0, 3, 3, 6], [3, 0, 3, 3]]  # the last box is empty
    masks = np.ones((4, 1, 2, 2))  # torchvision's (K, 1, M, M)
    instances, _, kept = detections_to_instances(boxes, [0.5, 0.4, 0.8, 0.95], masks, (6, 6))
    assert kept.tolist() == [2, 0]  # 0.4 below the score threshold (0.5 is not), the empty box dropped
    faint, _, kept = detections_to_instances(boxes[:1], [0.9], np.full((1, 2, 2), 0.3), (6, 6))
    assert kept.size == 0 and not faint.any()  # a mask below mask_threshold leaves no voxels


def test_max_instances_keeps_the_highest_scores():
    boxes = [[i, 0, i + 1, 3] for i in range(5)]
    scores = [0.6, 0.95, 0.7, 0.9, 0.8]
    instances, _, kept = detections_to_instances(boxes, scores, np.ones((5, 2, 2)), (5, 3), max_instances=3)
    assert kept.tolist() == [1, 3, 4]
    np.testing.assert_array_equal(instances[:, 0], [0, 1, 0, 2, 3])
    none, _, kept = detections_to_instances(boxes, scores, np.ones((5, 2, 2)), (5, 3), max_instances=0)
    assert kept.size == 0 and not none.any()


@pytest.mark.parametrize("dims", [2, 3])
def test_no_detections(dims):
    shape = (5,) * dims
    for boxes, masks in [
        (np.zeros((0, 2 * dims)), np.zeros((0,) + (28,) * dims)),
        ([], []),
        (np.zeros(0), []),
    ]:
        instances, classes, kept = detections_to_instances(boxes, [], masks, shape)
        assert instances.shape == classes.shape == shape and not instances.any() and not classes.any()
        assert kept.dtype == np.int64 and kept.shape == (0,)
    off_image = [[-9] * dims + [-2] * dims]
    outside, _, kept = detections_to_instances(off_image, [1.0], [np.ones((2,) * dims)], shape)
    assert kept.size == 0 and not outside.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scores": [np.nan]}, "NaN"),
        ({"boxes": [[0, 0, np.inf, 1]]}, "NaN or infinite"),
        ({"boxes": [[0, 0, 1]]}, "expected \\(K, 4\\)"),
        ({"masks": np.ones((2, 2, 2))}, "masks"),
        ({"masks": np.ones((1, 2, 2, 2))}, "masks"),
        ({"labels": [0]}, "labels"),
        ({"labels": [1.5]}, "labels"),
        ({"scores": [0.9, 0.8]}, "2 scores for 1 boxes"),
        ({"mask_threshold": 0.0}, "mask_threshold"),
        ({"max_instances": -1}, "max_instances"),
        ({"image_shape": (4,)}, "image_shape"),
    ],
)
def test_bad_detections_are_refused(kwargs, message):
    arguments = {"boxes": [[0, 0, 2, 2]], "scores": [0.9], "masks": np.ones((1, 2, 2)), "image_shape": (4, 4)}
    with pytest.raises(InputError, match=message):
        detections_to_instances(**{**arguments, **kwargs})
