"""The border weight map of the U-Net paper (Ronneberger et al., MICCAI 2015, equation 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

"d1 [...] denotes the distance to the border of the nearest cell and d2 [...] the distance to
the border of the second nearest cell. In our experiments we set w0 = 10 and sigma ~= 5 pixels." Choices:

- Distances are Euclidean between pixel centres in the units of ``spacing`` (``sigma`` too, so
  3D and anisotropic voxels work), equal to the usual implementation's: one
  ``distance_transform_edt(labels != i, sampling=spacing)`` per cell, the two smallest.
- The border term is added on background pixels only, where the paper's separation borders are
  (its figure 3d), as Guerrero-Pena's MATLAB ``unetwmap`` and its Python ports do
  (``* (labels == 0)``); inside a cell (d1 = 0) it would only raise each cell's own rim.
- ``w_c = N / (K * n_c)`` over the K classes (background, cells) present: scikit-learn's
  "balanced" weights, mean 1 over the image; 1 everywhere without cells. ``class_weights``
  sets fixed, e.g. dataset-wide, weights instead.

Checked in the field's libraries: scipy's ``distance_transform_edt`` and SimpleITK's
``SignedMaurerDistanceMap`` give the nearest feature only, so d2 costs one transform per cell
(300 cells in 512x512: 8-9 s here); scikit-image and MONAI have no border weight map; and one
scipy EDT of a 256x256x64 volume takes ~1 s here. Hence ``_stage``: one separable pass per
axis keeping the two nearest *distinct* cells per pixel, compiled with numba when installed;
without numba an exact per-cell EDT on bounding boxes (scipy) gives the same numbers, slower.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy
from scipy import ndimage

from medseg.errors import InputError
from medseg.instance.labels import check_instances

# Border terms below this are dropped (set to 0): the float64 map is within it of the per-cell
# reference (tested), and it is about the float32 resolution of weights near w0 + 1.
BORDER_TOLERANCE = 1e-6


def border_cutoff(w0: float, sigma: float, tolerance: float = BORDER_TOLERANCE) -> float:
    """Distance sum ``d1 + d2`` beyond which ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) < tolerance``.

    Example:
        >>> round(border_cutoff(10.0, 5.0), 2)
        28.39
    """
    if w0 <= tolerance:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tolerance))


def balanced_class_weights(instances: np.ndarray) -> tuple[float, float]:
    """``(background, foreground)`` weights ``N / (K * n_c)`` over the K classes present (mean 1).

    Example:
        >>> balanced_class_weights(np.array([[0, 0, 0, 1]]))
        (0.6666666666666666, 2.0)
    """
    total = instances.size
    n_fg = int(np.count_nonzero(instances))
    counts = (total - n_fg, n_fg)
    present = sum(1 for c in counts if c > 0)
    # An absent class gets weight 1; no pixel carries it, so the value never shows.
    return tuple(total / (present * c) if c > 0 else 1.0 for c in counts)  # type: ignore[return-value]


def unet_weight_map(
    instances: np.ndarray,
    spacing: Sequence[float] | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Sequence[float] | None = None,
    dtype: npt.DTypeLike = np.float32,
) -> np.ndarray:
    """U-Net border weight map of a 2D or 3D instance label image (0 = background).

    Args:
        instances: ``(H, W)`` or ``(D, H, W)`` integer labels, one value per cell; no channel axis.
            Floats are accepted when they hold whole numbers.
        spacing: pixel size per axis (e.g. mm); distances and ``sigma`` are in these units.
            None: 1 per axis, so ``sigma`` is in pixels as in the paper.
        w0: weight of the border term (paper: 10).
        sigma: width of the border term (paper: 5 pixels), in the units of ``spacing``.
        class_weights: ``(background, foreground)`` weights w_c; None: balanced from this image's
            frequencies (see ``balanced_class_weights``).
        dtype: of the result; computed in float64, which is within ``BORDER_TOLERANCE`` of the
            per-cell EDT reference (float32 rounds that to ~5e-7 near w0).

    Returns:
        ``dtype`` weights, same shape as ``instances``. Without cells: ``w_c`` only; with one cell,
        too (d2 is infinite, the border term 0).

    Raises:
        InputError: labels that are not whole non-negative numbers, or not 2D/3D.

    Example:
        >>> w = unet_weight_map(np.array([[1, 1, 0, 2, 2]]), class_weights=(1.0, 1.0))
        >>> round(float(w[0, 2]), 4)  # 1 + 10 * exp(-(1 + 1)^2 / (2 * 5^2)): d1 = d2 = 1
        10.2312
    """
    labels = _check_instances(instances)
    spacing = _check_spacing(spacing, labels.ndim)
    if sigma <= 0 or w0 < 0:
        raise ValueError(f"unet_weight_map: need sigma > 0 and w0 >= 0, got sigma={sigma}, w0={w0}")
    if class_weights is None:
        class_weights = balanced_class_weights(labels)
    if len(class_weights) != 2:
        raise ValueError(f"class_weights: give (background, foreground), got {class_weights!r}")
    w_bg, w_fg = (float(c) for c in class_weights)
    cell = labels > 0
    cutoff = border_cutoff(w0, sigma)
    if cutoff > 0 and cell.any():
        # In place on d1, so a 256x256x64 volume costs no extra full-size float64 arrays.
        weights, d2 = _two_nearest(labels, spacing, cutoff)
        weights += d2  # inf where no second cell is near: exp(-inf) = 0
        weights *= weights
        weights *= -0.5 / sigma**2
        np.exp(weights, out=weights)
        weights *= w0
        weights += w_bg
    else:
        weights = np.full(labels.shape, w_bg)
    np.copyto(weights, w_fg, where=cell)  # the border term is for background pixels only
    return weights.astype(dtype, copy=False)


def _check_instances(instances: np.ndarray) -> np.ndarray:
    """Labels as int32, or an InputError saying what is wrong with them."""
    array = np.asarray(instances)
    what = "instance labels"
    if array.ndim not in (2, 3):
        raise InputError(f"{what} must be (H, W) or (D, H, W), no channel axis; got shape {array.shape}")
    if array.dtype == bool:
        raise InputError(f"{what} are a boolean mask: give one id per cell (skimage.measure.label(mask))")
    array = check_instances(array, what)
    if array.size and array.max() > np.iinfo(np.int32).max:
        # Only ids are compared, so renumbering is harmless; one int32 kernel compiles once.
        return np.unique(array, return_inverse=True)[1].reshape(array.shape).astype(np.int32)
    return array.astype(np.int32, copy=False)


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in np.ravel(spacing))
    if len(values) != ndim or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be {ndim} positive numbers, got {spacing!r}")
    return values


def _two_nearest(
    labels: np.ndarray, spacing: Sequence[float], cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``(d1, d2)`` from background pixels to their nearest and second-nearest cell.

    Each is exact (as the per-cell EDT) or ``inf``, and exact wherever ``d1 + d2 <= cutoff``;
    values on cell pixels are unspecified (the caller masks them).
    """
    stage = _numba_stage()
    if stage is None:
        return _two_nearest_boxes(labels, spacing, cutoff)
    # C order, so the (before, along, after) reshapes below are views the kernel writes through;
    # a transposed 3D view would give copies, and the border term would be lost.
    labels = np.ascontiguousarray(labels)
    cell = labels > 0  # squared distances and ids of the two nearest cells, updated per axis
    g1, l1 = np.where(cell, 0.0, np.inf), np.where(cell, labels, -1).astype(np.int32, copy=False)
    g2, l2 = np.full(labels.shape, np.inf), np.full(labels.shape, -1, np.int32)
    shape = labels.shape
    for axis, step in enumerate(spacing):
        lines = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))  # views
        final = axis == labels.ndim - 1
        stage(*(a.reshape(lines) for a in (g1, l1, g2, l2)), step * step, cutoff * cutoff, final)
    return np.sqrt(g1, out=g1), np.sqrt(g2, out=g2)


