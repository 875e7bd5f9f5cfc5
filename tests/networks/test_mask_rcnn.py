"""Mask R-CNN in 2D and 3D: the five losses, training steps on every kind of target (none, one
voxel, several classes), detections within the limit, and a model that learns: trained on a
synthetic image of blobs, its detections pasted back by ``detections_to_instances`` reach mask
AP50 1.0 against the blobs (scored by ``medseg.metrics``, itself checked against pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.instance.targets import detections_to_instances, instances_to_targets
from medseg.metrics import mask_average_precision
from medseg.networks.mask_rcnn import MaskRCNN

LOSSES = {"loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg", "loss_mask"}
SIZES = {2: (32, 48), 3: (16, 32, 16)}


def _target(instances: np.ndarray, classes: np.ndarray | None = None) -> dict:
    t = instances_to_targets(instances, classes)
    return {
        "boxes": torch.as_tensor(t["boxes"]),
        "labels": torch.as_tensor(t["labels"]),
        "instances": torch.as_tensor(instances.astype(np.int64)),
        "ids": torch.as_tensor(t["ids"]),
    }


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_training_step_on_empty_single_voxel_and_multiclass_targets(spatial_dims):
    torch.manual_seed(0)
    size = SIZES[spatial_dims]
    model = MaskRCNN(spatial_dims, in_channels=2, num_classes=3)
    images = torch.randn(3, 2, *size)
    empty = np.zeros(size, np.int64)
    single = empty.copy()
    single[(3,) * spatial_dims] = 9  # one voxel, id 9
    several = empty.copy()
    several[(slice(2, 8),) * spatial_dims] = 4
    several[(slice(10, 15),) * spatial_dims] = 300  # ids need not be consecutive
    classes = (several > 0) * np.where(several == 4, 3, 1)
    targets = [_target(empty), _target(single), _target(several, classes)]
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_no_objects_anywhere_trains_and_detects(spatial_dims):
    size = SIZES[spatial_dims]
    model = MaskRCNN(spatial_dims, detections_per_image=7)
    empty = np.zeros(size, np.int64)
    model.train()
    losses = model(torch.zeros(1, 1, *size), [_target(empty)])
    assert losses["loss_mask"] == 0 and losses["loss_box_reg"] == 0 and losses["loss_rpn_box"] == 0
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        (out,) = model(torch.randn(1, 1, *size))
    count = len(out["boxes"])
    assert count <= 7  # the detection limit
    assert out["boxes"].shape == (count, 2 * spatial_dims) and out["scores"].shape == (count,)
    assert out["masks"].shape == (count, *(28,) * 2) if spatial_dims == 2 else (count, *(14,) * 3)
    assert torch.all(out["scores"][:-1] >= out["scores"][1:])  # best first
    assert torch.all(out["boxes"][:, spatial_dims:] <= torch.tensor(size))  # clipped to the image
    instances, _, _ = detections_to_instances(
        out["boxes"], out["scores"], out["masks"], size, score_threshold=0.0
    )
    assert instances.shape == size


def _blobs(spatial_dims: int) -> np.ndarray:
    """Touching and separate disks (balls), ids 10, 20, ..."""
    if spatial_dims == 2:
        size, centres, radii = (64, 64), [(16, 18), (28, 18), (40, 46), (50, 20)], [7, 6, 8, 5]
    else:
        size, centres, radii = (24, 24, 24), [(7, 7, 8), (16, 16, 14)], [4, 5]
    grid = np.indices(size)
    instances = np.zeros(size, np.int64)
    for k, (centre, radius) in enumerate(zip(centres, radii, strict=True)):
        inside = sum((grid[a] - centre[a]) ** 2 for a in range(spatial_dims)) <= radius**2
        instances[inside & (instances == 0)] = 10 * (k + 1)
    return instances


@pytest.mark.slow
@pytest.mark.parametrize(("spatial_dims", "steps"), [(2, 60), (3, 60)])
def test_learns_a_synthetic_image(spatial_dims, steps):
    torch.manual_seed(0)
    truth = _blobs(spatial_dims)
    image = torch.as_tensor((truth > 0).astype(np.float32))[None, None]
    image = image + 0.1 * torch.randn_like(image)
    model = MaskRCNN(spatial_dims)
    optimiser = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for _ in range(steps):
        losses = model(image, [_target(truth)])
        optimiser.zero_grad()
        sum(losses.values()).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        (out,) = model(image)
    pred, _, kept = detections_to_instances(out["boxes"], out["scores"], out["masks"], truth.shape)
    scores = {i + 1: float(out["scores"][k]) for i, k in enumerate(kept)}
    ap = mask_average_precision([truth], [pred], [scores])
    assert ap.ap50 == 1.0, (ap, scores)
