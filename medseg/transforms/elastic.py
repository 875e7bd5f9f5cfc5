"""Elastic deformation as in the U-Net paper (Ronneberger et al., MICCAI 2015, section 3.1).

"We generate smooth deformations using random displacement vectors on a coarse 3 by 3 grid. The
displacements are sampled from a Gaussian distribution with 10 pixels standard deviation. Per-pixel
displacements are then computed using bicubic interpolation."

Three steps, each a plain function, then one MONAI dictionary transform that samples the control
displacements and applies one field to every key (image, labels, weight map):

1. ``coarse_displacements``: ``(spatial_dims, *grid)`` displacements ~ N(0, sigma), in voxels.
2. ``dense_field``: cubic B-spline interpolation of those to every voxel, ``(spatial_dims, *shape)``.
3. ``elastic_deform``: ``out[x] = image[x + field[x]]`` per channel (scipy's ``map_coordinates``).

The control grid spans the image: the first and last control points of each axis sit on the
image's first and last voxel, the others evenly in between (``ndimage.zoom(grid_mode=False)``'s
grid). MONAI's ``Rand2DElastic``/``Rand3DElastic`` are the alternatives; see ``docs/elastic.md``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, ensure_tuple_rep
from scipy import ndimage

Rng = np.random.Generator | np.random.RandomState


def coarse_displacements(
    rng: Rng | int | None,
    grid: int | Sequence[int] = (3, 3),
    sigma: float | Sequence[float] = 10.0,
    spatial_dims: int | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Random displacements of the control points, ``(spatial_dims, *grid)``, in voxels.

    Args:
        rng: a NumPy ``Generator`` or ``RandomState`` (MONAI's ``self.R``), or a seed.
        grid: control points per axis (the paper: 3x3); an int means the same on every axis.
        sigma: standard deviation of each displacement component (the paper: 10 pixels), per axis
            or one for all; in voxels, or in the units of ``spacing`` when that is given.
        spatial_dims: 2 or 3; needed only when ``grid`` is an int.
        spacing: voxel size per axis (e.g. mm). Given, ``sigma`` is physical, so a deformation
            of 3 mm stays 3 mm on anisotropic voxels; the result is still in voxels (divided by
            ``spacing``) because ``dense_field`` and ``elastic_deform`` work on the voxel grid.

    Example:
        >>> coarse_displacements(0, grid=3, spatial_dims=3).shape
        (3, 3, 3, 3)
    """
    if spatial_dims is None:
        if isinstance(grid, int):
            raise ValueError("coarse_displacements: pass spatial_dims when grid is an int")
        spatial_dims = len(grid)
    grid = ensure_tuple_rep(grid, spatial_dims)
    scale = np.asarray(ensure_tuple_rep(sigma, spatial_dims), np.float64)
    if spacing is not None:
        scale = scale / np.asarray(ensure_tuple_rep(spacing, spatial_dims), np.float64)
    if not isinstance(rng, np.random.Generator | np.random.RandomState):
        rng = np.random.default_rng(rng)
    unit = rng.normal(0.0, 1.0, size=(spatial_dims, *grid))
    return unit * scale.reshape(-1, *[1] * spatial_dims)


def _interpolation_matrix(num_points: int, size: int, order: int) -> np.ndarray:
    """``(size, num_points)`` weights: row ``i`` interpolates the control values at voxel ``i``."""
    # Control point k sits at voxel k * (size - 1) / (num_points - 1). Interpolating each unit
    # vector gives the weights of that point; "mirror" (zero slope at the ends) is also the
    # boundary of scipy's spline_filter default, so the result equals ndimage.zoom's.
    positions = np.linspace(0.0, num_points - 1.0, size)[None]
    basis = np.eye(num_points)
    return np.stack(
        [ndimage.map_coordinates(unit, positions, order=order, mode="mirror") for unit in basis], axis=1
    )


