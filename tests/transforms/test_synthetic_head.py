"""Brain mask from tissue maps and the synthetic head around it: phantoms with known geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from medseg.transforms import (
    BrainFromTissued,
    HeadDistancesd,
    RandSyntheticHeadd,
    brain_from_tissue,
    head_distances,
    render_head,
)
from medseg.transforms.synthetic_head import SHELLS

SPACING = (2.0, 2.0, 2.0)


def ball(shape, centre, radius_vox) -> np.ndarray:
    return np.linalg.norm(np.indices(shape) - np.reshape(centre, (3, 1, 1, 1)), axis=0) <= radius_vox


def test_brain_from_tissue_sums_maps_fills_holes_keeps_largest():
    gm = np.zeros((20, 20, 20), np.float32)
    wm = np.zeros_like(gm)
    gm[3:15, 3:15, 3:15] = 0.3
    wm[3:15, 3:15, 3:15] = 0.3  # neither map alone is above 0.5; their sum is
    gm[8:10, 8:10, 8:10] = wm[8:10, 8:10, 8:10] = 0  # a ventricle: filled
    gm[17:19, 17:19, 17:19] = 1  # a separate speck: dropped
    mask = brain_from_tissue(gm, wm)
    expected = np.zeros(gm.shape, bool)
    expected[3:15, 3:15, 3:15] = True
    np.testing.assert_array_equal(mask, expected)
    speck = np.zeros(gm.shape, bool)
    speck[17:19, 17:19, 17:19] = True
    np.testing.assert_array_equal(brain_from_tissue(gm), speck)  # gm alone: only the speck is above 0.5
    out = BrainFromTissued(["gm", "wm"], scale=1.0)({"gm": MetaTensor(gm[None]), "wm": MetaTensor(wm[None])})
    np.testing.assert_array_equal(out["label"][0].numpy(), expected)


def test_head_distances_match_the_geometry_of_a_ball():
    brain = ball((40, 40, 60), (20, 20, 40), 8)
    outside, envelope = head_distances(brain, SPACING, neck_mm=40.0)
    # a point 6 voxels above the ball's top: 12 mm from the brain, as scipy's EDT says
    reference = ndimage.distance_transform_edt(~brain, sampling=SPACING)
    assert outside[20, 20, 54] == pytest.approx(reference[20, 20, 54]) == pytest.approx(12.0)
    assert (outside[brain] == 0).all()
    # the neck: 40 mm (20 voxels) below the lower half of the ball, inside the envelope
    assert envelope[20, 20, 12] == 0 and outside[20, 20, 12] > 0 and envelope[20, 20, 10] > 0


def test_render_head_puts_each_class_where_its_distance_says():
    brain = ball((40, 40, 60), (20, 20, 40), 8)
    distances = head_distances(brain, SPACING, neck_mm=40.0)
    shells = [3.0, 2.0, 4.0, 2.0, 6.0]  # edges at 3, 5, 9, 11, 17 mm
    values = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 5.0]  # shells, 4 tissues, air
    brain_image = np.full(brain.shape, 1.0, np.float32)
    tissue = np.full(brain.shape, 2)
    image = render_head(
        brain_image, brain, distances, shells, values, np.zeros(brain.shape, np.float32), tissue
    )
    assert (image[brain] == 1.0).all()
    top = 20, 20, 48  # the ball's top voxel; above it distances grow by 2 mm per voxel
    expect = {1: 10.0, 2: 20.0, 3: 30.0, 4: 30.0, 5: 40.0, 6: 50.0, 8: 50.0, 9: 5.0, 11: 5.0}  # 2 mm steps
    for step, value in expect.items():
        assert image[top[0], top[1], top[2] + step] == value, step
    assert image[20, 20, 14] == 80.0  # the neck block below the brain holds the tissue class 2
    assert image[0, 0, 0] == 5.0  # air


def test_rand_synthetic_head_is_seeded_keeps_the_label_and_the_brain_order():
    brain = ball((32, 32, 40), (16, 16, 24), 9)
    texture = np.random.default_rng(0).uniform(0.2, 1.0, brain.shape).astype(np.float32) * brain
    label = MetaTensor(
        torch.as_tensor(brain[None].astype(np.uint8)), affine=torch.diag(torch.tensor([*SPACING, 1.0]))
    )
    data = HeadDistancesd("label")({"image": MetaTensor(torch.as_tensor(texture[None])), "label": label})
    assert data["head_distance"].shape == (2, *brain.shape)

    def run(seed):
        t = RandSyntheticHeadd("image")
        t.set_random_state(seed)
        return t(data)

    a, b, c = run(3), run(3), run(4)
    torch.testing.assert_close(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])
    assert a["label"] is data["label"]
    inside = a["image"][0].numpy()[brain]
    order = np.argsort(texture[brain], kind="stable")
    assert (np.diff(inside[order]) >= -1e-6).all()  # gamma and scale keep the brain's contrast order
    outside = a["image"][0].numpy()[~brain]
    assert len(np.unique(np.round(outside, 5))) >= len(SHELLS)  # shells, tissue and air differ
