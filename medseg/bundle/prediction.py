"""A bundle's result as one object by kind, on the input's own grid.

The bundle's ``SaveImaged`` steps say what its results are: the keys they save. A saved key named
like ``instance`` makes an instance result (its other saved key, if any, is the per-pixel class map,
e.g. HoVerNet's ``type_map``); a sigmoid output with one channel per region makes overlapping
regions, taken after the last postprocessing step that still has one channel per region (BraTS
bundles then merge them into one label map, which is kept as ``labels``); anything else is a
semantic label map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.transforms import Activationsd, Compose, SaveImage, SaveImaged
from monai.utils import convert_to_numpy

from medseg.bundle.contract import BundleContract
from medseg.instance.labels import instance_scores_of
from medseg.io.case import CaseImage
from medseg.io.resample import label_to_grid

REGIONS_KEY = "_medseg_regions"


@dataclass
class Prediction:
    kind: str  # "labels", "regions" or "instances"
    labels: np.ndarray | None  # (*spatial) ints: semantic labels, merged regions, or instance classes
    names: dict[int, str]  # label value -> name (regions: region number -> name)
    regions: np.ndarray | None = None  # (R, *spatial) bool, one channel per (overlapping) region
    instances: np.ndarray | None = None  # (*spatial) instance ids, 0 = background
    scores: dict[int, float] | None = None  # instance id -> detection score, where the bundle gives one


class CaptureRegions:
    """Keep a copy of ``key`` while it has ``channels`` binary channels (inserted after each step)."""

    def __init__(self, key: str, channels: int) -> None:
        self.key, self.channels = key, channels

    def __call__(self, data: dict) -> dict:
        value = data.get(self.key)
        if value is not None and getattr(value, "shape", (0,))[0] == self.channels:
            if np.isin(convert_to_numpy(value), (0, 1)).all():
                data[REGIONS_KEY] = value.clone()  # keeps its affine
        return data


def _is_sigmoid(step) -> bool:
    return isinstance(step, Activationsd) and any(bool(s) for s in step.sigmoid)


def without_savers(post, contract: BundleContract) -> tuple[Compose, list[str]]:
    """The postprocessing without its ``SaveImaged`` steps (nested too), and the keys they saved.

    For a sigmoid output with one channel per declared region, a capture follows each step."""
    steps, saved = [], []

    def walk(transform) -> None:
        for step in getattr(transform, "transforms", [transform]):
            if isinstance(step, Compose):
                walk(step)
            elif isinstance(step, SaveImaged):
                saved.extend(k for k in step.keys if k not in saved)
            elif not isinstance(step, SaveImage):
                steps.append(step)

    walk(post)
    sigmoid = [s for s in steps if _is_sigmoid(s)]
    if sigmoid and contract.out_channels > 1 and not contract.background_first:
        key = sigmoid[0].keys[0]
        steps = [part for s in steps for part in (s, CaptureRegions(key, contract.out_channels))]
    return Compose(steps), saved or ["pred"]


def _on_grid(value, case: CaseImage, name: str) -> np.ndarray:
    """A saved output as a spatial array on the case's grid (resampled only if the bundle did not
    invert its own resampling)."""
    array = convert_to_numpy(value)
    dims = case.spatial_dims
    if array.ndim == dims + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != dims:
        raise ValueError(f"output '{name}' has shape {array.shape}, not one channel of {dims}D")
    # A MetaTensor carries the input's geometry only when it was computed from the input (MONAI's
    # networks keep it); one a network made afresh holds a default identity affine, which means nothing.
    meta = getattr(value, "meta", None) or {}
    affine = getattr(value, "affine", None) if "filename_or_obj" in meta else None
    same_shape = tuple(array.shape) == case.spatial_shape
    if same_shape and (affine is None or dims == 2):
        return array
    if affine is None:
        raise ValueError(
            f"output '{name}' has shape {array.shape} and no geometry; the input is {case.spatial_shape}"
        )
    affine = np.asarray(convert_to_numpy(affine), dtype=np.float64)
    target = case.geometry.affine
    if same_shape and np.allclose(affine, target, atol=1e-3):
        return array
    return label_to_grid(np.rint(array).astype(np.int32), affine, case.spatial_shape, target)


def _as_labels(array: np.ndarray) -> np.ndarray:
    values = np.rint(array)
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    return values.astype(np.result_type(np.min_scalar_type(low), np.min_scalar_type(high)))


def _scores(output: dict, instance_key: str) -> dict[int, float] | None:
    """Each instance's score, from the key named like the instance key with ``scores`` for
    ``instances`` (``MaskRCNNInferer`` split by ``SplitDimd``: ``pred_instances``, ``pred_scores``)."""
    key = instance_key.replace("instances", "scores")
    if key == instance_key or key not in output:
        return None
    return instance_scores_of(convert_to_numpy(output[instance_key]), convert_to_numpy(output[key]))


def to_prediction(output: dict, saved: list[str], case: CaseImage, contract: BundleContract) -> Prediction:
    """The evaluator's output for one case (after postprocessing) as a ``Prediction``."""
    instance_key = next((k for k in saved if "instance" in k.lower()), None)
    if instance_key is not None:
        instances = _as_labels(_on_grid(output[instance_key], case, instance_key))
        others = [k for k in saved if k != instance_key and k in output]
        classes = _as_labels(_on_grid(output[others[0]], case, others[0])) if others else None
        names = contract.label_names() if classes is not None else {}
        scores = _scores(output, instance_key)
        return Prediction("instances", classes, names, instances=instances.astype(np.int32), scores=scores)
    key = saved[0]
    regions = output.get(REGIONS_KEY)
    if regions is not None:
        regions = np.stack([_on_grid(regions[i : i + 1], case, key) > 0 for i in range(len(regions))])
        merged = _as_labels(_on_grid(output[key], case, key)) if output[key].shape[0] == 1 else None
        return Prediction("regions", merged, contract.region_names(), regions=regions)
    labels = _as_labels(_on_grid(output[key], case, key))
    return Prediction("labels", labels, contract.label_names())
