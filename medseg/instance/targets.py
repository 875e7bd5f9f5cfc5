"""Instance label maps <-> Mask R-CNN detection targets and outputs, in 2D and 3D.

Conventions shared with the rest of medseg: arrays are ``(*spatial)`` in medseg's axis order;
boxes are float32 ``(K, 2*D)`` in MONAI's StandardMode ``x1, y1[, z1], x2, y2[, z2]``, where the
first coordinate indexes the first array axis, in continuous voxel-edge coordinates: voxel ``i``
covers ``[i, i + 1)`` (its centre is ``i + 0.5``), so an object on voxels ``min..max`` has the box
``[min, max + 1)`` and a single voxel a box of size 1.

Resampling is done here with ``scipy.ndimage.map_coordinates`` (order 1), not with an RoIAlign
module: ``mask_targets`` reproduces RoIAlign's ``aligned=True, sampling_ratio=1`` sampling and
``detections_to_instances`` the paste of detectron2's ``paste_masks_in_image`` (grid_sample at
voxel centres, zeros outside; torchvision's pads the mask with zeros the same way but rounds the
box to whole pixels), so each can be checked against those peers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import InputError
from medseg.instance.labels import check_instances


def _numpy(value) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array, without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _spatial(instances, name: str = "instance mask") -> np.ndarray:
    array = check_instances(_numpy(instances), name)
    if array.ndim not in (2, 3):
        raise InputError(f"{name} has shape {array.shape}; expected a 2D or 3D (*spatial) label map")
    return array


def _finite(values, name: str, ndim: int) -> np.ndarray:
    array = _numpy(values).astype(np.float64)
    if array.ndim != ndim:
        raise InputError(f"{name} has shape {array.shape}; expected {ndim} dimensions")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} holds NaN or infinite values")
    return array


def _boxes(boxes, dims: int, name: str = "boxes") -> np.ndarray:
    array = _numpy(boxes)
    if array.size == 0:
        return np.zeros((0, 2 * dims))
    array = _finite(array, name, 2)
    if array.shape[1] != 2 * dims:
        raise InputError(f"{name} have shape {array.shape}; expected (K, {2 * dims}) for {dims}D images")
    return array


def instances_to_targets(instances, classes=None) -> dict[str, object]:
    """Detection targets of an instance label map: one box, class, id and mask per instance.

    ``labels`` is the most frequent non-zero value of ``classes`` over the instance (ties: the
    smallest class; 0 when the instance lies on class 0 only: drop those with ``labels > 0``),
    1 for every instance without a class map. ``masks`` are cropped to their box (``masks[k]`` has
    the box's size and origin ``boxes[k, :D]``): full-size masks would cost K times the volume
    (50 lesions in a 512x512x300 CT: 3.9 GB), crops the objects' own size, and the instance is 0
    outside its box anyway (``mask_targets`` samples the label map itself).

    Example:
        >>> ids = np.zeros((4, 5), np.uint16); ids[1:3, 2:4] = 17; ids[3, 0] = 3
        >>> t = instances_to_targets(ids)
        >>> t["ids"], t["labels"], t["boxes"]
        (array([ 3, 17]), array([1, 1]), array([[3., 0., 4., 1.],
               [1., 2., 3., 4.]], dtype=float32))
        >>> t["masks"][1].shape
        (2, 2)
    """
    instances = _spatial(instances)
    values, inverse = _compact(instances)
    if values.size and values[0] != 0:  # without background, the first id's index is 0: shift it
        inverse = inverse + 1
    else:
        values = values[1:]
    ids = values.astype(np.int64)
    slices = ndimage.find_objects(inverse, max_label=len(ids)) if len(ids) else []  # 0 means "find it"
    corners = [[s.start for s in box] + [s.stop for s in box] for box in slices]
    boxes = np.array(corners, np.float32).reshape(len(ids), 2 * instances.ndim)
    masks = [inverse[box] == k + 1 for k, box in enumerate(slices)]
    labels = np.ones(len(ids), np.int64) if classes is None else _majority(inverse, classes, len(ids))
    return {"boxes": boxes, "labels": labels, "ids": ids, "masks": masks}


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a label map and each voxel's index among them: through a lookup
    table when the values are small (linear time, 50x faster than ``np.unique`` on 256^3), by
    sorting when they are not (ids such as 2**40 would make the table too large)."""
    top = int(labels.max()) if labels.size else 0
    if top > max(labels.size, 2**16):
        values, index = np.unique(labels, return_inverse=True)
        return values, index.reshape(labels.shape)
    values = np.flatnonzero(np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=1))
    table = np.zeros(top + 1, np.int32)
    table[values] = np.arange(len(values))
    return values, table[labels]


