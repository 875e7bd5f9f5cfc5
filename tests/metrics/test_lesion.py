"""Lesion-wise scores (BraTS 2023 rules) on hand-built components and against a direct re-implementation
of the BraTS lesion-wise algorithm (its loop, one lesion at a time, re-dilating each)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medseg.metrics.lesion import BRATS_HD95_PENALTY, lesion_scores


def _edges(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def ref_hd95(p: np.ndarray, r: np.ndarray, spacing) -> float:
    """Symmetric 95th-percentile surface distance from scipy's exact EDT."""
    d = [ndimage.distance_transform_edt(~_edges(b), sampling=spacing)[_edges(a)] for a, b in ((p, r), (r, p))]
    return max(float(np.quantile(x, 0.95)) for x in d)


def brats_reference(pred, ref, spacing, dilation, min_volume, penalty=BRATS_HD95_PENALTY) -> dict:
    """The BraTS 2023 ``get_lesion_wise_score`` / ``get_lesion_wise_results`` steps, written out."""
    full = ndimage.generate_binary_structure(ref.ndim, ref.ndim)
    grow = ndimage.generate_binary_structure(ref.ndim, 2)
    gt_cc, _ = ndimage.label(ref, full)
    pred_cc, _ = ndimage.label(pred, full)
    combined = gt_cc
    if dilation:
        dil_cc, n = ndimage.label(ndimage.binary_dilation(ref, grow, iterations=dilation), full)
        combined = np.zeros_like(gt_cc)
        for comp in range(1, n + 1):
            combined[((dil_cc == comp) * gt_cc) > 0] = comp
    matched, rows = [], []
    for g in range(1, combined.max() + 1):
        gt_tmp = combined == g
        if not gt_tmp.any():
            continue
        zone = ndimage.binary_dilation(gt_tmp, grow, iterations=dilation) if dilation else gt_tmp
        hits = [int(i) for i in np.unique(pred_cc[zone]) if i]
        matched += hits
        pred_tmp = np.isin(pred_cc, hits)
        dice = 2 * np.count_nonzero(pred_tmp & gt_tmp) / (pred_tmp.sum() + gt_tmp.sum())
        hd = ref_hd95(pred_tmp, gt_tmp, spacing) if hits else penalty
        rows.append((len(hits), gt_tmp.sum() * np.prod(spacing), dice, hd))
    fp = len(set(np.unique(pred_cc).tolist()) - {0} - set(matched))
    kept = [r for r in rows if r[1] > min_volume]
    n = len(kept) + fp
    return {
        "tp": sum(1 for r in kept if r[0]),
        "fn": sum(1 for r in kept if not r[0]),
        "fp": fp,
        "dice": sum(r[2] for r in kept) / n if n else 1.0,
        "hd95": (sum(r[3] for r in kept) + fp * penalty) / n if n else 0.0,
    }


def _cube(mask: np.ndarray, *ranges: tuple[int, int]) -> None:
    mask[tuple(slice(a, b) for a, b in ranges)] = True


@pytest.fixture(scope="module")
def hand_built() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Reference lesions A (216 voxels), B (125, missed), C (27, below 50, hit), D (two 125-voxel cubes
    2 voxels apart: one lesion when dilated 3 times, half of it found). The prediction has A exactly,
    a blob 2 voxels from A, a blob on C, D's first cube, and a far false positive."""
    shape = (40, 40, 30)
    ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    parts = {name: np.zeros(shape, bool) for name in ("A", "near_A", "D1", "D2")}
    _cube(parts["A"], (5, 11), (5, 11), (5, 11))
    _cube(parts["near_A"], (5, 7), (13, 15), (5, 7))
    _cube(parts["D1"], (25, 30), (25, 30), (5, 10))
    _cube(parts["D2"], (25, 30), (32, 37), (5, 10))
    ref |= parts["A"] | parts["D1"] | parts["D2"]
    _cube(ref, (5, 10), (25, 30), (5, 10))  # B
    _cube(ref, (25, 28), (5, 8), (5, 8))  # C
    pred |= parts["A"] | parts["near_A"] | parts["D1"]
    _cube(pred, (25, 27), (5, 7), (5, 7))  # on C
    _cube(pred, (30, 33), (5, 8), (20, 23))  # far from everything
    return pred, ref, parts