def _two_nearest_boxes(
    labels: np.ndarray, spacing: Sequence[float], cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(d1, d2)`` with one EDT per cell, each on the cell's box grown by ``cutoff`` (no numba).

    Exact within ``cutoff``: a pixel of the box has all of the cell's pixels inside the box, and
    a pixel outside it is farther than ``cutoff`` from the cell.
    """
    ids, inverse = np.unique(labels, return_inverse=True)
    cells = inverse.reshape(labels.shape) + (0 if ids[0] == 0 else 1)  # 1..K, sized for find_objects
    margin = [math.ceil(cutoff / s) for s in spacing]
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        grown = tuple(
            slice(max(0, b.start - m), min(n, b.stop + m))
            for b, m, n in zip(box, margin, labels.shape, strict=True)
        )
        dist = ndimage.distance_transform_edt(cells[grown] != index, sampling=spacing)
        near1, near2 = d1[grown], d2[grown]
        np.minimum(near2, np.maximum(near1, dist), out=near2)
        np.minimum(near1, dist, out=near1)
    return d1, d2


# numba resolves these globals when it compiles _stage and _line, so _numba_stage sets them first.
_stage_nb: Any = None
_line_nb: Any = None
_envelope_nb: Any = None


def _numba_stage() -> Any:
    """The compiled kernel, or None without numba; numba is imported on first use only."""
    global _stage_nb, _line_nb, _envelope_nb
    if _stage_nb is None:
        try:
            import numba
        except ImportError:
            return None
        # nogil: DataLoader threads can run it side by side. Not parallel=True: workers already
        # use the cores, and numba's thread pools do not survive fork.
        jit = numba.njit(cache=True, nogil=True)
        _envelope_nb, _line_nb = jit(_envelope), jit(_line)
        _stage_nb = jit(_stage)
    return _stage_nb


def _stage(
    g1: np.ndarray, l1: np.ndarray, g2: np.ndarray, l2: np.ndarray, w: float, cap: float, final: bool
) -> None:
    """One axis of the separable transform, in place on ``(before, along, after)`` arrays.

    Each pixel holds its two nearest *distinct* cells, ``(g1, l1)`` and ``(g2, l2)``, as squared
    distances over the axes done so far. Keeping two is enough: a pixel's second cell reaches it
    through a site where that cell is one of the two best (else two better cells there, one of
    them not the first, would beat it). Values above ``cap`` are dropped; a value <= cap only
    passes through values <= cap, so it stays exact.
    """
    n = g1.shape[1]
    line = (np.empty(n), np.empty(n, l1.dtype), np.empty(n), np.empty(n, l1.dtype))
    out = (np.empty(n), np.empty(n, l1.dtype), np.empty(n), np.empty(n, l1.dtype))
    scratch = (np.empty(n, np.int64), np.empty(n), np.empty(n, l1.dtype), np.empty(n + 1))
    f1, m1, f2, m2 = line
    r1, s1, r2, s2 = out
    for a in range(g1.shape[0]):
        for b in range(g1.shape[2]):
            for x in range(n):
                f1[x], m1[x], f2[x], m2[x] = g1[a, x, b], l1[a, x, b], g2[a, x, b], l2[a, x, b]
            _line_nb(line, out, scratch, w, cap, final)
            for x in range(n):
                g1[a, x, b], l1[a, x, b], g2[a, x, b], l2[a, x, b] = r1[x], s1[x], r2[x], s2[x]


def _line(line: tuple, out: tuple, scratch: tuple, w: float, cap: float, final: bool) -> None:
    """The two nearest distinct cells along one line: ``min_q w (x - q)^2 + g(q)``.

    That minimum is the lower envelope of parabolas (Felzenszwalb & Huttenlocher 2012): first
    over the sites' best entries, giving the nearest cell; then, per run of pixels sharing that
    nearest cell, over each site's best entry from another cell.
    """
    f1, m1, f2, m2 = line
    r1, s1, r2, s2 = out
    n = f1.size
    _envelope_nb(line, np.int32(-2), np.int64(0), n - 1, np.int64(0), n - 1, w, cap, r1, s1, scratch)
    x = 0
    while x < n:
        e = x
        while e + 1 < n and s1[e + 1] == s1[x]:
            e += 1
        r2[x : e + 1], s2[x : e + 1] = np.inf, -1
        qs, qe, top = x, e, cap
        if final:  # only background with d1 <= C / 2 needs d2 (d1 <= d2, d1 + d2 <= C)
            quarter = cap / 4.0
            while qs <= e and not 0.0 < r1[qs] <= quarter:
                qs += 1
            while qe >= qs and not 0.0 < r1[qe] <= quarter:
                qe -= 1
            near = quarter
            for y in range(qs, qe + 1):
                if 0.0 < r1[y] < near:
                    near = r1[y]
            top = (math.sqrt(cap) - math.sqrt(near)) ** 2  # a d2 beyond C - d1 never shows
        if s1[x] >= 0 and qs <= qe:
            bound = 0.0  # each pixel's own other-cell entry bounds its d2: look no farther
            for y in range(qs, qe + 1):
                bound = max(bound, f1[y] if m1[y] != s1[x] else f2[y])
            reach = int(math.sqrt(min(bound, top) / w)) + 1
            lo, hi = max(0, qs - reach), min(n - 1, qe + reach)
            _envelope_nb(line, s1[x], lo, hi, qs, qe, w, top, r2, s2, scratch)
        x = e + 1


def _envelope(
    line: tuple, exclude: int, lo: int, hi: int, qs: int, qe: int, w: float, cap: float,
    out_v: np.ndarray, out_l: np.ndarray, scratch: tuple,
) -> None:  # fmt: skip
    """Lower envelope of ``w (x - q)^2 + f(q)`` over sites ``lo..hi``, read at ``x = qs..qe``.

    ``f(q)`` is the site's best entry whose cell is not ``exclude`` (-2: no exclusion).
    """
    f1, m1, f2, m2 = line
    v, vf, vl, z = scratch  # the envelope's sites, their values and cells, where each starts
    k = -1
    for q in range(lo, hi + 1):
        fq, lq = (f1[q], m1[q]) if m1[q] != exclude else (f2[q], m2[q])
        if fq > cap:
            continue
        s = 0.0
        while k >= 0:  # drop parabolas the new one lies below from their start on
            p = v[k]
            s = ((fq + w * q * q) - (vf[k] + w * p * p)) / (2.0 * w * (q - p))
            if s > z[k]:
                break
            k -= 1
        k += 1
        v[k], vf[k], vl[k] = q, fq, lq
        z[k] = -np.inf if k == 0 else s
        z[k + 1] = np.inf
    j = 0
    for x in range(qs, qe + 1):
        if k < 0:
            out_v[x], out_l[x] = np.inf, -1
            continue
        while z[j + 1] < x:
            j += 1
        value = w * (x - v[j]) ** 2 + vf[j]
        out_v[x], out_l[x] = (value, vl[j]) if value <= cap else (np.inf, -1)


class UNetWeightMapd(MapTransform):
    """Write the U-Net border weight map of the instance labels in ``keys`` to ``weight_key``.

    Labels are channel-first with one channel, ``(1, H, W[, D])``; the weights come out the
    same way (float32; a MetaTensor with the label's metadata when the label is one). With
    several keys, ``weight_key`` is a suffix: ``"label" -> "label_weight"``.

    Args:
        keys: instance label keys (0 = background, one id per cell).
        weight_key: where to write the weights.
        spacing: pixel size per spatial axis. None: from the label's affine when it is a
            MetaTensor (e.g. after ``Spacingd``), else 1 (``sigma`` in pixels).
        w0, sigma, class_weights: as in ``unet_weight_map``.
        image_key: when this key is present, its spatial shape must match the label's.

    Example:
        >>> d = UNetWeightMapd("label")({"label": np.array([[[1, 1, 0, 2, 2]]])})
        >>> d["weight"].shape, d["weight"].dtype
        ((1, 1, 5), dtype('float32'))
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        weight_key: str = "weight",
        spacing: Sequence[float] | None = None,
        w0: float = 10.0,
        sigma: float = 5.0,
        class_weights: Sequence[float] | None = None,
        image_key: str | None = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.weight_key, self.image_key = weight_key, image_key
        self.spacing, self.w0, self.sigma, self.class_weights = spacing, w0, sigma, class_weights

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if len(label.shape) not in (3, 4) or label.shape[0] != 1:
                raise InputError(
                    f"UNetWeightMapd: {key!r} must be channel-first with one channel, (1, H, W[, D]); "
                    f"got shape {tuple(label.shape)}"
                )
            image = d.get(self.image_key) if self.image_key is not None else None
            if image is not None and tuple(image.shape[1:]) != tuple(label.shape[1:]):
                raise InputError(
                    f"UNetWeightMapd: {key!r} has spatial shape {tuple(label.shape[1:])} but "
                    f"{self.image_key!r} has {tuple(image.shape[1:])}: resample the label onto the image grid"
                )
            array = convert_to_numpy(label)
            weights = unet_weight_map(
                array[0], self._spacing(label), self.w0, self.sigma, self.class_weights
            )[None]
            if isinstance(label, MetaTensor):
                weights = MetaTensor(torch.from_numpy(weights), meta=dict(label.meta))
            elif isinstance(label, torch.Tensor):
                weights = torch.from_numpy(weights).to(label.device)
            d[self.weight_key if len(self.keys) == 1 else f"{key}_{self.weight_key}"] = weights
        return d

    def _spacing(self, label: Any) -> Sequence[float] | None:
        if self.spacing is not None or not isinstance(label, MetaTensor):
            return self.spacing
        return tuple(float(s) for s in affine_to_spacing(label.affine, r=len(label.shape) - 1))