def _majority(inverse: np.ndarray, classes, count: int) -> np.ndarray:
    classes = _spatial(classes, "class map")
    if classes.shape != inverse.shape:
        raise InputError(f"class map of shape {classes.shape} does not match the instances {inverse.shape}")
    names, class_index = _compact(classes)
    inside = inverse.ravel() > 0
    pairs = (inverse.ravel()[inside] - 1) * len(names) + class_index.ravel()[inside]
    votes = np.bincount(pairs, minlength=count * len(names)).reshape(count, len(names))
    votes[:, names == 0] = 0
    winner = names[votes.argmax(axis=1)].astype(np.int64) if len(names) else np.zeros(count, np.int64)
    return np.where(votes.sum(axis=1) > 0, winner, 0)


def mask_targets(instances, ids, rois, output_size):
    """Mask R-CNN mask targets: instance ``ids[k]``'s binary mask sampled on RoI ``rois[k]``'s grid.

    Bin ``j`` of an RoI ``[x1, x2)`` split into ``M`` bins is sampled at its centre
    ``x1 + (j + 0.5) * (x2 - x1) / M`` by multilinear interpolation between voxel centres, exactly
    as ``torchvision.ops.roi_align(mask, rois, output_size, 1.0, sampling_ratio=1, aligned=True)``
    samples (with its box axes in medseg order): the edge voxel's value holds up to one voxel
    beyond the image, 0 further out. Id 0 or an id absent from the map gives zeros. Returns
    float32 ``(K, *output_size)`` in [0, 1]: numpy, or a tensor on ``rois``' device for a tensor.

    Example:
        >>> ids = np.zeros((4, 4), int); ids[1:3, 1:3] = 7
        >>> mask_targets(ids, [7], [[1.0, 1.0, 3.0, 3.0]], 2)[0]
        array([[1., 1.],
               [1., 1.]], dtype=float32)
        >>> mask_targets(ids, [7], [[1.0, 1.0, 3.0, 3.0]], 4)[0, 1]  # bin centres 1.25 .. 2.75
        array([0.75, 1.  , 1.  , 0.75], dtype=float32)
    """
    instances = _spatial(instances)
    dims = instances.ndim
    ids = check_instances(np.reshape(_numpy(ids), -1), "ids").astype(np.int64)
    boxes = _boxes(rois, dims, "rois")
    size = (int(output_size),) * dims if np.ndim(output_size) == 0 else tuple(int(m) for m in output_size)
    if len(size) != dims or min(size) < 1:
        raise InputError(f"output_size {output_size} must be {dims} sizes >= 1")
    if len(ids) != len(boxes):
        raise InputError(f"{len(ids)} ids for {len(boxes)} rois: give one matched id per RoI")
    targets = np.zeros((len(boxes), *size), np.float32)
    for k, (box, value) in enumerate(zip(boxes, ids, strict=True)):
        if value > 0:
            targets[k] = _sample(instances, int(value), box, size)
    if hasattr(rois, "detach"):
        import torch

        return torch.from_numpy(targets).to(rois.device)
    return targets


