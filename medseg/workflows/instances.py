"""Instance-segmentation scores for bundle evaluators: pixel IoU, detection and panoptic quality.

``instance_scores`` is the array function (lists of label images in, a flat dict of numbers out);
``InstanceMetricsHandler`` collects each iteration's true and predicted instances from a MONAI
evaluator and, when it completes, puts the scores into ``engine.state.metrics`` (so a
``StatsHandler`` attached after it prints them) and, given ``output_file``, into a JSON file.
Counts are pooled over all images, as StarDist's ``matching_dataset(..., by_image=False)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import convert_to_numpy

from medseg.instance.labels import instance_scores_of
from medseg.io.atomic import atomic_path
from medseg.metrics.detection import PerObject, mask_average_precision
from medseg.metrics.instance import average_precision, match_dataset

MAX_DETECTIONS = 1000
"""COCO's cap of 100 detections per image would cap the recall on a field of a hundred nuclei."""


def instance_scores(
    true: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    scores: Sequence[PerObject] | None = None,
) -> dict[str, float]:
    """Scores of predicted instance label images against true ones (0 = background).

    Returns:
        ``cell_iou`` (pixel IoU of foreground, pooled), ``precision``, ``recall``, ``f1``,
        ``ap`` (DSB/StarDist tp / (tp + fp + fn)) and ``panoptic_quality`` at ``iou_threshold``,
        ``mean_ap`` over IoU 0.5:0.05:0.95, the counts ``n_true``, ``n_pred``, ``tp``, ``fp``, ``fn``,
        and COCO's ``mask_ap``, ``mask_ap50``, ``mask_ap75`` (``medseg.metrics.detection``, up to
        ``MAX_DETECTIONS`` per image) ranked by ``scores`` (per image ``{id: score}``); without
        scores (a U-Net gives none) every object scores 1, so the curve has one operating point.

    Example:
        >>> t = np.zeros((8, 8), int); t[:4, :4] = 1
        >>> p = np.zeros((8, 8), int); p[:4, :3] = 7
        >>> s = instance_scores([t], [p]); s["cell_iou"], s["f1"], s["ap"]
        (0.75, 1.0, 1.0)
    """
    true, pred = [convert_to_numpy(t) for t in true], [convert_to_numpy(p) for p in pred]
    inter = sum(int(np.count_nonzero((t > 0) & (p > 0))) for t, p in zip(true, pred, strict=True))
    union = sum(int(np.count_nonzero((t > 0) | (p > 0))) for t, p in zip(true, pred, strict=True))
    m = match_dataset(true, pred, iou_threshold)
    if scores is None:
        scores = [{int(i): 1.0 for i in np.unique(p) if i} for p in pred]
    coco = mask_average_precision(true, pred, scores, max_detections=MAX_DETECTIONS)
    return {
        "cell_iou": inter / union if union else 1.0,
        **m.scores(),
        "ap": m.accuracy,
        "mean_ap": average_precision(true, pred)["mean_ap"],
        "mask_ap": coco.ap,
        "mask_ap50": coco.ap50,
        "mask_ap75": coco.ap75,
    }


class InstanceMetricsHandler:
    """Ignite handler: ``instance_scores`` of ``pred_key`` against ``label_key`` over an evaluator run.

    Both keys hold instance ids, channel-first ``(1, *spatial)``, in each decollated item of
    ``engine.state.output``. Attach it before ``StatsHandler`` so that the scores get printed.

    Args:
        label_key: true instances.
        pred_key: predicted instances (e.g. from ``ClassesToInstancesd``).
        score_key: each predicted instance's score on its voxels (``MaskRCNNInferer``'s third
            channel); None: no scores (see ``instance_scores``).
        output_file: JSON file to write the scores to; None: only ``engine.state.metrics``.
        prefix: prepended to each score's name in ``engine.state.metrics`` and the file.
    """

    def __init__(
        self,
        label_key: str = "label",
        pred_key: str = "instances",
        output_file: str | None = None,
        prefix: str = "",
        score_key: str | None = None,
    ) -> None:
        self.label_key, self.pred_key, self.score_key = label_key, pred_key, score_key
        self.output_file, self.prefix = output_file, prefix
        self.true: list[np.ndarray] = []
        self.pred: list[np.ndarray] = []
        self.scores: list[dict[int, float]] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.compute)

    def reset(self, engine: Any = None) -> None:
        self.true, self.pred, self.scores = [], [], []

    def collect(self, engine: Any) -> None:
        output = engine.state.output
        for item in output if isinstance(output, list) else [output]:
            pred = convert_to_numpy(item[self.pred_key])[0]
            self.true.append(convert_to_numpy(item[self.label_key])[0])
            self.pred.append(pred)
            if self.score_key is not None:
                self.scores.append(instance_scores_of(pred, convert_to_numpy(item[self.score_key])[0]))

    def compute(self, engine: Any) -> dict[str, float]:
        from medseg.training.distributed import gather_items, is_main_process

        # Under DDP each rank saw its share of the cases: score all of them, once each, on every rank.
        sampler = getattr(getattr(engine, "data_loader", None), "sampler", None)
        found = self.scores or [None] * len(self.true)
        cases = gather_items(list(zip(self.true, self.pred, found, strict=True)), sampler)
        true, pred, found = (list(x) for x in zip(*cases, strict=True)) if cases else ([], [], [])
        scores = {
            f"{self.prefix}{k}": v
            for k, v in instance_scores(true, pred, scores=found if self.scores else None).items()
        }
        engine.state.metrics.update(scores)
        if self.output_file is not None and is_main_process():
            with atomic_path(self.output_file) as tmp:
                Path(tmp).write_text(json.dumps(scores, indent=2) + "\n")
        return scores
