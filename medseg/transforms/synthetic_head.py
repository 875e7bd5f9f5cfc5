"""Put a synthetic skull, scalp and neck around a skull-stripped brain, with a random appearance.

The MNI152 template that can be shipped (nilearn's ``mni_icbm152_t1_tal_nlin_sym_09a_converted``)
is already skull-stripped: a model trained on it alone learns "brain = not black" and takes the
skull and scalp of a real head for brain. SynthStrip (Hoopes et al., NeuroImage 2022) trains skull
stripping on images synthesised from label maps that include non-brain tissue; lacking such maps,
this builds the non-brain labels from the brain mask: shells at random, smoothly varying distances
outside it (CSF, inner table, diploe, outer table, scalp), a neck and face block below the brain
filled with random tissue classes, and air around. Each class gets a random intensity each call,
so the model learns the brain's shape and its boundary, not one contrast. MONAI and TorchIO have
label-to-image rendering (TorchIO ``RandomLabelsToImage``) but nothing that makes the head labels.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage

# T1-weighted intensity ranges relative to white matter (= 1): CSF, cortical bone, fatty marrow,
# cortical bone, scalp; then the classes of the neck/face block and air.
SHELLS = ("csf", "inner_table", "diploe", "outer_table", "scalp")
SHELL_MM = ((0.5, 4.0), (1.0, 3.0), (1.0, 5.0), (1.0, 2.5), (3.0, 10.0))
SHELL_INTENSITY = ((0.0, 0.4), (0.0, 0.25), (0.3, 1.1), (0.0, 0.25), (0.4, 1.3))
TISSUE_INTENSITY = ((0.0, 0.2), (0.3, 0.8), (0.6, 1.3), (0.1, 0.5))
AIR_INTENSITY = (0.0, 0.06)
NECK_MM = 80.0


def head_distances(brain: np.ndarray, spacing: Sequence[float], neck_mm: float = NECK_MM) -> np.ndarray:
    """``(2, x, y, z)`` distances (mm) outside ``brain`` and outside brain-plus-neck.

    The neck is the brain's lower half swept down by ``neck_mm`` along the last (inferior-superior,
    RAS) axis, so the head envelope continues below the brain as real heads do.
    """
    brain = np.asarray(brain, bool)
    outside = ndimage.distance_transform_edt(~brain, sampling=spacing)
    zs = np.flatnonzero(brain.any(axis=(0, 1)))
    column = brain.copy()
    if zs.size:
        bottom, middle = zs[0], (zs[0] + zs[-1]) // 2
        footprint = brain[..., bottom : middle + 1].any(axis=-1)
        low = max(bottom - int(round(neck_mm / spacing[2])), 0)
        column[..., low:middle] |= footprint[..., None]
    envelope = ndimage.distance_transform_edt(~column, sampling=spacing)
    return np.stack([outside, envelope]).astype(np.float32)


def smooth_field(shape: Sequence[int], rng: np.random.RandomState, coarse: int = 6) -> np.ndarray:
    """A smooth random field in [-1, 1]: uniform noise on a ``coarse``^3 grid, upsampled (linear)."""
    noise = rng.uniform(-1.0, 1.0, size=(coarse,) * len(shape))
    zoom = [s / coarse for s in shape]
    field = ndimage.zoom(noise, zoom, order=1, mode="nearest", grid_mode=True)
    return field[tuple(slice(0, s) for s in shape)]


def render_head(
    brain_image: np.ndarray,
    brain: np.ndarray,
    distances: np.ndarray,
    shells_mm: Sequence[float],
    intensities: Sequence[float],
    wobble: np.ndarray,
    tissue: np.ndarray,
) -> np.ndarray:
    """The head image: ``brain_image`` inside ``brain``, shells, neck tissue and air outside.

    Args:
        brain_image: ``(x, y, z)`` intensities inside the brain (white matter about 1).
        brain: boolean brain mask.
        distances: ``head_distances(brain, spacing)``.
        shells_mm: thickness of each of ``SHELLS`` (mm).
        intensities: one per shell, then one per tissue class, then air.
        wobble: mm added to the distances (varies the thickness smoothly over the head).
        tissue: integer class (0..n-1) of each voxel of the neck/face block.
    """
    outside, envelope = distances[0] + wobble, distances[1] + wobble
    n_shells = len(shells_mm)
    edges = np.cumsum(shells_mm)
    shell = np.searchsorted(edges, outside, side="right")  # n_shells beyond the scalp
    values = np.asarray(intensities, np.float32)
    image = np.full(brain.shape, values[-1], np.float32)
    in_head = envelope < edges[-1]
    neck = in_head & (shell >= n_shells)
    image[neck] = values[n_shells + tissue[neck]]
    near = shell < n_shells
    image[near] = values[shell[near]]
    image[brain] = brain_image[brain]
    return image


class HeadDistancesd(MapTransform):
    """Add ``distance_key``: ``head_distances`` of the brain mask in ``keys`` (cached with the data)."""

    def __init__(self, keys: KeysCollection, distance_key: str = "head_distance") -> None:
        super().__init__(keys)
        self.distance_key = distance_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            spacing = [float(s) for s in mask.pixdim] if hasattr(mask, "pixdim") else [1.0] * 3
            d[self.distance_key] = torch.as_tensor(head_distances(convert_to_numpy(mask)[0] > 0, spacing))
        return d


class RandSyntheticHeadd(RandomizableTransform, MapTransform):
    """Replace the skull-stripped image ``keys`` by a whole head with random shells and contrasts.

    ``label_key`` is the brain mask, ``distance_key`` the output of ``HeadDistancesd``. The brain
    keeps its own texture, raised to a random gamma and scaled; everything else is drawn anew.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        distance_key: str = "head_distance",
        wobble_mm: float = 3.0,
        tissue_smoothness: int = 10,
        prob: float = 1.0,
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key, self.distance_key = label_key, distance_key
        self.wobble_mm, self.tissue_smoothness = wobble_mm, tissue_smoothness

    def _draw(self, shape: Sequence[int]) -> dict:
        R = self.R
        ranges = (*SHELL_INTENSITY, *TISSUE_INTENSITY, AIR_INTENSITY)
        noise = smooth_field(shape, R, coarse=self.tissue_smoothness)
        cuts = np.sort(R.uniform(-0.6, 0.6, len(TISSUE_INTENSITY) - 1))
        return {
            "shells_mm": [R.uniform(*r) for r in SHELL_MM],
            "intensities": [R.uniform(*r) for r in ranges],
            "wobble": (self.wobble_mm * smooth_field(shape, R)).astype(np.float32),
            "tissue": np.searchsorted(cuts, noise),
            "gamma": R.uniform(0.6, 1.6),
            "brain_scale": R.uniform(0.8, 1.2),
        }

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        brain = convert_to_numpy(d[self.label_key])[0] > 0
        distances = convert_to_numpy(d[self.distance_key])
        for key in self.key_iterator(d):
            image = convert_to_numpy(d[key])[0].astype(np.float32)
            draw = self._draw(image.shape)
            reference = np.percentile(image[brain], 95) if brain.any() else 1.0
            inside = draw["brain_scale"] * np.clip(image / max(reference, 1e-6), 0, None) ** draw["gamma"]
            head = render_head(
                inside,
                brain,
                distances,
                draw["shells_mm"],
                draw["intensities"],
                draw["wobble"],
                draw["tissue"],
            )
            d[key] = convert_to_dst_type(head[None], d[key], dtype=torch.float32)[0]
        return d