def _sample(instances: np.ndarray, value: int, box: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """One RoI: sample points per axis (voxel-index frame), RoIAlign's edge rule, then interpolate."""
    dims = instances.ndim
    axes, valid = [], np.ones(size, bool)
    for a in range(dims):
        points = box[a] + (np.arange(size[a]) + 0.5) * (box[dims + a] - box[a]) / size[a] - 0.5
        inside = (points >= -1) & (points <= instances.shape[a])
        valid &= inside.reshape([-1 if b == a else 1 for b in range(dims)])
        axes.append(np.clip(points, 0, max(instances.shape[a] - 1, 0)))
    if not valid.any() or instances.size == 0:
        return np.zeros(size, np.float32)
    crop = tuple(slice(int(np.floor(p.min())), int(np.floor(p.max())) + 2) for p in axes)
    mask = (instances[crop] == value).astype(np.float32)
    grid = np.meshgrid(*[p - c.start for p, c in zip(axes, crop, strict=True)], indexing="ij")
    values = ndimage.map_coordinates(mask, grid, order=1, mode="nearest")
    return np.clip(np.where(valid, values, 0), 0, 1)


def detections_to_instances(
    boxes,
    scores,
    masks,
    image_shape: Sequence[int],
    labels=None,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_instances: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste Mask R-CNN detections into an instance label map ``(instances, classes, kept)``.

    ``masks`` are probabilities in each box's RoI frame, ``(K, *mask_size)`` (or torchvision's
    ``(K, 1, *mask_size)``, or a list of arrays of any sizes, e.g. ``instances_to_targets``'
    masks). Each is resampled onto the voxel centres of the image: linear between its bin centres,
    falling to 0 half a bin beyond the outer ones (as ``paste_masks_in_image`` in torchvision and
    detectron2), kept where ``>= mask_threshold``: at 0.5 or more nothing lands outside the box,
    a lower threshold lets an object reach up to half a bin past it. Detections scoring below
    ``score_threshold`` are dropped; the rest claim voxels in descending score (equal scores:
    input order), so a voxel wanted by several goes to the highest; a detection left without
    voxels (or with an empty box) is dropped; at most ``max_instances`` are kept. Ids are 1..K'
    in that order, ``classes`` holds ``labels`` (default 1) on each instance, and ``kept[i - 1]``
    is the input index of id ``i``.

    Example:
        >>> inst, cls, kept = detections_to_instances(
        ...     [[0, 0, 2, 2], [1, 1, 3, 3]], [0.6, 0.9], np.ones((2, 2, 2)), (3, 3), labels=[4, 5])
        >>> inst
        array([[2, 2, 0],
               [2, 1, 1],
               [0, 1, 1]], dtype=int32)
        >>> kept, cls.max()
        (array([1, 0]), np.int32(5))
    """
    shape = tuple(int(n) for n in image_shape)
    dims = len(shape)
    if dims not in (2, 3) or min(shape) < 0:
        raise InputError(f"image_shape {image_shape} must be 2 or 3 sizes >= 0")
    boxes = _boxes(boxes, dims)
    count = len(boxes)
    scores = _finite(np.reshape(_numpy(scores), -1), "scores", 1)
    masks = _masks(masks, count, dims)
    classes_of = _labels(labels, count)
    if len(scores) != count:
        raise InputError(f"{len(scores)} scores for {count} boxes")
    if not 0 < mask_threshold <= 1:
        raise InputError(f"mask_threshold {mask_threshold} must be in (0, 1]: 0 would claim the whole box")
    if max_instances is not None and max_instances < 0:
        raise InputError(f"max_instances {max_instances} must be >= 0 (or None for no limit)")
    limit = count if max_instances is None else int(max_instances)

    instances = np.zeros(shape, np.int32)
    classes = np.zeros(shape, np.int32)
    kept: list[int] = []
    for k in np.argsort(-scores, kind="stable"):
        if len(kept) >= limit or scores[k] < score_threshold:
            break
        window, pasted = _paste(masks[k], boxes[k], shape)
        if pasted is None:
            continue
        claim = (pasted >= mask_threshold) & (instances[window] == 0)
        if claim.any():
            kept.append(int(k))
            instances[window][claim] = len(kept)
            classes[window][claim] = classes_of[k]
    return instances, classes, np.array(kept, np.int64)


def _masks(masks, count: int, dims: int) -> list[np.ndarray]:
    if isinstance(masks, (list, tuple)):
        masks = [_numpy(m) for m in masks]
    else:
        masks = _numpy(masks)
        if masks.size == 0 and count == 0:
            return []
        if masks.ndim == dims + 2 and masks.shape[1] == 1:  # torchvision's channel axis
            masks = masks[:, 0]
        if masks.ndim != dims + 1:
            raise InputError(f"masks have shape {masks.shape}; expected (K, *mask_size) with {dims}D masks")
        masks = list(masks)
    if len(masks) != count or any(m.ndim != dims or m.size == 0 for m in masks):
        raise InputError(f"masks must be {count} non-empty {dims}D arrays, one per box (K, *mask_size)")
    return [_finite(m, "masks", dims) for m in masks]


def _labels(labels, count: int) -> np.ndarray:
    if labels is None:
        return np.ones(count, np.int32)
    array = _finite(np.reshape(_numpy(labels), -1), "labels", 1)
    if len(array) != count or np.any(array < 1) or not np.array_equal(array, np.round(array)):
        raise InputError(f"labels must be {count} whole numbers >= 1 (0 is background), got {array[:5]}...")
    return array.astype(np.int32)


def _paste(mask: np.ndarray, box: np.ndarray, shape: tuple[int, ...]):
    """The image window a box's mask can reach and the mask resampled on its voxel centres."""
    dims = len(shape)
    window, axes = [], []
    for a in range(dims):
        start, stop = box[a], box[dims + a]
        if not stop > start:
            return None, None
        half = (stop - start) / mask.shape[a] / 2
        lo = int(np.clip(np.floor(start - half), 0, shape[a]))
        hi = int(np.clip(np.ceil(stop + half), 0, shape[a]))
        if hi <= lo:
            return None, None
        centres = np.arange(lo, hi) + 0.5
        axes.append((centres - start) * mask.shape[a] / (stop - start) - 0.5)
        window.append(slice(lo, hi))
    grid = np.meshgrid(*axes, indexing="ij")
    return tuple(window), ndimage.map_coordinates(mask, grid, order=1, mode="grid-constant", cval=0.0)
