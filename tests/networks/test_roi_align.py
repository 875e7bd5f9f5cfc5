"""RoIAlign in 2D/3D: against a slow by-hand reference of torchvision's CPU kernel, against
torchvision itself where it loads, known geometry for the axis convention, gradients, dtypes."""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
import torch

from medseg.networks.roi_align import roi_align

# the module, not the function that medseg.networks exports under the same name
module = importlib.import_module("medseg.networks.roi_align")


def interpolate(feature: np.ndarray, point: list[float]) -> np.ndarray:
    """Bi/trilinear value of ``feature`` (C, *spatial) at ``point`` (voxel-centre units), by the rules
    of torchvision's ``bilinear_interpolate``: outside [-1, size] -> 0, else clamp to [0, size - 1]."""
    lows, highs, fractions = [], [], []
    for at, size in zip(point, feature.shape[1:], strict=True):
        if at < -1.0 or at > size:
            return np.zeros(feature.shape[0])
        at = max(at, 0.0)
        low = int(at)
        if low >= size - 1:
            low = high = size - 1
            at = float(low)
        else:
            high = low + 1
        lows.append(low)
        highs.append(high)
        fractions.append(at - low)
    value = np.zeros(feature.shape[0])
    for corner in itertools.product((0, 1), repeat=len(point)):
        weight, index = 1.0, []
        for axis, upper in enumerate(corner):
            weight *= fractions[axis] if upper else 1.0 - fractions[axis]
            index.append(highs[axis] if upper else lows[axis])
        value += weight * feature[(slice(None), *index)]
    return value


def reference(features, rois, output_size, spatial_scale, sampling_ratio, aligned=True) -> np.ndarray:
    """One RoI, one bin, one sample at a time, in float64 (torchvision's roi_align_forward_kernel_impl)."""
    features, rois = np.asarray(features, np.float64), np.asarray(rois, np.float64)
    dims = features.ndim - 2
    out = np.zeros((len(rois), features.shape[1], *output_size))
    offset = 0.5 if aligned else 0.0
    for k, roi in enumerate(rois):
        start = [roi[1 + a] * spatial_scale - offset for a in range(dims)]
        end = [roi[1 + dims + a] * spatial_scale - offset for a in range(dims)]
        extent = [e - s if aligned else max(e - s, 1.0) for s, e in zip(start, end, strict=True)]
        bins = [e / p for e, p in zip(extent, output_size, strict=True)]
        grid = [
            sampling_ratio if sampling_ratio > 0 else math.ceil(e / p)
            for e, p in zip(extent, output_size, strict=True)
        ]
        count = max(math.prod(grid), 1)
        for bin_index in np.ndindex(*output_size):
            total = np.zeros(features.shape[1])
            for sample in itertools.product(*(range(max(g, 0)) for g in grid)):
                point = [
                    start[a] + bin_index[a] * bins[a] + (sample[a] + 0.5) * bins[a] / grid[a]
                    for a in range(dims)
                ]
                total += interpolate(features[int(roi[0])], point)
            out[(k, slice(None), *bin_index)] = total / count
    return out


def random_rois(rng, count, batch, image_shape) -> torch.Tensor:
    """Boxes in image units: some tiny (< 1 feature voxel), some partly or wholly outside the map."""
    shape = np.asarray(image_shape, float)
    centre = rng.uniform(-0.2, 1.2, (count, len(shape))) * shape
    extent = np.exp(rng.uniform(np.log(0.2), np.log(0.8 * shape.max()), (count, len(shape))))
    rows = np.concatenate([rng.integers(0, batch, (count, 1)), centre - extent / 2, centre + extent / 2], 1)
    return torch.tensor(rows, dtype=torch.float32)