def dense_field(coarse: np.ndarray, shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Interpolate control-point displacements to every voxel of ``shape``: ``(spatial_dims, *shape)``.

    Cubic B-spline interpolation (``order=3``), so the field is C2 and passes through the control
    displacements at the control points. It equals ``ndimage.zoom(coarse[a], ..., order=3,
    mode="mirror", grid_mode=False)`` per component, but B-spline interpolation of a grid is
    separable, so one small matrix per axis does it in O(voxels x control points) instead of
    O(voxels x 4**spatial_dims): 0.06 s instead of zoom's 10 s for 64x256x256 on 2 CPU cores.
    (``RegularGridInterpolator``'s cubic method needs 4 points per axis: no 3x3 grid.)

    Args:
        coarse: ``(spatial_dims, *grid)`` displacements in voxels (``coarse_displacements``).
        shape: spatial shape of the image.
        order: spline order, 3 as in the paper (1 gives a piecewise-linear, kinked field).

    Returns:
        float32 displacements in voxels, component ``a`` along array axis ``a``.

    Example:
        >>> dense_field(np.ones((2, 3, 3)), (5, 4))[:, 2, 1]
        array([1., 1.], dtype=float32)
    """
    field = np.asarray(coarse, np.float64)
    spatial_dims = field.shape[0]
    if field.ndim != spatial_dims + 1 or len(shape) != spatial_dims:
        raise ValueError(
            f"dense_field: coarse must be (spatial_dims, *grid) and shape have spatial_dims entries; "
            f"got coarse {field.shape} and shape {tuple(shape)}"
        )
    # Axis by axis, the last one last: that step makes the full-size array and is a plain,
    # contiguous matrix product.
    for axis, size in enumerate(shape):
        weights = _interpolation_matrix(field.shape[axis + 1], int(size), order)
        field = np.moveaxis(np.moveaxis(field, axis + 1, -1) @ weights.T, -1, axis + 1)
    return np.ascontiguousarray(field, dtype=np.float32)


def _dtypes(dtype: np.dtype, order: int) -> tuple[np.dtype, np.dtype]:
    """(dtype map_coordinates computes in, dtype returned) for an input dtype and order."""
    if order > 0 and not np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32), np.dtype(np.float32)  # interpolated integers are not integers
    if dtype == np.bool_:
        return np.dtype(np.uint8), dtype  # ndimage has no bool or float16 kernels
    if dtype == np.float16:
        return np.dtype(np.float32), dtype
    return dtype, dtype


def elastic_deform(
    image: np.ndarray,
    field: np.ndarray,
    order: int = 1,
    mode: str = "mirror",
    cval: float = 0.0,
) -> np.ndarray:
    """Resample each channel of a ``(C, *spatial)`` array at ``x + field[x]``.

    ``out[c][x] = image[c][x + field[:, x]]`` (a backward, "pull" mapping, as MONAI's grids): a
    constant field ``d`` moves the content by ``-d``. One field applied to several arrays
    deforms them alike, so image, labels and weight map stay aligned.

    Args:
        image: ``(C, *spatial)`` array; not modified.
        field: ``(spatial_dims, *spatial)`` displacements in voxels (``dense_field``).
        order: spline order: 0 (nearest) for labels, which keeps every value exactly (instance
            ids stay ids, none is invented); 1 (linear) for images and weight maps; 3 (cubic) for
            images when sharpness matters (about 4 times slower in 3D).
        mode: how points outside the array are read, scipy's names (``"mirror"``, ``"reflect"``,
            ``"nearest"``, ``"constant"``, ``"grid-constant"``, ...). Not MONAI's ``mode``,
            which names the interpolation: here that is ``order``.
        cval: value outside the array for the constant modes.

    Returns:
        The deformed array, same shape; same dtype, except integers with ``order > 0`` give
        float32.

    Example:
        >>> image = np.arange(16.0).reshape(1, 4, 4)
        >>> field = np.zeros((2, 4, 4)); field[1] = 1.0  # read one column to the right
        >>> elastic_deform(image, field)[0, 0]
        array([1., 2., 3., 2.])
    """
    image = np.asarray(image)
    spatial = image.shape[1:]
    if field.shape != (len(spatial), *spatial):
        raise ValueError(
            f"elastic_deform: field must be (spatial_dims, *spatial) = {(len(spatial), *spatial)} "
            f"for an image of shape {image.shape}; got {field.shape}"
        )
    # Sample points in float64 (map_coordinates converts to it anyway): integer shifts stay exact.
    points = field.astype(np.float64)
    for axis, size in enumerate(spatial):
        points[axis] += np.arange(size).reshape([-1 if a == axis else 1 for a in range(len(spatial))])
    work, result = _dtypes(image.dtype, order)
    out = np.empty(image.shape, work)
    for channel, values in zip(out, image, strict=True):
        ndimage.map_coordinates(
            values.astype(work, copy=False), points, output=channel, order=order, mode=mode, cval=cval
        )
    return out.astype(result, copy=False)


def _deform_like(
    img: np.ndarray | torch.Tensor, field: np.ndarray, order: int, mode: str, cval: float
) -> np.ndarray | torch.Tensor:
    """``elastic_deform`` returning the input's type: a MetaTensor keeps its meta, a tensor its device."""
    if not isinstance(img, torch.Tensor):
        return elastic_deform(img, field, order, mode, cval)
    out = elastic_deform(img.detach().cpu().numpy(), field, order, mode, cval)
    return convert_to_dst_type(out, img, dtype=out.dtype)[0]


class RandElasticDeformd(RandomizableTransform, MapTransform):
    """With probability ``prob``, deform all ``keys`` by one random U-Net-paper elastic field.

    The control displacements are drawn from ``self.R`` (seed it with ``set_random_state``), then
    every key goes through ``elastic_deform`` with the same dense field and its own ``order``,
    ``mode`` and ``cval``. The arrays' spatial dimensionality (2D or 3D) is read from the data.

    Args:
        keys: keys to deform; all must share the spatial shape.
        grid: control points per axis (the paper: 3).
        sigma: displacement standard deviation (the paper: 10 pixels), in voxels or, with
            ``spacing``, in its units.
        order: spline order per key or one for all, e.g. ``(1, 0, 1)`` for image, label,
            weight map: nearest for labels keeps instance ids exact.
        mode: scipy boundary mode per key or one for all (see ``elastic_deform``).
        cval: outside value per key or one for all, for the constant modes.
        spacing: voxel size of the arrays this transform sees (e.g. the ``pixdim`` of a
            ``Spacingd`` before it), making ``sigma`` physical.
        prob: probability to deform; default 1 as in the paper, where every training tile is
            deformed.

    Attributes:
        coarse: the last control displacements drawn (voxels), or None before the first
            deformation.

    Example:
        >>> t = RandElasticDeformd(["image", "label"], order=(1, 0))
        >>> out = t.set_random_state(0)({"image": np.zeros((1, 32, 32)), "label": np.zeros((1, 32, 32), int)})
        >>> out["label"].dtype == int, t.coarse.shape
        (True, (2, 3, 3))
    """

    def __init__(
        self,
        keys: KeysCollection,
        grid: int | Sequence[int] = 3,
        sigma: float | Sequence[float] = 10.0,
        order: int | Sequence[int] = 1,
        mode: str | Sequence[str] = "mirror",
        cval: float | Sequence[float] = 0.0,
        spacing: Sequence[float] | None = None,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.grid = grid
        self.sigma = sigma
        self.spacing = spacing
        self.order = ensure_tuple_rep(order, len(self.keys))
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.cval = ensure_tuple_rep(cval, len(self.keys))
        self.coarse: np.ndarray | None = None

    def randomize(self, spatial_dims: int) -> None:
        super().randomize(None)
        if self._do_transform:
            self.coarse = coarse_displacements(self.R, self.grid, self.sigma, spatial_dims, self.spacing)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        shape = tuple(d[keys[0]].shape[1:])
        self.randomize(len(shape))
        if not self._do_transform:
            return d
        if any(tuple(d[key].shape[1:]) != shape for key in keys):
            raise ValueError(
                "RandElasticDeformd: all keys must share one spatial shape; got "
                + ", ".join(f"{key}: {tuple(d[key].shape)}" for key in keys)
            )
        field = dense_field(self.coarse, shape)
        for key, order, mode, cval in self.key_iterator(d, self.order, self.mode, self.cval):
            d[key] = _deform_like(d[key], field, order, mode, cval)
        return d
