"""pycocotools' COCOeval(iouType="segm") on instance label images: the independent reference for
medseg's mask AP (tests/metrics) and for the Mask R-CNN bundles' reported figures (tests/bundles)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def as_2d(labels: np.ndarray) -> np.ndarray:
    """pycocotools only takes 2D masks. A mask's IoU counts voxels, whatever their arrangement, so a
    (X, Y, Z) volume reshaped to (X * Y, Z) gives every pair of objects the same IoU as in 3D."""
    return labels if labels.ndim == 2 else labels.reshape(-1, labels.shape[-1])


def coco_eval(true, pred, scores, true_classes=None, pred_classes=None, max_detections=100, thresholds=None):
    """pycocotools' (AP, AP50, AP75, AR) of the same dataset: one area range "all", no crowd, -1 if undefined.

    Objects are annotated in order of id within each image, images in order, as the ordering of ties
    in score (COCOeval's mergesort) depends on it.
    """
    images, gts, dts, classes = [], [], [], {1}
    for n, (t, p, s) in enumerate(zip(true, pred, scores, strict=True)):
        t, p = as_2d(np.asarray(t)), as_2d(np.asarray(p))
        images.append({"id": n + 1, "height": t.shape[0], "width": t.shape[1]})
        for labels, anns, object_classes in ((t, gts, true_classes), (p, dts, pred_classes)):
            for i in np.unique(labels[labels > 0]):
                rle = mask_utils.encode(np.asfortranarray(labels == i, dtype=np.uint8))
                cls = 1 if object_classes is None else int(object_classes[n][int(i)])
                classes.add(cls)
                ann = {"image_id": n + 1, "category_id": cls, "segmentation": rle}
                if anns is gts:
                    area, box = float(mask_utils.area(rle)), mask_utils.toBbox(rle).tolist()
                    ann.update(id=len(gts) + 1, area=area, bbox=box, iscrowd=0)
                else:
                    ann["score"] = float(s[int(i)])
                anns.append(ann)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": gts,
            "categories": [{"id": c, "name": str(c)} for c in sorted(classes)],
        }
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(dts), iouType="segm")
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [max_detections]
        if thresholds is not None:
            evaluation.params.iouThrs = np.array(thresholds)
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, 0]  # thresholds x recall points x classes
    recall = evaluation.eval["recall"][:, :, 0, 0]

    def mean(values: np.ndarray) -> float:  # COCOeval.summarize's mean of what is defined
        return float(values[values > -1].mean()) if (values > -1).any() else -1.0

    at = {round(float(t), 2): k for k, t in enumerate(evaluation.params.iouThrs)}
    ap50 = mean(precision[at[0.5]]) if 0.5 in at else -1.0
    ap75 = mean(precision[at[0.75]]) if 0.75 in at else -1.0
    return mean(precision), ap50, ap75, mean(recall)