CASES = [  # spatial_dims, feature shape, output_size, spatial_scale, sampling_ratio, aligned
    (2, (9, 11), (3, 4), 1.0, 2, True),
    (2, (9, 11), (4, 3), 0.25, 2, True),
    (2, (7, 10), (2, 5), 0.25, 0, True),
    (2, (8, 6), (3, 2), 1.0, 1, False),
    (3, (6, 7, 5), (3, 2, 4), 1.0, 2, True),
    (3, (6, 5, 7), (2, 3, 2), 0.25, 2, True),
    (3, (5, 6, 4), (2, 2, 3), 0.25, 0, True),
    (3, (5, 4, 6), (2, 3, 1), 1.0, 2, False),
]


@pytest.mark.parametrize("dims, shape, output_size, scale, ratio, aligned", CASES)
def test_matches_the_reference(dims, shape, output_size, scale, ratio, aligned):
    rng = np.random.default_rng(sum(shape) + dims + ratio)
    features = torch.tensor(rng.normal(size=(3, 2, *shape)), dtype=torch.float32)
    rois = random_rois(rng, 14 if dims == 2 else 8, 3, [s / scale for s in shape])
    expected = reference(features.numpy(), rois.numpy(), output_size, scale, ratio, aligned)
    actual = roi_align(features, rois, output_size, scale, ratio, aligned)
    assert actual.shape == (len(rois), 2, *output_size) and actual.dtype == torch.float32
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_chunks_and_groups_do_not_change_the_result(dims, monkeypatch):
    rng = np.random.default_rng(dims)
    features = torch.randn(2, 3, *(6,) * dims)
    rois = random_rois(rng, 20, 2, (12,) * dims)
    calls, embedding_bag = [], module.F.embedding_bag
    monkeypatch.setattr(module.F, "embedding_bag", lambda *a, **k: calls.append(1) or embedding_bag(*a, **k))
    whole = roi_align(features, rois, 2, 0.5, sampling_ratio=0)
    groups = len(calls)
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 1)  # one RoI per chunk
    torch.testing.assert_close(roi_align(features, rois, 2, 0.5, sampling_ratio=0), whole)
    assert 1 < groups < len(calls) - groups


def torchvision_ops():
    """torchvision's compiled roi_align, or skip. Without its compiled ops torchvision falls back to
    a pure-Python ``_roi_align`` that lacks the kernels' "outside [-1, size] is zero" rule."""
    try:
        import torchvision
        from torchvision.extension import _has_ops

        assert _has_ops()
        torchvision.ops.roi_align(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), 1)
    except Exception:  # ImportError, or RuntimeError "operator torchvision::nms does not exist"
        pytest.skip("torchvision not installed / its compiled ops do not load here")
    return torchvision.ops