def test_hand_built_lesions_by_the_brats_rules(hand_built):
    pred, ref, parts = hand_built
    s = lesion_scores(pred, ref, spacing=(1.0, 1.0, 1.0), dilation=3, min_volume=50)
    assert (s.tp, s.fn, s.fp) == (2, 1, 1)  # A and D found, B missed; C too small; one far blob
    assert sorted(x.voxels for x in s.lesions if x.counted) == [125, 216, 250]
    dice_a = 2 * 216 / (216 + 216 + 8)  # A against A + the near blob, which its zone reaches
    dice_d = 2 * 125 / (125 + 250)
    assert s.dice == pytest.approx((dice_a + 0 + dice_d) / 4)
    h_a = ref_hd95(parts["A"] | parts["near_A"], parts["A"], (1, 1, 1))
    h_d = ref_hd95(parts["D1"], parts["D1"] | parts["D2"], (1, 1, 1))
    assert s.hd95 == pytest.approx((h_a + 2 * BRATS_HD95_PENALTY + h_d) / 4, abs=1e-4)
    assert (s.precision, s.recall, s.f1) == pytest.approx((2 / 3, 2 / 3, 4 / 6))
    assert len(s.false_positives) == 1 and s.false_positives[0][1] == 27


def test_without_dilation_every_component_is_its_own_lesion(hand_built):
    pred, ref, _ = hand_built
    s = lesion_scores(pred, ref, spacing=(1.0, 1.0, 1.0), dilation=0, min_volume=50)
    assert (s.tp, s.fn, s.fp) == (2, 2, 2)  # A, D1 found; B, D2 missed; the near blob is now an FP
    assert s.dice == pytest.approx((1 + 0 + 1 + 0) / 6)
    assert len(s.lesions) == 5 and sum(x.counted for x in s.lesions) == 4


def test_volumes_are_physical(hand_built):
    """The same voxels at 0.5 mm: every lesion is 1/8 of the volume, so all fall below 50 mm^3."""
    pred, ref, _ = hand_built
    s = lesion_scores(pred, ref, spacing=(0.5, 0.5, 0.5), dilation=3, min_volume=50)
    assert not any(x.counted for x in s.lesions) and (s.tp, s.fn, s.fp) == (0, 0, 1)
    assert s.dice == 0.0 and s.hd95 == BRATS_HD95_PENALTY


def test_2d_diagonal_neighbours_are_one_lesion():
    ref = np.zeros((12, 12), bool)
    ref[2:5, 2:5] = ref[5:7, 5:7] = True  # touching at one corner only
    pred = np.zeros_like(ref)
    pred[2:5, 2:5] = True
    s = lesion_scores(pred, ref, spacing=(1.0, 1.0), dilation=0, min_volume=0)
    assert len(s.lesions) == 1 and (s.tp, s.fn, s.fp) == (1, 0, 0)
    assert s.dice == pytest.approx(2 * 9 / (9 + 13))


def test_empty_cases_follow_brats():
    empty = np.zeros((8, 8, 8), bool)
    both = lesion_scores(empty, empty, (1.0, 1.0, 1.0))
    assert (both.dice, both.hd95, both.tp, both.fp, both.fn) == (1.0, 0.0, 0, 0, 0)
    assert math.isnan(both.f1)
    blob = empty.copy()
    blob[2:4, 2:4, 2:4] = True
    fp_only = lesion_scores(blob, empty, (1.0, 1.0, 1.0))
    assert (fp_only.dice, fp_only.hd95, fp_only.fp, fp_only.f1) == (0.0, BRATS_HD95_PENALTY, 1, 0.0)


@pytest.mark.parametrize(("dilation", "min_volume"), [(3, 50.0), (1, 2.0), (0, 0.0)])
def test_random_blobs_match_the_brats_algorithm(dilation, min_volume):
    rng = np.random.default_rng(0)
    shape, spacing = (56, 56, 20), (1.0, 0.9, 2.0)
    idx = np.indices(shape, dtype=float)
    centres, radii = rng.uniform(4, 52, (14, 3)) * [1, 1, 20 / 56], rng.uniform(1.5, 4.5, 14)
    balls = [sum((idx[d] - c[d]) ** 2 for d in range(3)) <= r**2 for c, r in zip(centres, radii, strict=True)]
    ref = np.any(balls[:10], axis=0)
    # the first 7 found (moved one voxel), the next 3 missed, 4 more predicted
    pred = np.roll(np.any(balls[:7], axis=0), 1, axis=0) | np.any(balls[10:], axis=0)
    expected = brats_reference(pred, ref, spacing, dilation, min_volume)
    assert expected["tp"] >= 2 and expected["fn"] >= 1 and expected["fp"] >= 1, expected  # worth testing
    s = lesion_scores(pred, ref, spacing, dilation=dilation, min_volume=min_volume)
    assert (s.tp, s.fn, s.fp) == (expected["tp"], expected["fn"], expected["fp"])
    assert s.dice == pytest.approx(expected["dice"], abs=1e-6)
    assert s.hd95 == pytest.approx(expected["hd95"], abs=1e-3)
