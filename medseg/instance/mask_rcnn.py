"""Mask R-CNN in MONAI's engines: targets from instance maps, the training step, and an inferer
that turns detections into an instance map.

MONAI's ``SupervisedTrainer`` feeds ``network(image)`` to a loss; Mask R-CNN takes its targets as an
input and returns its losses, so ``MaskRCNNTrainer`` replaces only the iteration (as MONAI's own
detection bundles do in their ``scripts/trainer.py``) and keeps everything else: handlers, amp,
events. Detections are a list of dicts per batch, which ``decollate_batch`` cannot split;
``MaskRCNNInferer`` pastes them (``detections_to_instances``) into a dense ``(B, 3, *S)`` output:
instance ids, classes and each instance's score, so any MONAI evaluator, ``SaveImaged`` and
``medseg segment`` handle it like a segmentation (``SplitDimd`` names the three channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.inferers import Inferer
from monai.utils import convert_to_numpy
from torch import Tensor

from medseg.instance.targets import detections_to_instances, instances_to_targets

CHANNELS = ("instances", "classes", "scores")
"""The inferer's output channels, in order (``SplitDimd(output_postfixes=CHANNELS)``)."""


def model_targets(label, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """A ``MaskRCNN`` training target of one channel-first label: ``(1, *S)`` instance ids, or
    ``(2, *S)`` instance ids and a class map (an instance takes its most frequent class; one that
    lies only on class 0 is left out).

    Example:
        >>> label = np.zeros((1, 6, 6), np.int32); label[0, 1:3, 2:5] = 9
        >>> t = model_targets(label); t["boxes"].tolist(), t["labels"].tolist(), t["ids"].tolist()
        ([[1.0, 2.0, 3.0, 5.0]], [1], [9])
    """
    label = convert_to_numpy(label)
    instances = np.rint(label[0]).astype(np.int64)
    found = instances_to_targets(instances, None if len(label) == 1 else np.rint(label[1]).astype(np.int64))
    kept = found["labels"] > 0
    return {
        "boxes": torch.as_tensor(found["boxes"][kept], device=device),
        "labels": torch.as_tensor(found["labels"][kept], device=device),
        "ids": torch.as_tensor(found["ids"][kept], device=device),
        "instances": torch.as_tensor(instances, device=device),
    }


class MaskRCNNTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for ``MaskRCNN``: each iteration builds the targets from the batch's
    instance labels (``label_key``, see ``model_targets``), sums the model's five losses, and steps
    the optimizer. ``engine.state.output`` holds ``loss`` (the sum) and ``pred`` (each loss).
    Takes ``SupervisedTrainer``'s arguments, less ``loss_function``."""

    def __init__(self, *args: Any, label_key: str = "label", **kwargs: Any) -> None:
        super().__init__(*args, loss_function=_unused_loss, **kwargs)
        self.label_key = label_key

    def _iteration(self, engine: Any, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        images = batchdata["image"].to(engine.state.device, non_blocking=engine.non_blocking)
        labels = batchdata[self.label_key]
        targets = [model_targets(label, engine.state.device) for label in labels]
        engine.state.output = {"image": images, "label": labels}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(images.device.type, enabled=engine.amp):
            losses = engine.network(images, targets)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        loss = sum(losses.values())
        engine.state.output.update(pred={k: v.detach() for k, v in losses.items()}, loss=loss)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.state.output["loss"] = loss.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


def _unused_loss(*_: Any) -> Tensor:
    raise RuntimeError("MaskRCNNTrainer computes its losses in the model")


class MaskRCNNInferer(Inferer):
    """Run a ``MaskRCNN`` on ``(B, C, *S)`` images and paste its detections into ``(B, 3, *S)``:
    instance ids (1.., by descending score), classes, and each instance's score on its voxels.

    ``zoom`` (one factor per spatial axis, or one for all) runs the network on the image resized
    by it (area averaging down, linear up), as a model trained on zoomed images needs; its boxes are
    scaled back and the masks pasted at the input's full resolution. The images are padded at the
    far end to a multiple of ``size_divisible`` (so boxes keep their coordinates); see
    ``detections_to_instances`` for ``score_threshold``, ``mask_threshold`` and ``max_instances``.
    The output is a ``MetaTensor`` with the input's metadata, so ``SaveImaged`` writes it on the
    input's grid.
    """

    def __init__(
        self,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        max_instances: int | None = None,
        size_divisible: int = 16,
        zoom: Sequence[float] | float | None = None,
    ) -> None:
        super().__init__()
        self.score_threshold, self.mask_threshold = score_threshold, mask_threshold
        self.max_instances, self.size_divisible = max_instances, size_divisible
        self.zoom = zoom

    def __call__(self, inputs: Tensor, network: Any, *args: Any, **kwargs: Any) -> Tensor:
        shape = tuple(inputs.shape[2:])
        images, factors = _zoomed(inputs, self.zoom)
        padded = _pad_to_multiple(images, self.size_divisible)
        with torch.no_grad():
            detections = network(padded, *args, **kwargs)
        if factors is not None:
            detections = [dict(d, boxes=d["boxes"] * factors.to(d["boxes"])) for d in detections]
        maps = [self._paste(d, shape) for d in detections]
        out = torch.as_tensor(np.stack(maps), device=inputs.device)
        if isinstance(inputs, MetaTensor):
            out = MetaTensor(out)
            out.copy_meta_from(inputs)  # affine, file name, batch flag: as MONAI's own inferers keep them
        return out

    def _paste(self, detection: dict, shape: Sequence[int]) -> np.ndarray:
        instances, classes, kept = detections_to_instances(
            detection["boxes"], detection["scores"], detection["masks"], shape, detection["labels"],
            self.score_threshold, self.mask_threshold, self.max_instances,
        )  # fmt: skip
        score_of = np.concatenate([[0.0], convert_to_numpy(detection["scores"])[kept]])
        return np.stack([instances, classes, score_of[instances]]).astype(np.float32)


def _zoomed(images: Tensor, zoom) -> tuple[Tensor, Tensor | None]:
    """``images`` resized by ``zoom`` (sizes rounded, at least 1) and the factors that take the
    resized image's box coordinates back to the input's (per box corner, ``(2D,)``)."""
    if zoom is None:
        return images, None
    shape = images.shape[2:]
    zoom = [float(zoom)] * len(shape) if np.isscalar(zoom) else [float(z) for z in zoom]
    size = [max(1, round(n * z)) for n, z in zip(shape, zoom, strict=True)]
    if list(size) == list(shape):
        return images, None
    down = all(s <= n for s, n in zip(size, shape, strict=True))
    mode = "area" if down else ("bilinear" if len(shape) == 2 else "trilinear")
    resized = F.interpolate(images, size=size, mode=mode, **({} if down else {"align_corners": False}))
    back = torch.tensor([n / s for n, s in zip(shape, size, strict=True)], dtype=torch.float32)
    return resized, torch.cat([back, back])


def _pad_to_multiple(images: Tensor, multiple: int) -> Tensor:
    pads = []
    for size in reversed(images.shape[2:]):
        pads += [0, -size % multiple]
    return F.pad(images, pads) if any(pads) else images
