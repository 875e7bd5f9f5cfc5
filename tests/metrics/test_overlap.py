from __future__ import annotations

import math

import numpy as np

from medseg.metrics import dice_per_label


def reference_dice(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    return 2.0 * inter / (a.sum() + b.sum())


def test_dice_matches_definition_per_label():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (20, 20, 10))
    ref = np.where(rng.random((20, 20, 10)) < 0.7, pred, rng.integers(0, 4, (20, 20, 10)))
    scores = dice_per_label(pred, ref, [1, 2, 3])
    for label in (1, 2, 3):
        assert math.isclose(scores[label], reference_dice(pred == label, ref == label), rel_tol=1e-6)


def test_label_absent_from_reference_is_nan():
    pred = np.zeros((4, 4, 4), int)
    pred[0] = 2
    scores = dice_per_label(pred, np.zeros_like(pred), [1, 2])
    assert math.isnan(scores[1]) and math.isnan(scores[2])
