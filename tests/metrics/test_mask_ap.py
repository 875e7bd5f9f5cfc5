"""COCO mask AP against pycocotools' COCOeval(iouType="segm"), hand-computed cases and the empty cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from coco_refs import coco_eval
from scipy import ndimage as ndi

from medseg.errors import InputError
from medseg.metrics import AP_THRESHOLDS, detection_scores, mask_average_precision, match_dataset

TOLERANCE = 1e-3  # asked for; measured: at most 2.2e-16 (pycocotools adds eps to precision), printed with -s
LOW_THRESHOLDS = (0.1, 0.2, 0.3, 0.4)  # below 0.5 a detection has several candidates: the greedy order counts
DIFFERENCES: list[float] = []


def assert_agrees(
    true, pred, scores, true_classes=None, pred_classes=None, max_detections=100, thresholds=None
):
    # medseg's default thresholds are decimals, pycocotools' np.linspace(0.5, 0.95, 10): the same matches.
    ours = mask_average_precision(
        true, pred, scores, true_classes, pred_classes, max_detections, thresholds or AP_THRESHOLDS
    )
    ref = coco_eval(true, pred, scores, true_classes, pred_classes, max_detections, thresholds)
    for value, expected in zip((ours.ap, ours.ap50, ours.ap75, ours.ar), ref, strict=True):
        if math.isnan(value):
            assert expected == -1
            continue
        DIFFERENCES.append(abs(value - expected))
        assert value == pytest.approx(expected, abs=TOLERANCE)
    return ours


def voronoi(shape: tuple[int, ...], n: int, rng: np.random.Generator, background: float = 0.3) -> np.ndarray:
    """Touching cells (nearest of ``n`` random seeds), random non-sequential ids, some background."""
    seeds = rng.uniform(0, shape, (n, len(shape)))
    grid = np.stack(np.indices(shape), -1).reshape(-1, len(shape))
    nearest = np.argmin(((grid[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1).reshape(shape)
    ids = rng.choice(np.arange(1, 10_000), n, replace=False)
    labels = ids[nearest]
    noise = ndi.gaussian_filter(rng.random(shape), 2)
    labels[noise < np.quantile(noise, background)] = 0
    return labels


def perturbed(true: np.ndarray, rng: np.random.Generator, n_false: int = 3) -> np.ndarray:
    """A prediction from the truth: objects dilated, eroded, shifted or kept, some missed, false ones added"""
    pred = np.zeros_like(true)
    for i in np.unique(true[true > 0]):
        mask = true == i
        action = rng.integers(6)
        if action == 0:
            continue  # missed
        if action == 1:
            mask = ndi.binary_dilation(mask, iterations=int(rng.integers(1, 3)))
        elif action == 2:
            mask = ndi.binary_erosion(mask, iterations=int(rng.integers(1, 3)))
        elif action == 3:
            mask = np.roll(mask, tuple(rng.integers(-3, 4, true.ndim)), tuple(range(true.ndim)))
        pred[mask] = rng.integers(1, 10_000)  # later objects cover earlier ones: partial overlaps
    for _ in range(n_false):
        centre = rng.integers(0, true.shape)
        box = tuple(slice(max(c - 3, 0), c + 3) for c in centre)
        pred[box] = rng.integers(10_000, 20_000)
    return pred


def random_scores(pred: np.ndarray, rng: np.random.Generator, levels: int | None = None) -> dict[int, float]:
    """A score per predicted id: uniform, or one of ``levels`` values (many ties)."""
    ids = np.unique(pred[pred > 0])
    values = rng.random(ids.size) if levels is None else rng.integers(0, levels, ids.size) / levels
    return dict(zip(ids.tolist(), values.tolist(), strict=True))


def class_map(labels: np.ndarray, classes: dict[int, int]) -> np.ndarray:
    lookup = np.zeros(labels.max() + 1, np.int32)
    lookup[list(classes)] = list(classes.values())
    return lookup[labels]


def dataset(shape, n_images, seed, levels=None, n_cells=12):
    rng = np.random.default_rng(seed)
    true = [voronoi(shape, n_cells, rng) for _ in range(n_images)]
    pred = [perturbed(t, rng) for t in true]
    return true, pred, [random_scores(p, rng, levels) for p in pred]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 3])  # 3: scores 0, 1/3, 2/3, many ties within and across images
def test_perturbed_truth_agrees_with_pycocotools_2d(seed, levels):
    assert_agrees(*dataset((48, 48), 4, seed, levels))


@pytest.mark.parametrize("seed", range(3))
def test_random_maps_agree_with_pycocotools_2d(seed):
    # Two unrelated tilings: IoUs spread over (0, 1), few matches at 0.5 and above.
    rng = np.random.default_rng(100 + seed)
    true = [voronoi((40, 40), 10, rng) for _ in range(3)]
    pred = [voronoi((40, 40), 12, rng, background=0.1) for _ in range(3)]
    assert_agrees(true, pred, [random_scores(p, rng, 4) for p in pred])


@pytest.mark.parametrize("seed", range(3))
def test_greedy_matching_below_one_half_agrees_with_pycocotools(seed):
    # Below 0.5 a detection can reach several true objects and a true object several detections, so
    # this checks the order of COCOeval's greedy matching (by score, then best IoU, then later object).
    true, pred, scores = dataset((40, 40), 3, 200 + seed, levels=4)
    assert_agrees(true, pred, scores, thresholds=LOW_THRESHOLDS)


@pytest.mark.parametrize("max_detections", [1, 5])
def test_more_detections_than_max_detections_agrees_with_pycocotools(max_detections):
    true, pred, scores = dataset((48, 48), 3, 7, levels=5, n_cells=14)
    assert all(len(s) > max_detections for s in scores)
    full = mask_average_precision(true, pred, scores)
    assert assert_agrees(true, pred, scores, max_detections=max_detections).ar < full.ar


def test_over_one_hundred_detections_per_image_agrees_with_pycocotools():
    # The default maxDets = 100 with 144 small predicted squares, 144 true ones shifted by one pixel.
    rng = np.random.default_rng(3)
    true, pred = np.zeros((96, 96), np.int32), np.zeros((96, 96), np.int32)
    for k, (r, c) in enumerate(np.ndindex(12, 12)):
        true[8 * r + 1 : 8 * r + 7, 8 * c + 1 : 8 * c + 7] = k + 1
        shift = int(rng.integers(0, 3))
        pred[8 * r + 1 + shift : 8 * r + 7, 8 * c + 1 : 8 * c + 7] = 1000 + k
    assert_agrees([true], [pred], [random_scores(pred, rng, 6)])


@pytest.mark.parametrize("seed", range(3))
def test_3d_agrees_with_pycocotools_on_reshaped_volumes(seed):
    true, pred, scores = dataset((16, 16, 12), 2, 300 + seed, levels=4 if seed else None, n_cells=10)
    assert_agrees(true, pred, scores)
    assert_agrees(true, pred, scores, thresholds=LOW_THRESHOLDS)


def test_classes_agree_with_pycocotools_and_class_maps_vote():
    rng = np.random.default_rng(11)
    true, pred, scores = dataset((48, 48), 3, 11, levels=4)
    true_classes = [{int(i): int(rng.integers(1, 4)) for i in np.unique(t[t > 0])} for t in true]
    # Predicted objects mostly take the class of the true object they overlap most, sometimes another.
    pred_classes = []
    for t, p, tc in zip(true, pred, true_classes, strict=True):
        classes = {}
        for i in np.unique(p[p > 0]):
            under = t[(p == i) & (t > 0)]
            guess = tc[int(np.bincount(under).argmax())] if under.size else 1
            classes[int(i)] = guess if rng.random() < 0.8 else int(rng.integers(1, 4))
        pred_classes.append(classes)
    ours = assert_agrees(true, pred, scores, true_classes, pred_classes)
    assert ours.classes == (1, 2, 3)
    assert ours.ap == pytest.approx(np.mean(ours.ap_per_class))
    # The same classes as class maps of the images' shape: each object takes its most frequent class.
    true_maps = [class_map(t, c) for t, c in zip(true, true_classes, strict=True)]
    pred_maps = [class_map(p, c) for p, c in zip(pred, pred_classes, strict=True)]
    noisy = [m.copy() for m in pred_maps]
    for m, p in zip(noisy, pred, strict=True):  # a few stray pixels in objects of 10 or more: same majority
        large = np.isin(
            p, [i for i, n in zip(*np.unique(p, return_counts=True), strict=True) if i and n >= 10]
        )
        m[large & (rng.random(p.shape) < 0.05)] = 3
    assert mask_average_precision(true, pred, scores, true_maps, noisy) == ours
    scores_in_id_order = [np.array(list(s.values())) for s in scores]  # dicts were built in id order
    assert mask_average_precision(true, pred, scores_in_id_order, true_maps, pred_maps) == ours


def test_largest_difference_from_pycocotools():
    # Runs after the agreement tests in this file (pytest keeps file order): reports what they measured.
    if DIFFERENCES:
        print(f"\nmask AP vs pycocotools: {len(DIFFERENCES)} values, max |difference| {max(DIFFERENCES):.2e}")
        assert max(DIFFERENCES) < 1e-12


def square(shape, box) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    labels[box] = 1
    return labels


def test_hand_computed_cases():
    true = square((10, 10), np.s_[:, :5])  # one object of 50 pixels
    # A perfect prediction: matched at every threshold, precision 1 at every recall point.
    perfect = mask_average_precision([true], [true * 4], [{4: 0.3}])
    assert (perfect.ap, perfect.ap50, perfect.ap75, perfect.ar) == (1.0, 1.0, 1.0, 1.0)
    # IoU 30/50 = 0.6: matched at 0.5, 0.55 and 0.6 (AP 1 each), not at 0.65..0.95 (AP 0 each),
    # so AP = (1 + 1 + 1 + 0 * 7) / 10 = 0.3, AP50 = 1, AP75 = 0, AR = 3 / 10.
    r = assert_agrees([true], [square((10, 10), np.s_[:6, :5])], [{1: 0.5}])
    assert (r.ap, r.ap50, r.ap75, r.ar) == (pytest.approx(0.3), 1.0, 0.0, pytest.approx(0.3))
    # IoU 45/50 = 0.9 exactly: matched up to 0.9 (pycocotools' 0.8999999999999999 too), AP = 9/10.
    assert assert_agrees([true], [square((10, 10), np.s_[:9, :5])], [{1: 0.5}]).ap == pytest.approx(0.9)
    # Two true objects; the higher-scored detection is a false positive, the other finds object 1:
    # recall 0 then 1/2, precision 0 then 1/2, made non-increasing [1/2, 1/2]. The recall points
    # 0, 0.01, ..., 0.50 (51 of 101) read 1/2, the 50 above 0.5 read 0: AP = 51 / 2 / 101 at every
    # threshold (the detection is exact), AR = 1/2.
    true2 = true.copy()
    true2[:2, 8:] = 2
    pred = true.copy()
    pred[8:, 7:] = 9
    r = assert_agrees([true2], [pred], [{1: 0.4, 9: 0.9}])
    assert r.ap == pytest.approx(51 / 2 / 101) and r.ar == 0.5


def test_tied_scores_keep_image_then_id_order():
    # One true object, a false positive (id 1) and a perfect detection (id 2) with the same score: the
    # false positive comes first (in order of id), so precision is 0 then 1/2 -> 1/2 at every recall
    # point: AP 0.5. With the ids swapped the perfect detection comes first: precision 1 at recall 1.
    true = square((10, 10), np.s_[:, :5])
    pred = true * 2
    pred[:2, 8:] = 1
    assert assert_agrees([true], [pred], [{1: 0.5, 2: 0.5}]).ap == pytest.approx(0.5)
    swapped = np.where(pred > 0, 3 - pred, 0)
    assert assert_agrees([true], [swapped], [{1: 0.5, 2: 0.5}]).ap == 1.0
    # Across images, ties keep image order: the false positive in the first image comes first.
    empty = np.zeros_like(true)
    fp_only = np.where(pred == 1, 1, 0)
    assert assert_agrees([empty, true], [fp_only, true], [{1: 0.5}, {1: 0.5}]).ap == pytest.approx(0.5)
    assert assert_agrees([true, empty], [true, fp_only], [{1: 0.5}, {1: 0.5}]).ap == 1.0


@pytest.mark.parametrize("ids, ap", [((1, 2), 51 / 101), ((2, 1), 1.0)])
def test_iou_ties_go_to_the_later_true_object(ids, ap):
    # In one row: true objects a (columns 0-3) and b (4-7); detection A (2-5, score 0.9) has IoU 2/6
    # with both, detection B (6-9, score 0.8) IoU 2/6 with b only. At threshold 0.3 COCOeval gives A
    # the later of its equally good candidates (in annotation order, here by id): if that is b, B is a
    # false positive (recall 1/2 at precision 1, then 1/2: AP 51/101); if it is a, both match (AP 1).
    true = np.zeros((1, 12), np.int32)
    true[0, :4], true[0, 4:8] = ids
    pred = np.zeros((1, 12), np.int32)
    pred[0, 2:6], pred[0, 6:10] = 1, 2
    r = assert_agrees([true], [pred], [{1: 0.9, 2: 0.8}], thresholds=(0.3,))
    assert r.ap == pytest.approx(ap)


def test_recall_points_are_pycocotools_linspace():
    # Ten true objects, seven found exactly, three missed: recall reaches exactly 7/10. pycocotools'
    # recall point 0.70 is np.linspace's 0.7000000000000001, just above 7/10, so it reads 0: AP = 70/101,
    # not the 71/101 of decimal recall points. medseg keeps pycocotools' points to report its numbers.
    true = np.zeros((10, 40), np.int32)
    for k in range(10):
        true[:, 4 * k : 4 * k + 3] = k + 1
    pred = np.where(true <= 7, true, 0)
    r = assert_agrees([true], [pred], [{i: 0.5 for i in range(1, 8)}])
    assert r.ap == pytest.approx(70 / 101)


def test_empty_cases():
    empty, obj = np.zeros((8, 8), np.int32), square((8, 8), np.s_[2:6, 2:6])
    # No true object and no detection anywhere: undefined, NaN (pycocotools: -1).
    r = mask_average_precision([empty, empty], [empty, empty], [{}, {}])
    assert all(math.isnan(v) for v in (r.ap, r.ap50, r.ap75, r.ar)) and r.classes == ()
    # Detections but no true object: every detection is a false positive, AP 0; nothing to recall, AR NaN.
    # pycocotools gives -1 for both (and would leave such a class out of a mean over classes).
    r = mask_average_precision([empty], [obj], [{1: 0.9}])
    assert (r.ap, r.ap50, r.ap75) == (0.0, 0.0, 0.0) and math.isnan(r.ar)
    assert coco_eval([empty], [obj], [{1: 0.9}]) == (-1, -1, -1, -1)
    # True objects but no detection: AP 0 and AR 0, as in pycocotools.
    r = mask_average_precision([obj], [empty], [{}])
    assert (r.ap, r.ap50, r.ap75, r.ar) == (0.0, 0.0, 0.0, 0.0)
    # Images with neither change nothing.
    scores = [{1: 0.4}, {}]
    with_empty = mask_average_precision([obj, empty], [obj, empty], scores)
    assert with_empty == mask_average_precision([obj], [obj], scores[:1])
    assert with_empty.ap == 1.0


def test_class_with_only_false_positives_counts_zero():
    # Class 2 is predicted but absent from the truth: medseg counts its AP as 0 in the mean over
    # classes; pycocotools writes -1 for it and averages class 1 alone.
    true, pred = square((8, 8), np.s_[:4, :4]), square((8, 8), np.s_[:4, :4])
    pred[6:, 6:] = 2
    args = ([true], [pred], [{1: 0.9, 2: 0.8}], [{1: 1}], [{1: 1, 2: 2}])
    r = mask_average_precision(*args)
    assert r.classes == (1, 2) and r.ap_per_class == (1.0, 0.0) and r.ap == 0.5 and r.ar == 1.0
    assert coco_eval(*args) == pytest.approx((1.0, 1.0, 1.0, 1.0))


def test_detection_scores_bundle_mask_ap_and_matching():
    true, pred, scores = dataset((32, 32), 2, 5)
    s = detection_scores(true, pred, scores)
    ap, m = mask_average_precision(true, pred, scores), match_dataset(true, pred, 0.5)
    assert (s["mask_ap"], s["mask_ap50"], s["mask_ap75"], s["mask_ar"]) == (ap.ap, ap.ap50, ap.ap75, ap.ar)
    assert (s["precision"], s["recall"], s["f1"], s["panoptic_quality"]) == (
        m.precision, m.recall, m.f1, m.panoptic_quality,
    )  # fmt: skip
    assert (s["n_true"], s["n_pred"], s["tp"], s["fp"], s["fn"]) == (m.n_true, m.n_pred, m.tp, m.fp, m.fn)


def test_thresholds_without_0_5_and_0_75():
    true = square((10, 10), np.s_[:, :5])
    r = mask_average_precision([true], [true], [{1: 1.0}], iou_thresholds=(0.3, 0.6))
    assert r.ap == 1.0 and math.isnan(r.ap50) and math.isnan(r.ap75) and r.ap_per_threshold == (1.0, 1.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scores": [{}]}, "no value for object id"),
        ({"scores": [np.array([0.1, 0.2])]}, "2 values for 1 objects"),
        ({"scores": [{1: math.nan}]}, "finite"),
        ({"scores": []}, "as many"),
        ({"pred": [np.zeros((4, 4), int)]}, "shapes differ"),
        ({"max_detections": 0}, "at least 1"),
        ({"max_detections": 2.5}, "whole number"),
        ({"iou_thresholds": ()}, "empty"),
        ({"iou_thresholds": (0.0,)}, "outside"),
        ({"pred_classes": [{1: 1.5}]}, "whole numbers"),
        ({"true_classes": [{}, {}]}, "2 entries for 1 images"),
        ({"true_classes": [-np.ones((8, 8), int)]}, "negative"),
    ],
)
def test_input_errors(change, message):
    obj = square((8, 8), np.s_[2:6, 2:6])
    args = {"true": [obj], "pred": [obj], "scores": [{1: 0.5}]} | change
    with pytest.raises(InputError, match=message):
        mask_average_precision(**args)
