"""Mask R-CNN in MONAI's engines: targets from channel-first labels, ``MaskRCNNTrainer`` in a real
ignite run, ``MaskRCNNInferer`` against pasting the network's own detections by hand, and the
scores that reach the evaluator's handler and the instance table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine

from medseg.instance.labels import instance_scores_of
from medseg.instance.mask_rcnn import CHANNELS, MaskRCNNInferer, MaskRCNNTrainer, model_targets
from medseg.instance.table import instance_table
from medseg.instance.targets import detections_to_instances
from medseg.io.geometry import Geometry
from medseg.metrics import mask_average_precision
from medseg.networks.mask_rcnn import MaskRCNN
from medseg.workflows.instances import MAX_DETECTIONS, InstanceMetricsHandler


def blobs(size: int = 64, seed: int = 0) -> np.ndarray:
    """Discs of radius 5-8 at random places, ids 10, 20, ... (not consecutive)."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[:size, :size]
    instances = np.zeros((size, size), np.int64)
    for k in range(5):
        centre, radius = rng.uniform(10, size - 10, 2), rng.uniform(5, 8)
        inside = ((grid - centre[:, None, None]) ** 2).sum(0) <= radius**2
        instances[inside & (instances == 0)] = 10 * (k + 1)
    return instances


def test_model_targets_take_classes_and_drop_instances_on_class_zero():
    label = np.zeros((2, 12, 12), np.float32)
    label[0, 1:4, 1:4], label[1, 1:4, 1:4] = 7, 2  # class 2
    label[0, 6:9, 6:11], label[1, 6:9, 6:11] = 300, 0  # an instance on class 0 only: left out
    label[0, 10, 0] = 5
    label[1, 10, 0] = 1  # a single pixel of class 1
    t = model_targets(label)
    assert t["ids"].tolist() == [5, 7] and t["labels"].tolist() == [1, 2]
    assert t["boxes"].tolist() == [[10, 0, 11, 1], [1, 1, 4, 4]]
    assert torch.equal(t["instances"], torch.as_tensor(label[0], dtype=torch.int64))
    empty = model_targets(np.zeros((1, 5, 6, 7)))
    assert empty["boxes"].shape == (0, 6) and empty["labels"].numel() == 0


def test_trainer_runs_in_an_ignite_engine_and_lowers_the_loss():
    torch.manual_seed(0)
    truth = blobs()
    image = (truth > 0).astype(np.float32)[None] + 0.1 * np.random.default_rng(1).standard_normal((1, 64, 64))
    data = [
        {"image": MetaTensor(image.astype(np.float32)), "label": MetaTensor(truth[None].astype(np.float32))}
    ]
    network = MaskRCNN(2)
    trainer = MaskRCNNTrainer(
        device=torch.device("cpu"),
        max_epochs=40,
        train_data_loader=DataLoader(Dataset(data), batch_size=1),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 1e-3),
    )
    losses, events = [], []
    loss_of = from_engine(["loss"], first=True)  # as the bundle's StatsHandler reads it
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: losses.append(float(loss_of(e.state.output)))
    )
    trainer.add_event_handler(
        IterationEvents.LOSS_COMPLETED, lambda e: events.append(set(e.state.output["pred"]))
    )
    trainer.run()
    assert len(losses) == 40 and events[0] == {
        "loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg", "loss_mask",
    }  # fmt: skip
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("shape", [(37, 50), (16, 16), (20, 18, 9)])
def test_inferer_pastes_the_detections_of_the_padded_image(shape):
    torch.manual_seed(0)
    network = MaskRCNN(len(shape), score_threshold=0.0).eval()
    image = torch.rand(1, 1, *shape)
    affine = torch.diag(torch.tensor([0.5, 0.7, 2.0, 1.0], dtype=torch.float64))
    inputs = MetaTensor(image, affine=affine, meta={"filename_or_obj": "x.tif"})
    out = MaskRCNNInferer(score_threshold=0.0)(inputs, network)
    assert out.shape == (1, len(CHANNELS), *shape)
    assert (
        isinstance(out, MetaTensor)
        and torch.equal(out.affine, affine)
        and out.meta["filename_or_obj"] == "x.tif"
    )

    pads = [p for n in reversed(shape) for p in (0, -n % 16)]
    with torch.no_grad():
        (det,) = network(F.pad(image, pads))
    assert len(det["boxes"]) > 0  # a random network still proposes something at threshold 0
    instances, classes, kept = detections_to_instances(
        det["boxes"], det["scores"], det["masks"], shape, det["labels"], 0.0, 0.5
    )
    np.testing.assert_array_equal(out[0, 0].numpy(), instances)
    np.testing.assert_array_equal(out[0, 1].numpy(), classes)
    expected = {i + 1: float(det["scores"][k]) for i, k in enumerate(kept)}
    assert instance_scores_of(out[0, 0].numpy(), out[0, 2].numpy()) == pytest.approx(expected)


