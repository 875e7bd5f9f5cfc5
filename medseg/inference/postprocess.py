"""Per-label clean-up of a label map: small components, largest component, holes.

The rules come from a bundle config, e.g. ``{"1": {"largest_component": true, "fill_holes": true},
"*": {"min_size_ml": 0.5}}``, as nnU-Net / TotalSegmentator users expect.

MONAI has the three operations (checked in MONAI 1.6.1, ``monai.transforms.post.array``), but none
does what is needed on a label map with several labels, so they are not used:

- ``RemoveSmallObjects`` hands a non-one-hot label map to ``skimage.morphology.remove_small_objects``,
  which reads an integer array as already labelled: every label *value* is one object, so the stray
  islands of a label are never removed while its main part is large (per label it needs a one-hot
  input: one full-size channel per label). ``by_measure`` counts mm^3, not mL.
- ``FillHoles(applied_labels=[v])`` floods the complement of ``v`` over the whole volume and gives
  ``v`` to every voxel it cannot reach, so another label lying inside the hole is overwritten; on a
  numpy input it also writes into its input.
- ``KeepLargestConnectedComponent(applied_labels=[v], independent=True)`` is right per label (the
  tests compare with it), but labels the whole volume once per label and writes into a numpy input;
  here one ``ndimage.label`` per label, on the label's bounding box, serves both the size filter and
  the largest component.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from numbers import Integral, Real

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage

from medseg.errors import InputError

FLAGS = ("largest_component", "fill_holes")
SIZES = ("min_size_ml", "min_size_voxels")
DEFAULT_KEYS = ("*", "all")


def parse_rules(rules: Mapping[int | str, Mapping]) -> tuple[dict[int, dict], dict]:
    """Check ``rules``; return ``(rule per label value, default rule)``. ``InputError`` names a bad key."""
    per_label: dict[int, dict] = {}
    default: dict | None = None
    for key, rule in rules.items():
        if not isinstance(rule, Mapping):
            raise InputError(f"post-processing rule {key!r}: expected a mapping of options, not {rule!r}")
        for name, value in rule.items():
            _check_option(key, name, value)
        if key in DEFAULT_KEYS:
            if default is not None:
                raise InputError(f"post-processing rule {key!r}: give the default rule once, as '*' or 'all'")
            default = dict(rule)
            continue
        value = _label_value(key)
        if value in per_label:
            raise InputError(f"post-processing rule {key!r}: label {value} has two rules")
        per_label[value] = dict(rule)
    return per_label, default or {}


def _check_option(key: object, name: object, value: object) -> None:
    where = f"post-processing rule {key!r}: option {name!r}"
    if name in FLAGS and not isinstance(value, bool):
        raise InputError(f"{where} must be true or false, not {value!r}")
    if name in SIZES and (isinstance(value, bool) or not isinstance(value, Real) or value < 0):
        raise InputError(f"{where} must be a number >= 0, not {value!r}")
    if name not in FLAGS + SIZES:
        raise InputError(f"{where} is unknown; use {', '.join(FLAGS + SIZES)}")


def _label_value(key: object) -> int:
    try:
        value = int(key) if isinstance(key, Integral | str) and not isinstance(key, bool) else 0
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"post-processing rule {key!r}: a key is a label value >= 1 (or '*' for all labels)")
    return value


def postprocess_labels(
    label: np.ndarray,
    rules: Mapping[int | str, Mapping],
    spacing: Sequence[float] | None = None,
    connectivity: int = 1,
) -> np.ndarray:
    """Clean each label of an integer label map by its rule; the input is not modified.

    Options per label: ``min_size_voxels`` / ``min_size_ml`` remove components smaller than that
    (mL needs ``spacing`` in mm), ``largest_component`` keeps the largest one, ``fill_holes`` gives the
    label the background it encloses and touches (other labels are never overwritten; a background
    pocket walled off by another label is that label's hole). Removed voxels become 0. ``"*"`` (or
    ``"all"``) is the rule of every present label without its own. Removal runs for all labels, then
    hole filling, in ascending label order. ``connectivity`` (1 to ndim) is used for the components
    and for the background when deciding what is enclosed. The map is 2D or 3D, optionally with a
    leading channel of size 1, which is kept; ``(1, H, W)`` is read as a 2D map unless ``spacing``
    has three values.

    Example:
        >>> lab = np.zeros((6, 8), np.uint8)
        >>> lab[1:5, 1:4] = 1; lab[2:4, 2] = 0  # 10 voxels around a 2-voxel hole
        >>> lab[1, 6] = 1  # a stray voxel
        >>> out = postprocess_labels(lab, {"1": {"largest_component": True, "fill_holes": True}})
        >>> int((out == 1).sum()), int(out[1, 6]), int(lab[2, 2])
        (12, 0, 0)
    """
    per_label, default = parse_rules(rules)
    if not np.issubdtype(label.dtype, np.integer):
        raise InputError(f"post-processing needs an integer label map, got dtype {label.dtype}; argmax first")
    spatial = _spatial_dims(label.shape, spacing)
    if not 1 <= connectivity <= spatial:
        raise InputError(f"post-processing: connectivity must be 1 to {spatial}, got {connectivity}")
    out = label.copy()
    lab = out[0] if out.ndim > spatial else out
    structure = ndimage.generate_binary_structure(spatial, connectivity)
    voxel_ml = float(np.prod(spacing)) / 1000.0 if spacing is not None else None
    # one pass over the map gives every label's bounding box; each step then works inside it
    boxes = ndimage.find_objects(lab, max_label=0 if default else max(per_label, default=0))
    todo = [(v, box, rule) for v, box in enumerate(boxes, 1) if box and (rule := per_label.get(v, default))]
    for value, box, rule in todo:
        _remove_components(lab, value, box, rule, structure, voxel_ml)
    for value, box, rule in todo:
        if rule.get("fill_holes"):
            _fill_holes(lab, value, box, structure)
    return out


def _spatial_dims(shape: tuple[int, ...], spacing: Sequence[float] | None) -> int:
    ndim = len(shape)
    spatial = len(spacing) if spacing is not None else ndim - (ndim in (3, 4) and shape[0] == 1)
    if spatial not in (2, 3) or ndim - spatial not in (0, 1) or (ndim > spatial and shape[0] != 1):
        raise InputError(
            f"post-processing needs a 2D/3D label map, optionally (1, *spatial), with one spacing per "
            f"spatial axis; got shape {tuple(shape)} and spacing {spacing}"
        )
    return spatial


def _remove_components(
    lab: np.ndarray,
    value: int,
    box: tuple[slice, ...],
    rule: Mapping,
    structure: np.ndarray,
    voxel_ml: float | None,
) -> None:
    """Set to 0, in place, the components of ``value`` that ``rule`` drops (too small, not the largest)."""
    if not (rule.get("largest_component") or rule.get("min_size_voxels") or rule.get("min_size_ml")):
        return
    if rule.get("min_size_ml") and voxel_ml is None:
        raise InputError(
            f"post-processing rule for label {value}: 'min_size_ml' needs the voxel spacing in mm"
        )
    crop = lab[box]  # a view: writing to it writes to ``lab``
    mask = crop == value
    parts, n = ndimage.label(mask, structure)
    ids = parts[mask]  # only the label's voxels: far fewer than the box's when its parts lie apart
    sizes = np.bincount(ids, minlength=n + 1)
    keep = sizes >= rule.get("min_size_voxels", 0)
    if rule.get("min_size_ml"):
        keep &= sizes * voxel_ml >= rule["min_size_ml"]
    keep[0] = False  # index 0 is everything that is not ``value``
    if rule.get("largest_component") and keep.any():
        keep = np.arange(n + 1) == np.argmax(np.where(keep, sizes, -1))
    if not keep[1:].all():
        crop[mask] = np.where(keep[ids], value, 0)


def _fill_holes(lab: np.ndarray, value: int, box: tuple[slice, ...], structure: np.ndarray) -> None:
    """Give ``value``, in place, to the background it encloses and touches.

    A hole never reaches the label's bounding box faces (the voxels just outside are not the label
    and reach the border), so filling inside the box equals filling the whole map.
    """
    crop = lab[box]
    inner = ndimage.find_objects((crop == value).view(np.uint8))
    if not inner or inner[0] is None:  # every voxel of the label was removed
        return
    crop = crop[inner[0]]
    mask = crop == value
    holes = ndimage.binary_fill_holes(mask, structure) & (crop == 0)
    parts, n = ndimage.label(holes, structure)
    touching = np.zeros(n + 1, bool)
    touching[parts[ndimage.binary_dilation(mask, structure) & holes]] = True
    touching[0] = False
    crop[touching[parts]] = value


def _to_numpy_labels(x: torch.Tensor | np.ndarray, key: Hashable) -> np.ndarray:
    array = convert_to_numpy(x)
    if array.ndim < 3 or array.shape[0] != 1:
        raise InputError(
            f"{key}: post-processing expects (1, *spatial) label maps (argmax first), got {array.shape}"
        )
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.array_equal(array, np.round(array)):
        raise InputError(f"{key}: post-processing expects label values, got fractional values; argmax first")
    return array.astype(np.int32)


class PostprocessLabelsd(MapTransform):
    """Dictionary version of ``postprocess_labels`` for ``(1, *spatial)`` label maps.

    The spacing for ``min_size_ml`` comes from a ``MetaTensor``'s affine (``pixdim``); the result has
    the input's type, dtype, device and meta. Rules are checked here, when the bundle config is parsed.
    """

    def __init__(
        self,
        keys: KeysCollection,
        rules: Mapping[int | str, Mapping],
        connectivity: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        parse_rules(rules)
        self.rules = rules
        self.connectivity = connectivity

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            spacing = x.pixdim.tolist() if isinstance(x, MetaTensor) and not x.is_batch else None
            array = _to_numpy_labels(x, key)
            out = postprocess_labels(array, self.rules, spacing, self.connectivity)
            d[key] = convert_to_dst_type(out, x)[0]
        return d
