"""Properties of the metrics: per-label Dice (``medseg.metrics.overlap``) and one-to-one instance
matching, F1, "AP" and panoptic quality (``medseg.metrics.instance``), 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from medseg.metrics import (
    AP_THRESHOLDS,
    average_precision,
    dice_per_label,
    match_dataset,
    match_instances,
    pairwise_iou,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
MAX_SIDE = {2: 20, 3: 8}
SCORES = ("precision", "recall", "f1", "accuracy", "mean_true_iou", "mean_matched_iou", "panoptic_quality")


@st.composite
def label_pairs(draw, max_id: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A reference and a prediction of one shape: the prediction a noisy, shifted or relabelled copy,
    or unrelated; labels as scattered ids or painted boxes (touching, split and merged objects)."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, MAX_SIDE[ndim])) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def labels() -> np.ndarray:
        if rng.random() < 0.3:
            return np.where(rng.random(shape) < rng.random(), rng.integers(1, max_id + 1, shape), 0)
        out = np.zeros(shape, np.int64)
        for index in range(1, int(rng.integers(0, max_id + 1)) + 1):
            lo = [int(rng.integers(0, n)) for n in shape]
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
            out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = index
        return out

    true = labels()
    how = draw(st.sampled_from(["noisy", "shifted", "unrelated", "same"]))
    if how == "noisy":
        pred = np.where(
            rng.random(shape) < draw(st.floats(0.0, 0.5)), rng.integers(0, max_id + 1, shape), true
        )
    elif how == "shifted":
        pred = np.roll(true, int(rng.integers(-2, 3)), axis=int(rng.integers(0, ndim)))
    elif how == "unrelated":
        pred = labels()
    else:
        pred = true.copy()
    return true, pred


def relabel(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    new = rng.choice(10**9, size=ids.size, replace=False) + 1
    out = np.zeros(labels.shape, np.int64)
    for old, value in zip(ids, new, strict=True):
        out[labels == old] = value
    return out


def counts_and_scores(m) -> dict:
    return {k: getattr(m, k) for k in ("n_true", "n_pred", "tp", "fp", "fn", "iou_sum", *SCORES)}


def assert_same_matching(a, b) -> None:
    for key, value in counts_and_scores(a).items():
        assert getattr(b, key) == pytest.approx(value, rel=1e-12, abs=1e-12), key


# Dice


def reference_dice(pred: np.ndarray, reference: np.ndarray, label: int) -> float:
    p, r = pred == label, reference == label
    return math.nan if not r.any() else 2.0 * np.sum(p & r) / (p.sum() + r.sum())


@st.composite
def dice_cases(draw):
    true, pred = draw(label_pairs())
    labels = draw(st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True))
    return true, pred, labels


@SETTINGS
@given(dice_cases())
def test_dice_equals_set_counting_and_is_in_zero_one(case):
    true, pred, labels = case
    scores = dice_per_label(pred, true, labels)
    assert set(scores) == set(labels)
    for label in labels:
        expected = reference_dice(pred, true, label)
        if math.isnan(expected):
            assert math.isnan(scores[label])  # nothing to find: undefined, not 0 or 1
        else:
            assert 0.0 <= scores[label] <= 1.0
            assert scores[label] == pytest.approx(expected, rel=1e-6, abs=1e-7), label


@SETTINGS
@given(dice_cases())
def test_dice_is_symmetric_where_both_hold_the_label(case):
    true, pred, labels = case
    forward, backward = dice_per_label(pred, true, labels), dice_per_label(true, pred, labels)
    for label in labels:
        if (true == label).any() and (pred == label).any():
            assert forward[label] == pytest.approx(backward[label], rel=1e-6)


@SETTINGS
@given(dice_cases())
def test_dice_of_a_map_with_itself_is_one(case):
    true, _, labels = case
    for label, score in dice_per_label(true, true, labels).items():
        assert score == 1.0 if (true == label).any() else math.isnan(score)


@SETTINGS
@given(dice_cases(), st.sampled_from([np.uint8, np.int32, np.int64, np.uint16]), st.data())
def test_dice_ignores_dtype_and_pixel_order(case, dtype, data):
    true, pred, labels = case
    expected = dice_per_label(pred, true, labels)
    same_dtype = dice_per_label(pred.astype(dtype), true.astype(dtype), labels)
    order = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).permutation(true.size)
    shuffled = dice_per_label(pred.ravel()[order], true.ravel()[order], labels)  # any pixel order, 1D too
    for label in labels:
        for other in (same_dtype, shuffled):
            assert other[label] == pytest.approx(expected[label], rel=1e-6, nan_ok=True)


@SETTINGS
@given(label_pairs())
def test_dice_of_a_boolean_mask_is_label_one(pair):
    true, pred = pair
    expected = dice_per_label((pred > 0).astype(np.uint8), (true > 0).astype(np.uint8), [1])[1]
    score = dice_per_label(pred > 0, true > 0, [1])[1]
    assert score == pytest.approx(expected, nan_ok=True)


# instance matching


def reference_matching(true: np.ndarray, pred: np.ndarray, threshold: float) -> tuple[int, float]:
    """True positives and their IoU sum by a dense assignment over every pair of objects.

    IoUs from one mask per object; the most pairs with IoU >= t, then the largest IoU sum among
    those (each pair is worth 1000 + IoU, so no IoU gain can make up for a lost pair).
    """
    true_ids = [i for i in np.unique(true) if i]
    pred_ids = [i for i in np.unique(pred) if i]
    if not true_ids or not pred_ids:
        return 0, 0.0
    iou = np.zeros((len(true_ids), len(pred_ids)))
    for a, t in enumerate(true_ids):
        for b, p in enumerate(pred_ids):
            inter = np.sum((true == t) & (pred == p))
            iou[a, b] = inter / np.sum((true == t) | (pred == p))
    weight = np.where(iou >= threshold, 1000.0 + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    kept = iou[rows, cols] >= threshold
    return int(kept.sum()), float(iou[rows, cols][kept].sum())


thresholds = st.sampled_from([0.1, 0.3, 0.5, 0.75, 0.9, 1.0]) | st.floats(0.01, 1.0)


@SETTINGS
@given(label_pairs(), thresholds)
def test_matching_equals_a_dense_reference_and_scores_are_bounded(pair, threshold):
    true, pred = pair
    m = match_instances(true, pred, threshold)
    tp, iou_sum = reference_matching(true, pred, threshold)
    assert (m.tp, m.n_true, m.n_pred) == (tp, len(np.unique(true[true > 0])), len(np.unique(pred[pred > 0])))
    assert m.iou_sum == pytest.approx(iou_sum, rel=1e-9, abs=1e-12)
    assert (m.fp, m.fn) == (m.n_pred - m.tp, m.n_true - m.tp)
    for name in SCORES:
        assert 0.0 <= getattr(m, name) <= 1.0 + 1e-12, name
    assert m.accuracy <= m.f1 + 1e-12 and m.panoptic_quality <= m.f1 + 1e-12
    assert min(m.precision, m.recall) - 1e-12 <= m.f1 <= max(m.precision, m.recall) + 1e-12
    assert all(iou >= threshold for _, _, iou in m.pairs)
    assert len({t for t, _, _ in m.pairs}) == len({p for _, p, _ in m.pairs}) == m.tp  # one-to-one


@SETTINGS
@given(label_pairs(), thresholds)
def test_matching_is_symmetric(pair, threshold):
    true, pred = pair
    forward, backward = match_instances(true, pred, threshold), match_instances(pred, true, threshold)
    assert (backward.tp, backward.fp, backward.fn) == (forward.tp, forward.fn, forward.fp)
    assert (backward.precision, backward.recall) == pytest.approx((forward.recall, forward.precision))
    for name in ("f1", "accuracy", "panoptic_quality", "iou_sum", "mean_matched_iou"):
        assert getattr(backward, name) == pytest.approx(getattr(forward, name), rel=1e-12, abs=1e-12), name


@SETTINGS
@given(label_pairs())
def test_identical_label_maps_score_perfectly(pair):
    true, _ = pair
    m = match_instances(true, true.copy(), iou_threshold=1.0)
    n = len(np.unique(true[true > 0]))
    assert (m.tp, m.fp, m.fn) == (n, 0, 0)
    expected = 1.0 if n else 0.0  # two empty images score 0 (StarDist's convention)
    for name in SCORES:
        assert getattr(m, name) == pytest.approx(expected), name
    assert all(t == p and iou == 1.0 for t, p, iou in m.pairs)


@SETTINGS
@given(label_pairs(), thresholds, st.integers(0, 2**32 - 1))
def test_renaming_objects_changes_no_score(pair, threshold, seed):
    true, pred = pair
    rng = np.random.default_rng(seed)
    expected = match_instances(true, pred, threshold)
    renamed = match_instances(relabel(true, rng), relabel(pred, rng), threshold)
    assert_same_matching(expected, renamed)


@SETTINGS
@given(
    label_pairs(), thresholds, st.integers(0, 2**32 - 1), st.sampled_from(["flip", "transpose", "shuffle"])
)
def test_moving_pixels_alike_changes_no_score(pair, threshold, seed, how):
    true, pred = pair
    expected = match_instances(true, pred, threshold)
    rng = np.random.default_rng(seed)
    axis, order, pixels = (
        int(rng.integers(0, true.ndim)),
        rng.permutation(true.ndim),
        rng.permutation(true.size),
    )

    def move(a: np.ndarray) -> np.ndarray:
        if how == "flip":
            return np.flip(a, axis)
        if how == "transpose":
            return a.transpose(order)
        return a.ravel()[pixels].reshape(a.shape)  # objects need not be connected: any pixel permutation

    assert_same_matching(expected, match_instances(move(true), move(pred), threshold))


@SETTINGS
@given(label_pairs(), st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]))
def test_matching_ignores_the_dtype(pair, dtype):
    true, pred = pair
    expected = match_instances(true, pred)
    assert_same_matching(expected, match_instances(true.astype(dtype), pred.astype(dtype)))
    # a boolean mask is one object with id 1
    assert_same_matching(match_instances(true > 0, pred > 0), match_instances((true > 0) * 1, (pred > 0) * 1))


@SETTINGS
@given(label_pairs())
def test_pairwise_iou_equals_masks(pair):
    true, pred = pair
    overlaps = pairwise_iou(true, pred)
    got = {
        (int(overlaps.true_ids[a]), int(overlaps.pred_ids[b])): iou
        for a, b, iou in zip(overlaps.true_index, overlaps.pred_index, overlaps.iou, strict=True)
    }
    expected = {}
    for t in np.unique(true[true > 0]):
        for p in np.unique(pred[pred > 0]):
            inter = np.sum((true == t) & (pred == p))
            if inter:
                expected[(int(t), int(p))] = inter / np.sum((true == t) | (pred == p))
    assert got.keys() == expected.keys()
    for key, iou in expected.items():
        assert 0.0 < got[key] <= 1.0 and got[key] == pytest.approx(iou, rel=1e-12)


@SETTINGS
@given(label_pairs())
def test_true_positives_never_grow_with_the_threshold(pair):
    true, pred = pair
    result = average_precision(true, pred)
    assert result["thresholds"] == AP_THRESHOLDS
    assert all(a >= b for a, b in zip(result["tp"], result["tp"][1:], strict=False))
    assert all(a >= b - 1e-12 for a, b in zip(result["ap"], result["ap"][1:], strict=False))
    for t, ap, f1 in zip(AP_THRESHOLDS, result["ap"], result["f1"], strict=True):
        m = match_instances(true, pred, t)
        assert (ap, f1) == (m.accuracy, m.f1)
    assert result["mean_ap"] == pytest.approx(np.mean(result["ap"]))


@SETTINGS
@given(st.lists(label_pairs(), min_size=1, max_size=4), thresholds, st.randoms(use_true_random=False))
def test_dataset_pools_the_counts_of_its_images(pairs, threshold, random):
    # one dimensionality per dataset is not required: images are matched one by one
    per_image = [match_instances(t, p, threshold) for t, p in pairs]
    pooled = match_dataset([t for t, _ in pairs], [p for _, p in pairs], threshold)
    for key in ("n_true", "n_pred", "tp", "fp", "fn"):
        assert getattr(pooled, key) == sum(getattr(m, key) for m in per_image), key
    assert pooled.iou_sum == pytest.approx(sum(m.iou_sum for m in per_image))
    assert pooled.pairs == ()
    shuffled = list(pairs)
    random.shuffle(shuffled)  # the order of the images does not matter
    again = match_dataset([t for t, _ in shuffled], [p for _, p in shuffled], threshold)
    assert_same_matching(pooled, again)
    if len(pairs) == 1:
        assert_same_matching(per_image[0], pooled)