def test_scores_reach_the_handler_and_the_table():
    true = blobs(seed=2)
    pred = np.where(true == 20, 0, true)  # one nucleus missed
    pred[pred == 30] = 0
    pred[true == 30] = 7
    pred[:3, :3] = 99  # a false positive, scored highest
    assert not true[:3, :3].any()
    scores = {10: 0.9, 40: 0.8, 50: 0.3, 7: 0.95, 99: 0.99}
    score_map = np.zeros(pred.shape, np.float32)
    for i, s in scores.items():
        score_map[pred == i] = s
    handler = InstanceMetricsHandler(pred_key="instances", score_key="scores")

    class Engine:  # the handler only reads engine.state
        class state:
            output = [{"label": true[None], "instances": pred[None], "scores": score_map[None]}]
            metrics: dict = {}

    handler.reset()
    handler.collect(Engine)
    found = handler.compute(Engine)
    reference = mask_average_precision([true], [pred], [scores], max_detections=MAX_DETECTIONS)
    assert (found["mask_ap"], found["mask_ap50"]) == pytest.approx((reference.ap, reference.ap50))
    assert found["mask_ap"] != pytest.approx(
        mask_average_precision([true], [pred], [dict.fromkeys(scores, 1.0)]).ap
    )  # the ranking by score counts

    rows = instance_table(pred, Geometry(np.eye(4)), scores={k: float(v) for k, v in scores.items()})
    assert {r["id"]: r["score"] for r in rows} == pytest.approx(scores)
    assert "score" not in instance_table(pred, Geometry(np.eye(4)))[0]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_zoomed_inference_is_detection_at_the_coarse_scale_pasted_at_full_resolution(spatial_dims):
    """An image made by repeating each voxel of ``coarse`` twice along the zoomed axes, run at zoom
    0.5 there: the network sees ``coarse`` itself (area averaging undoes the repetition), so the
    result is the coarse detections with their boxes doubled, pasted on the fine grid."""
    torch.manual_seed(0)
    coarse_shape = (40, 36) if spatial_dims == 2 else (20, 18, 16)
    zoom = (0.5, 0.5) if spatial_dims == 2 else (0.5, 0.5, 1.0)
    network = MaskRCNN(spatial_dims, score_threshold=0.0).eval()
    coarse = torch.rand(1, 1, *coarse_shape)
    fine = coarse
    for axis, z in enumerate(zoom):
        fine = fine.repeat_interleave(round(1 / z), dim=2 + axis)
    out = MaskRCNNInferer(score_threshold=0.0, mask_threshold=0.45, zoom=zoom)(
        fine, network
    )  # random masks: ~0.49

    pads = [p for n in reversed(coarse_shape) for p in (0, -n % 16)]
    with torch.no_grad():
        (det,) = network(F.pad(coarse, pads))
    factors = torch.tensor([1 / z for z in zoom] * 2)
    instances, _, kept = detections_to_instances(
        det["boxes"] * factors, det["scores"], det["masks"], fine.shape[2:], det["labels"], 0.0, 0.45
    )
    assert len(kept) > 0
    np.testing.assert_array_equal(out[0, 0].numpy(), instances)
