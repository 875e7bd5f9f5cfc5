"""DICOM SEG of overlapping regions (BraTS-like): one segment per non-empty region, decoded back.

The regions are nested ellipsoids (whole tumour ⊃ tumour core ⊃ enhancing) built on the grid the
synthetic series was *written* with (known LPS affine). The SEG is decoded independently of
medseg, per segment so that overlaps survive: by pydicom (each frame placed by its
PlanePosition through the known affine) and by highdicom (frames per source instance, and its
volume placed through its own affine). dciodvfy checks the object.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_refs import dciodvfy_errors, decode_segments, oblique_affine

from medseg.data.synthetic import write_dicom_series
from medseg.errors import GeometryError
from medseg.io import find_series, read_image
from medseg.io.dicom_seg import write_seg, write_seg_regions

SHAPE = (24, 20, 8)
# Region r is named NAMES[r + 1]; "Edema" (region 2) stays empty and must be left out.
NAMES = {1: "Tumor core", 2: "Whole tumor", 3: "Edema", 4: "Enhancing tumor"}
PRESENT = ["Tumor core", "Whole tumor", "Enhancing tumor"]
ATOL = 1e-3  # positions are written as 10-digit decimal strings


def _ellipsoid(centre, radii) -> np.ndarray:
    ijk = np.indices(SHAPE, dtype=float)
    return sum(((ijk[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) <= 1


def phantom_regions() -> np.ndarray:
    """``(4, *SHAPE)`` bool: core, whole (⊃ core), empty edema, enhancing rim (⊂ core).

    Off-centre and of different radii along each axis, so that a flipped or transposed decode
    cannot match.
    """
    whole = _ellipsoid((11, 9, 4), (8, 6, 3.2))
    core = _ellipsoid((12, 10, 4), (5, 4, 2.2))
    enhancing = core & ~_ellipsoid((12, 10, 4), (3, 2, 1.1))
    return np.stack([core, whole, np.zeros(SHAPE, bool), enhancing])


AFFINES = {
    "axial": np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1.0]]),
    # Slices written against their normal: medseg reads them in the other order along k.
    "reversed": np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 20], [0, 0, -2.5, -30], [0, 0, 0, 1.0]]),
    "oblique": oblique_affine(),
}


def _source(tmp_path, affine):
    """Write an empty series with ``affine``; its files, medseg's geometry and series, and
    whether medseg's grid runs along k against the written one."""
    files = write_dicom_series(np.zeros(SHAPE, np.int16), affine, tmp_path / "ct")
    _, geometry = read_image(tmp_path / "ct")
    flipped = bool(np.dot(geometry.lps_affine()[:3, 2], affine[:3, 2]) < 0)
    return files, geometry, find_series(tmp_path / "ct")[0], flipped


def volume_on_grid(volume: hd.Volume, lps_affine) -> np.ndarray:
    """highdicom's ``(slices, rows, cols, segments)`` volume placed on ``(SHAPE, lps_affine)``:
    ``(segments, *SHAPE)``; every one of its voxels must land on a grid voxel."""
    spatial = volume.spatial_shape
    index = np.indices(spatial).reshape(3, -1)
    to_grid = np.linalg.inv(lps_affine) @ volume.affine
    ijk = to_grid[:3, :3] @ index + to_grid[:3, 3:]
    np.testing.assert_allclose(ijk, np.round(ijk), atol=ATOL)
    ijk = np.round(ijk).astype(int)
    assert ijk.min() >= 0 and np.all(ijk < np.reshape(SHAPE, (3, 1)))
    array = volume.array.reshape(-1, volume.array.shape[-1])
    out = np.zeros((array.shape[1], *SHAPE), bool)
    out[:, ijk[0], ijk[1], ijk[2]] = array.T > 0
    return out


def test_phantom_regions_overlap_as_brats():
    core, whole, edema, enhancing = phantom_regions()
    assert enhancing.any() and not edema.any()
    assert np.all(whole >= core) and np.all(core >= enhancing)
    assert (core & ~enhancing).any() and (whole & ~core).any()


@pytest.mark.parametrize("orientation", list(AFFINES))
def test_overlapping_regions_round_trip(orientation, tmp_path):
    written_affine = AFFINES[orientation]
    files, geometry, series, flipped = _source(tmp_path, written_affine)
    expected = phantom_regions()
    # medseg is handed the regions on the grid it reads; decoding is on the written grid.
    regions = expected[..., ::-1] if flipped else expected
    assert flipped == (orientation == "reversed")
    out = write_seg_regions(
        regions, geometry, series, NAMES, tmp_path / "seg.dcm", algorithm_name="test", algorithm_version="1"
    )

    assert out == tmp_path / "seg.dcm"
    assert dciodvfy_errors(out) == []
    ds = pydicom.dcmread(out)
    assert ds.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == PRESENT
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2, 3]
    kept = expected[[0, 1, 3]]

    by_label = decode_segments(out, SHAPE, written_affine)
    for label, region in zip(PRESENT, kept, strict=True):
        np.testing.assert_array_equal(by_label[label], region, err_msg=label)
    # Overlaps survive: an enhancing voxel lies in all three segments.
    in_segments = sum(by_label.values(), np.zeros(SHAPE, int))
    assert in_segments[kept[2]].min() == 3 and in_segments.max() == 3

    seg = hd.seg.segread(out)
    sop_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    by_source = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids, combine_segments=False, ignore_spatial_locations=False
    )
    np.testing.assert_array_equal(by_source > 0, kept.transpose(3, 2, 1, 0))
    np.testing.assert_array_equal(volume_on_grid(seg.get_volume(), written_affine), kept)


def test_all_regions_empty_writes_nothing(tmp_path):
    _, geometry, series, _ = _source(tmp_path, AFFINES["axial"])
    regions = np.zeros((4, *SHAPE), bool)
    assert write_seg_regions(regions, geometry, series, NAMES, tmp_path / "s.dcm") is None
    assert not (tmp_path / "s.dcm").exists()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((25, 20, 8), "does not match the source image size"),
        ((24, 19, 8), "does not match the source image size"),
        ((24, 20, 7), "has not one slice per source image"),
    ],
    ids=["x", "y", "z"],
)
def test_regions_on_the_wrong_grid_fail_as_write_seg_does(shape, message, tmp_path):
    _, geometry, series, _ = _source(tmp_path, AFFINES["axial"])
    regions = np.ones((3, *shape), bool)
    with pytest.raises(GeometryError, match=message) as label_error:
        write_seg(regions[0].astype(np.uint8), geometry, series, NAMES, tmp_path / "s.dcm")
    with pytest.raises(GeometryError, match=message) as regions_error:
        write_seg_regions(regions, geometry, series, NAMES, tmp_path / "s.dcm")
    assert str(regions_error.value) == str(label_error.value)
    assert not (tmp_path / "s.dcm").exists()


def test_regions_with_a_slice_beyond_the_series_are_refused(tmp_path):
    _, geometry, series, _ = _source(tmp_path, AFFINES["axial"])
    regions = np.zeros((3, *SHAPE[:2], SHAPE[2] + 1), bool)
    regions[:, 5:9, 5:9, SHAPE[2]] = True  # voxels only on the slice the series does not have
    try:
        written = write_seg_regions(regions, geometry, series, NAMES, tmp_path / "s.dcm")
    except GeometryError:
        written = "refused"
    assert written == "refused", "regions beyond the series were dropped without an error"
