"""Per-label Dice, HD95 and NSD against a scipy reference, MONAI's metric classes and known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric
from monai.networks.utils import one_hot
from scipy import ndimage

from medseg.metrics.surface import hausdorff_per_label, surface_dice_per_label, surface_scores

ANISO = (0.8, 0.8, 2.0)
# MONAI's metric classes, our reference here, warn on every empty mask.
pytestmark = pytest.mark.filterwarnings("ignore:the (ground truth|prediction) of class")


def _edges(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: in the mask, with a face neighbour outside it (or outside the image)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Distance from every edge voxel of ``a`` to the nearest edge voxel of ``b`` (scipy EDT)."""
    return ndimage.distance_transform_edt(~_edges(b), sampling=spacing)[_edges(a)]


def ref_hd(p: np.ndarray, r: np.ndarray, spacing, q: float | None = 95) -> float:
    d = [_directed(p, r, spacing), _directed(r, p, spacing)]
    return max(float(x.max() if q is None else np.quantile(x, q / 100)) for x in d)


def ref_nsd(p: np.ndarray, r: np.ndarray, spacing, tol: float) -> float:
    d = np.concatenate([_directed(p, r, spacing), _directed(r, p, spacing)])
    return float(np.mean(d <= tol))


def ref_dice(p: np.ndarray, r: np.ndarray) -> float:
    return 2 * np.count_nonzero(p & r) / (np.count_nonzero(p) + np.count_nonzero(r))


def _ball(shape, centre, radius, spacing) -> np.ndarray:
    idx = np.indices(shape, dtype=float)
    return sum(((idx[d] - centre[d]) * spacing[d]) ** 2 for d in range(len(shape))) <= radius**2


@pytest.mark.parametrize("shift", [1, 3])
def test_spheres_offset_along_the_coarse_axis(shift):
    """Two spheres of radius 12 mm, one moved ``shift`` slices (2 mm each) along z: every edge voxel has
    its twin exactly ``2 * shift`` mm away, so the maximum HD is that and NSD at it is 1."""
    shape = (40, 40, 24)
    ref = _ball(shape, (20, 20, 11), 12.0, ANISO)
    pred = np.roll(ref, shift, axis=2)  # nothing wraps: the ball is far from the border
    mm = 2.0 * shift
    assert hausdorff_per_label(pred.astype(np.uint8), ref.astype(np.uint8), [1], ANISO, None)[
        1
    ] == pytest.approx(mm)
    s = surface_scores(pred.astype(np.uint8), ref.astype(np.uint8), [1], ANISO, tolerance=mm)[1]
    assert s["nsd"] == pytest.approx(1.0)
    assert s["hd95"] == pytest.approx(ref_hd(pred, ref, ANISO), abs=1e-4)
    assert s["hd95"] <= mm + 1e-6
    assert s["dice"] == pytest.approx(ref_dice(pred, ref), abs=1e-6)
    tight = surface_dice_per_label(pred.astype(np.uint8), ref.astype(np.uint8), [1], ANISO, 1.0)[1]
    assert tight == pytest.approx(ref_nsd(pred, ref, ANISO, 1.0), abs=1e-6)


def _phantom(shape, spacing, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A label map with labels 1, 2 (touching balls) and 4 (ref only), the prediction moved and
    grown, with label 3 in the prediction only; label 5 is in neither."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    centre = [n // 2 for n in shape]
    ref[_ball(shape, centre, 7.0, spacing)] = 1
    ref[_ball(shape, [c + 4 for c in centre], 5.0, spacing)] = 2
    ref[(slice(1, 4),) * len(shape)] = 4
    pred = np.roll(ref, 1, axis=0)
    pred[pred == 4] = 0
    pred[ndimage.binary_dilation(pred == 2) & (pred == 0)] = 2
    pred[(slice(-4, -1),) * len(shape)] = 3
    pred[rng.random(shape) < 0.01] = 1  # scattered false positives stretch HD but not HD95
    return pred, ref


@pytest.mark.parametrize(("shape", "spacing"), [((40, 36), (0.5, 1.25)), ((30, 28, 16), ANISO)])
def test_per_label_scores_match_monai_metric_classes(shape, spacing):
    pred, ref = _phantom(shape, spacing, 0)
    labels = [1, 2, 3, 4, 5]
    ours = surface_scores(pred, ref, labels, spacing, tolerance={1: 1.0, 2: 2.5, 3: 2.0, 4: 2.0, 5: 2.0})
    p, r = (one_hot(torch.as_tensor(a.astype(np.int64))[None, None], 6) for a in (pred, ref))
    dice = DiceMetric(include_background=True, ignore_empty=True)(p, r)[0]
    hd = HausdorffDistanceMetric(include_background=True, percentile=95)(p, r, spacing=list(spacing))[0]
    nsd = SurfaceDiceMetric([2.0, 1.0, 2.5, 2.0, 2.0, 2.0], include_background=True)(
        p, r, spacing=list(spacing)
    )[0]
    for label in (1, 2):
        assert ours[label]["dice"] == pytest.approx(float(dice[label]), abs=1e-6)
        assert ours[label]["hd95"] == pytest.approx(float(hd[label]), abs=1e-4)
        assert ours[label]["nsd"] == pytest.approx(float(nsd[label]), abs=1e-6)
        assert ours[label]["hd95"] == pytest.approx(ref_hd(pred == label, ref == label, spacing), abs=1e-4)
    # label 3 (prediction only) and 4 (reference only): MONAI's HD95 is NaN (a quantile of infinite
    # distances), the distance is infinite; NSD 0 as MONAI; Dice NaN (empty reference) or 0.
    for label in (3, 4):
        assert math.isnan(float(hd[label])) and ours[label]["hd95"] == math.inf
        assert ours[label]["nsd"] == float(nsd[label]) == 0.0
    assert math.isnan(ours[3]["dice"]) and math.isnan(float(dice[3]))
    assert ours[4]["dice"] == float(dice[4]) == 0.0
    assert all(math.isnan(v) for v in ours[5].values())  # in neither map: undefined, as MONAI


def test_labels_touching_the_image_border_are_cropped_as_monai_does():
    """A label filling a corner (edges on the image border) scores the same cropped as whole."""
    ref = np.zeros((20, 22, 9), np.uint8)
    ref[:8, :10, :4] = 7
    pred = np.zeros_like(ref)
    pred[:10, 2:12, :5] = 7
    ours = surface_scores(pred, ref, [7], ANISO, tolerance=1.5)[7]
    p, r = (torch.as_tensor(a == 7)[None, None].float() for a in (pred, ref))
    assert ours["hd95"] == pytest.approx(
        float(HausdorffDistanceMetric(percentile=95)(p, r, spacing=ANISO)), abs=1e-4
    )
    nsd = SurfaceDiceMetric([1.5], include_background=True)(p, r, spacing=list(ANISO))
    assert ours["nsd"] == pytest.approx(float(nsd), abs=1e-6)
    assert ours["hd95"] == pytest.approx(ref_hd(pred == 7, ref == 7, ANISO), abs=1e-4)


def test_shapes_and_spacing_must_agree():
    with pytest.raises(ValueError, match="shapes differ"):
        surface_scores(np.zeros((3, 3), int), np.zeros((3, 4), int), [1], (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        surface_scores(np.zeros((3, 3), int), np.zeros((3, 3), int), [1], (1.0, 1.0, 1.0))
