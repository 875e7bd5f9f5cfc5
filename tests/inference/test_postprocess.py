"""Per-label post-processing against MONAI, scipy and a whole-volume reference; phantoms by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent
from scipy import ndimage

from medseg.errors import InputError
from medseg.inference import PostprocessLabelsd, postprocess_labels


def _components_map(spatial_dims: int) -> np.ndarray:
    """Labels 1-3, each with parts of distinct, known sizes; some meet only by a corner or an edge."""
    lab = np.zeros((24, 20, 12)[:spatial_dims], np.uint8)
    lab[1:6, 1:6] = 1  # 25 pixels, the largest part of label 1
    lab[6:8, 6:8] = 1  # 4, meets the first part by a corner only
    lab[10:12, 1:3] = 1  # 4
    lab[1:4, 10:16] = 2  # 18
    lab[5:7, 10:12] = 2  # 4
    lab[8:9, 10:12] = 2  # 2
    lab[15:20, 2:6] = 3  # 20
    lab[12:14, 1:3] = 3  # 4, touching the third part of label 1
    lab[21:23, 14:19] = 3  # 10
    if spatial_dims == 3:
        lab[..., 8:] = 0  # the parts above are 8 slices thick
        lab[9:11, 12:14, 8:10] = 2  # meets [8, 10:12, 0:8] by a vertex only
        lab[18:20, 10:12, 9:11] = 2
    return lab


@pytest.mark.parametrize(("spatial_dims", "connectivity"), [(2, 1), (2, 2), (3, 1), (3, 2), (3, 3)])
def test_largest_component_matches_monai_per_label(spatial_dims, connectivity):
    lab = _components_map(spatial_dims)  # MONAI gets copies below: it writes into a numpy input
    for value in (1, 2, 3):
        ours = postprocess_labels(lab, {value: {"largest_component": True}}, connectivity=connectivity)
        monai = KeepLargestConnectedComponent(
            applied_labels=[value], independent=True, connectivity=connectivity
        )
        np.testing.assert_array_equal(ours, np.asarray(monai(lab[None].copy()))[0])
    ours = postprocess_labels(lab, {"*": {"largest_component": True}}, connectivity=connectivity)
    monai = KeepLargestConnectedComponent(
        applied_labels=[1, 2, 3], independent=True, connectivity=connectivity
    )
    np.testing.assert_array_equal(ours, np.asarray(monai(lab[None].copy()))[0])
    assert (ours != lab).any()  # the phantom does have parts to remove


def test_largest_component_connectivity_decides_diagonal_parts():
    lab = _components_map(2)
    face = postprocess_labels(lab, {1: {"largest_component": True}}, connectivity=1)
    full = postprocess_labels(lab, {1: {"largest_component": True}}, connectivity=2)
    assert (face == 1).sum() == 25 and (full == 1).sum() == 29  # 5x5 alone, or with the 2x2 on its corner


def _hollow_sphere(radius_out: float, radius_in: float, size: int = 21) -> np.ndarray:
    grid = np.indices((size,) * 3) - size // 2
    r = np.sqrt((grid**2).sum(0))
    return ((r <= radius_out) & (r > radius_in)).astype(np.uint8)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_fill_holes_of_hollow_sphere_equals_scipy(connectivity):
    lab = _hollow_sphere(8, 5) * 4
    lab[0, 0, :3] = 2  # another label elsewhere stays as it is
    out = postprocess_labels(lab, {"4": {"fill_holes": True}}, connectivity=connectivity)
    structure = ndimage.generate_binary_structure(3, connectivity)
    expected = np.where(ndimage.binary_fill_holes(lab == 4, structure), 4, lab)
    np.testing.assert_array_equal(out, expected)
    assert (out == 4).sum() > (lab == 4).sum()


@pytest.mark.parametrize("connectivity", [1, 2])
def test_fill_holes_of_ring_equals_scipy_and_diagonal_gap_follows_connectivity(connectivity):
    lab = np.zeros((12, 14), np.int16)
    lab[2:9, 2:9] = 1
    lab[3:8, 3:8] = 0  # a 5x5 hole
    lab[2:5, 10:13] = 3  # a 3x3 ring of label 3...
    lab[3, 11] = 0
    lab[4, 12] = 0  # ...whose centre reaches the outside only diagonally, through this corner
    out = postprocess_labels(
        lab, {1: {"fill_holes": True}, 3: {"fill_holes": True}}, connectivity=connectivity
    )
    structure = ndimage.generate_binary_structure(2, connectivity)
    expected = lab.copy()
    for value in (1, 3):
        expected[ndimage.binary_fill_holes(lab == value, structure) & (lab == 0)] = value
    np.testing.assert_array_equal(out, expected)
    assert (out[3:8, 3:8] == 1).all()
    assert out[3, 11] == (3 if connectivity == 1 else 0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fill_holes_never_overwrites_another_label(spatial_dims):
    lab = np.zeros((11,) * spatial_dims, np.uint8)
    lab[(slice(1, 10),) * spatial_dims] = 1
    lab[(slice(2, 9),) * spatial_dims] = 0  # a hole of 7^d voxels
    lab[(slice(4, 7),) * spatial_dims] = 2  # holding a block of label 2 (3^d voxels)...
    lab[(slice(5, 6),) * spatial_dims] = 0  # ...with a pocket of its own
    out = postprocess_labels(lab, {1: {"fill_holes": True}})
    assert (out == 2).sum() == 3**spatial_dims - 1  # label 2 untouched
    assert (out == 1).sum() == 9**spatial_dims - 3**spatial_dims  # the hole around label 2 is filled
    assert out[(5,) * spatial_dims] == 0  # the pocket is label 2's hole, not label 1's
    both = postprocess_labels(lab, {1: {"fill_holes": True}, 2: {"fill_holes": True}})
    assert both[(5,) * spatial_dims] == 2 and (both == 2).sum() == 3**spatial_dims


def test_small_components_by_voxel_count():
    lab = np.zeros((20, 20), np.uint8)
    lab[1:4, 1] = 5  # 3 voxels
    lab[1:6, 5] = 5  # 5 voxels
    lab[1:9, 9] = 5  # 8 voxels
    lab[12:14, 12] = 6  # 2 voxels of another label: no rule, kept
    out = postprocess_labels(lab, {5: {"min_size_voxels": 5}})
    assert (out[:, 1] == 0).all() and (out[1:6, 5] == 5).all() and (out[1:9, 9] == 5).all()
    assert (out == 6).sum() == 2


@pytest.mark.parametrize(("min_size_ml", "kept"), [(0.15, True), (0.25, False)])
def test_small_components_in_ml_with_anisotropic_spacing(min_size_ml, kept):
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[1:3, 1:6, 1] = 1  # 10 voxels of 2 x 2 x 5 mm = 0.2 mL
    lab[8:14, 8:14, 8:14] = 1  # 216 voxels = 4.32 mL
    out = postprocess_labels(lab, {1: {"min_size_ml": min_size_ml}}, spacing=(2.0, 2.0, 5.0))
    assert (out == 1).sum() == 216 + 10 * kept


def test_min_size_ml_needs_spacing():
    lab = np.ones((4, 4, 4), np.uint8)
    with pytest.raises(InputError, match="min_size_ml"):
        postprocess_labels(lab, {1: {"min_size_ml": 0.1}})


def test_default_rule_applies_to_labels_without_their_own():
    lab = _components_map(2)
    for default in ("*", "all"):
        out = postprocess_labels(lab, {default: {"largest_component": True}, "2": {}})
        np.testing.assert_array_equal(out == 2, lab == 2)  # its own (empty) rule wins
        for value in (1, 3):
            expected = postprocess_labels(lab, {value: {"largest_component": True}})
            np.testing.assert_array_equal(out == value, expected == value)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64])
def test_input_not_modified_and_dtype_kept(dtype):
    lab = _components_map(3).astype(dtype)
    before = lab.copy()
    out = postprocess_labels(
        lab, {"*": {"largest_component": True, "fill_holes": True, "min_size_voxels": 5}}
    )
    np.testing.assert_array_equal(lab, before)
    assert out.dtype == dtype and out.shape == lab.shape and not np.shares_memory(out, lab)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_leading_channel_is_kept(spatial_dims):
    lab = _components_map(spatial_dims)
    rules = {"*": {"largest_component": True, "fill_holes": True}}
    out = postprocess_labels(lab[None], rules)
    assert out.shape == (1, *lab.shape)
    np.testing.assert_array_equal(out[0], postprocess_labels(lab, rules))


def test_dict_transform_keeps_metatensor_meta_and_uses_its_spacing():
    lab = np.zeros((16, 16, 16), np.float32)
    lab[1:3, 1:6, 1] = 1  # 0.2 mL at 2 x 2 x 5 mm
    lab[8:14, 8:14, 8:14] = 1
    affine = torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.as_tensor(lab[None]), affine=affine, meta={"filename_or_obj": "case_7.nii.gz"})
    out = PostprocessLabelsd("pred", {1: {"min_size_ml": 0.15}})({"pred": image, "other": 3})
    assert isinstance(out["pred"], MetaTensor) and out["pred"].dtype == torch.float32
    assert out["pred"].meta["filename_or_obj"] == "case_7.nii.gz"
    torch.testing.assert_close(out["pred"].affine, affine)
    assert out["pred"].sum() == 226 and out["other"] == 3
    out = PostprocessLabelsd("pred", {1: {"min_size_ml": 0.25}})({"pred": image})
    assert out["pred"].sum() == 216
    assert image.sum() == 226  # input untouched


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dict_transform_on_plain_tensor_and_missing_key(spatial_dims):
    lab = _components_map(spatial_dims)
    rules = {"*": {"largest_component": True}}
    transform = PostprocessLabelsd(["pred", "absent"], rules, allow_missing_keys=True)
    out = transform({"pred": torch.as_tensor(lab[None].astype(np.int64))})["pred"]
    assert type(out) is torch.Tensor and out.dtype == torch.int64
    np.testing.assert_array_equal(out.numpy()[0], postprocess_labels(lab, rules))


def test_dict_transform_refuses_probabilities_and_one_hot():
    with pytest.raises(InputError, match="argmax"):
        PostprocessLabelsd("pred", {})({"pred": torch.full((1, 4, 4), 0.5)})
    with pytest.raises(InputError, match="argmax"):
        PostprocessLabelsd("pred", {})({"pred": torch.zeros((3, 4, 4, 4))})


@pytest.mark.parametrize(
    ("rules", "bad"),
    [
        ({1: {"largest": True}}, "'largest'"),
        ({"2": {"min_size_ml": -0.5}}, "'min_size_ml'"),
        ({"*": {"min_size_voxels": -3}}, "'min_size_voxels'"),
        ({"liver": {"fill_holes": True}}, "'liver'"),
        ({1.5: {"fill_holes": True}}, "1.5"),
        ({"0": {"fill_holes": True}}, "'0'"),
        ({1: {"fill_holes": "yes"}}, "'fill_holes'"),
        ({3: True}, "3"),
        ({1: {}, "1": {}}, "'1'"),
    ],
)
def test_bad_rules_name_the_key(rules, bad):
    with pytest.raises(InputError, match=bad) as info:
        postprocess_labels(np.zeros((4, 4), np.uint8), rules)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=bad):
        PostprocessLabelsd("pred", rules)  # refused when the bundle config is parsed


def test_bad_maps_are_refused():
    with pytest.raises(InputError, match="integer"):
        postprocess_labels(np.zeros((4, 4), np.float32), {})
    with pytest.raises(InputError, match="connectivity"):
        postprocess_labels(np.zeros((4, 4), np.uint8), {}, connectivity=3)
    with pytest.raises(InputError, match="spacing"):
        postprocess_labels(np.zeros((4, 4, 4), np.uint8), {}, spacing=(1.0, 1.0))


def _reference(lab: np.ndarray, rules: dict, spacing, connectivity: int) -> np.ndarray:
    """The same rules done the plain way: whole volume, one label and one component at a time."""
    out = lab.copy()
    structure = ndimage.generate_binary_structure(lab.ndim, connectivity)
    voxel_ml = np.prod(spacing) / 1000.0
    present = [v for v in np.unique(lab) if v > 0]
    rule_of = {v: rules.get(str(v), rules.get("*", {})) for v in present}
    for value in present:
        rule = rule_of[value]
        parts, n = ndimage.label(lab == value, structure)
        sizes = [int((parts == i).sum()) for i in range(1, n + 1)]
        kept = [
            i
            for i, size in enumerate(sizes, 1)
            if size >= rule.get("min_size_voxels", 0) and size * voxel_ml >= rule.get("min_size_ml", 0)
        ]
        if rule.get("largest_component") and kept:
            kept = [max(kept, key=lambda i: sizes[i - 1])]
        out[(parts > 0) & ~np.isin(parts, kept)] = 0
    for value in present:
        if not rule_of[value].get("fill_holes"):
            continue
        mask = out == value
        holes, n = ndimage.label(ndimage.binary_fill_holes(mask, structure) & (out == 0), structure)
        for i in range(1, n + 1):
            hole = holes == i
            if (ndimage.binary_dilation(hole, structure) & mask).any():
                out[hole] = value
    return out


def _blob_map(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smoothed noise, thresholded: labels 1-3 in large regions with background pockets (holes) and
    stray islands; label 4 only in a corner, so its bounding box is smaller than the map."""
    rng = np.random.default_rng(seed)
    body, which, specks = (ndimage.gaussian_filter(rng.standard_normal(shape), s) for s in (4.0, 3.0, 1.0))
    outside = body < np.quantile(body, 0.3)
    lab = np.digitize(which, np.quantile(which, [0.33, 0.66])) + 1
    lab[outside | (specks > np.quantile(specks, 0.96))] = 0
    corner = tuple(slice(0, s // 3) for s in shape)
    lab[corner][(lab[corner] > 0) & (which[corner] > np.quantile(which, 0.7))] = 4
    lab[outside & (specks < np.quantile(specks, 0.03))] = 3
    return lab.astype(np.uint8)


@pytest.mark.parametrize(("shape", "spacing"), [((96, 80), (0.7, 0.9)), ((40, 36, 32), (1.5, 1.0, 2.5))])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_all_options_match_whole_volume_reference_on_random_blobs(shape, spacing, connectivity):
    lab = _blob_map(shape, seed=len(shape) * 10 + connectivity)
    voxel_ml = np.prod(spacing) / 1000.0
    rules = {
        "1": {"min_size_voxels": 6, "fill_holes": True},
        "2": {"largest_component": True, "fill_holes": True},
        "4": {"min_size_ml": 4.5 * voxel_ml, "largest_component": True, "fill_holes": True},
        "*": {"min_size_ml": 10.5 * voxel_ml, "fill_holes": True},
    }
    out = postprocess_labels(lab, rules, spacing=spacing, connectivity=connectivity)
    expected = _reference(lab, rules, spacing, connectivity)
    np.testing.assert_array_equal(out, expected)
    removed, filled = (lab > 0) & (out == 0), (lab == 0) & (out > 0)
    assert removed.sum() > 0 and filled.sum() > 0  # the map exercises both kinds of change