@pytest.mark.parametrize("scale, ratio", [(1.0, 2), (0.25, 2), (0.5, 0)])
def test_matches_torchvision_2d(scale, ratio):
    """torchvision's x indexes the last axis, ours the first: on the transposed map, torchvision's
    (x, y) are our (first, second) coordinates and its output is (bins along y, bins along x)."""
    ops = torchvision_ops()
    rng = np.random.default_rng(7)
    features = torch.tensor(rng.normal(size=(2, 3, 13, 9)), dtype=torch.float32)
    rois = random_rois(rng, 30, 2, (13 / scale, 9 / scale))
    theirs = ops.roi_align(features.transpose(-1, -2), rois, (5, 3), scale, ratio, aligned=True)
    ours = roi_align(features, rois, (3, 5), scale, ratio)
    torch.testing.assert_close(ours, theirs.transpose(-1, -2), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_axis_convention_with_known_geometry(dims):
    """A map equal to its first-axis index: each bin reads its centre's first coordinate. The box
    [2, 10) spans voxels 2..9, so 4 bins hold voxels (2, 3), (4, 5), ... with centres 2.5, 4.5, ..."""
    shape = (16, 12, 10)[:dims]
    index = torch.arange(shape[0], dtype=torch.float32).view(1, 1, -1, *(1,) * (dims - 1))
    features = torch.cat([index.expand(1, 1, *shape), torch.zeros(1, 1, *shape)], dim=1)
    box = [2.0, 4.0, 1.0][:dims] + [10.0, 8.0, 9.0][:dims]
    out = roi_align(features, torch.tensor([[0.0, *box]]), (4,) + (2,) * (dims - 1))
    expected = torch.tensor([2.5, 4.5, 6.5, 8.5]).view(4, *(1,) * (dims - 1)).expand(4, *(2,) * (dims - 1))
    torch.testing.assert_close(out[0, 0], expected)
    assert not out[0, 1].any()
    # image units at half the map's resolution: the same voxels are the box [4, 20) in the image
    scaled = roi_align(features, torch.tensor([[0.0, *(2 * b for b in box)]]), out.shape[2:], 0.5)
    torch.testing.assert_close(scaled, out)


def test_known_values_at_the_border():
    """Samples in [-1, 0] and [size - 1, size] read the border voxel, beyond them zero; a
    sub-voxel box interpolates. One sample per box, at its centre less 0.5."""
    features = torch.arange(1.0, 6.0).view(1, 1, 5, 1)  # voxel i holds i + 1
    first_axis = [(-0.5, 0.5), (-1.0, 0.0), (-2.0, -1.0), (1.5, 2.0), (4.6, 5.4), (5.0, 6.0), (5.8, 6.2)]
    rois = torch.tensor([[0, a, 0, b, 1] for a, b in first_axis])
    out = roi_align(features, rois, 1, sampling_ratio=1).flatten()
    # sample points -0.5, -1 (still inside), -2, 1.25, 4.5, 5 (still inside), 5.5
    torch.testing.assert_close(out, torch.tensor([1.0, 1.0, 0.0, 2.25, 5.0, 5.0, 0.0]))


def test_gradcheck_3d():
    rng = np.random.default_rng(3)
    features = torch.tensor(rng.normal(size=(2, 2, 4, 5, 3)), requires_grad=True)
    rois = random_rois(rng, 4, 2, (4, 5, 3)).double()
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, (2, 2, 1), 1.0, 2), (features,))
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, 0.5, 0), (features,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dims", [2, 3])
def test_dtypes(dtype, dims):
    rng = np.random.default_rng(5)
    features = torch.randn(1, 4, *(8,) * dims).to(dtype)
    rois = random_rois(rng, 6, 1, (8,) * dims)
    out = roi_align(features, rois, 3)
    assert out.dtype == dtype and out.shape == (6, 4, 3, 3, 3)[: 2 + dims]
    expected = roi_align(features.float(), rois, 3).to(dtype)
    torch.testing.assert_close(out, expected, atol=0 if dtype == torch.float64 else 1e-2, rtol=1e-3)


def test_empty_and_invalid_input():
    features = torch.randn(2, 3, 5, 6, 7)
    assert roi_align(features, torch.zeros(0, 7), (2, 3, 4)).shape == (0, 3, 2, 3, 4)
    with pytest.raises(ValueError, match="rois must be"):
        roi_align(features, torch.zeros(3, 5), 2)
    with pytest.raises(ValueError, match="spatial dims"):
        roi_align(torch.zeros(1, 1, 5), torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(features, torch.zeros(1, 7), (2, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dims", [2, 3])
def test_cuda_matches_cpu(dims, dtype):
    rng = np.random.default_rng(11)
    features = torch.randn(2, 5, *(10,) * dims, dtype=torch.float32).to(dtype)
    rois = random_rois(rng, 40, 2, (40,) * dims)
    for ratio in (2, 0):
        cpu = roi_align(features, rois, 4, 0.25, ratio)
        cuda = roi_align(features.cuda(), rois.cuda(), 4, 0.25, ratio)
        assert cuda.device.type == "cuda" and cuda.dtype == dtype
        tolerance = 1e-5 if dtype == torch.float32 else 1e-2
        torch.testing.assert_close(cuda.cpu(), cpu, atol=tolerance, rtol=tolerance)
