"""DICOM RTSTRUCT writing: dciodvfy finds no errors and no warnings, and the contours rasterise
back onto the label exactly (Dice 1).

The check is independent of the writer: contour points are mapped to voxel indices with the
affine the synthetic series was *written* with, filled with ``skimage.draw.polygon`` and combined
per slice by XOR (the even-odd rule RT systems use, so hole contours cut out), then compared
to the label map by Dice and centroid.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from dicom_refs import dciodvfy_errors, oblique_affine
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, RTStructureSetStorage
from skimage.draw import disk, polygon

from medseg.data.synthetic import write_dicom_series
from medseg.errors import InputError
from medseg.io import find_series, read_image
from medseg.io.dicom_rtstruct import format_ds, mask_contours, write_rtstruct
from medseg.io.dicom_seg import palette

NAMES = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "liver_tumor"}
SHAPE = (48, 40, 5)


def phantom_label() -> np.ndarray:
    """A box with a tumour cut out of it on two slices, and a ring (a shape with a hole)."""
    label = np.zeros(SHAPE, np.uint8)
    label[4:30, 4:28, 0:4] = 1  # liver
    tumour = np.zeros(SHAPE[:2], bool)
    tumour[disk((17, 16), 5.5)] = True
    label[tumour, 1:3] = 4  # liver_tumor: the liver has a hole on slices 1 and 2
    yy, xx = np.meshgrid(np.arange(SHAPE[1]), np.arange(SHAPE[0]))
    radius = np.hypot(xx - 38, yy - 30)
    label[(radius <= 7.5) & (radius > 3.5), 1:5] = 3  # kidney_left, a ring; spleen is absent
    return label


AFFINES = {
    "axial": np.array([[0.8, 0, 0, -10], [0, 0.65, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1.0]]),
    "oblique": oblique_affine(-20),
}


def rasterise(ds: pydicom.Dataset, lps_affine: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Fill every ROI's contours on the grid ``lps_affine``, XOR-ing those of one slice."""
    names = {int(roi.ROINumber): str(roi.ROIName) for roi in ds.StructureSetROISequence}
    inverse = np.linalg.inv(lps_affine)
    masks = {}
    for roi in ds.ROIContourSequence:
        mask = np.zeros(shape, bool)
        for contour in roi.ContourSequence:
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            i, j, k = (inverse @ np.c_[points, np.ones(len(points))].T)[:3]
            z = int(round(k.mean()))
            assert np.abs(k - z).max() < 0.01, "contour is not on a slice of the written grid"
            filled = np.zeros(shape[:2], bool)
            filled[polygon(i, j, shape[:2])] = True
            mask[:, :, z] ^= filled
        masks[names[int(roi.ReferencedROINumber)]] = mask
    return masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module", params=list(AFFINES))
def written(request, tmp_path_factory):
    """(RTSTRUCT path, written LPS affine, SOPInstanceUID of each slice k) per orientation."""
    folder = tmp_path_factory.mktemp(request.param)
    affine = AFFINES[request.param]
    files = write_dicom_series(np.zeros(SHAPE, np.int16), affine, folder / "ct")
    _, geometry = read_image(folder / "ct")
    # The label is handed over on the grid medseg reads; these series are read as written.
    np.testing.assert_allclose(geometry.lps_affine(), affine, atol=1e-4)
    series = find_series(folder / "ct")[0]
    out = write_rtstruct(phantom_label(), geometry, series, NAMES, folder / "out" / "rtstruct.dcm")
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return out, affine, uids


def test_dciodvfy_reports_no_errors_and_no_warnings(written):
    out, _, _ = written
    assert dciodvfy_errors(out, kinds=("Error", "Warning")) == []
    assert [p.name for p in out.parent.iterdir()] == ["rtstruct.dcm"]  # no temporary left behind


def test_structure_set_reads_back_with_references(written):
    out, affine, uids = written
    ds = pydicom.dcmread(out)
    assert (ds.SOPClassUID, ds.Modality) == (RTStructureSetStorage, "RTSTRUCT")
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["liver", "kidney_left", "liver_tumor"]
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["ORGAN", "ORGAN", "GTV"]
    assert [tuple(c.ROIDisplayColor) for c in ds.ROIContourSequence] == [palette(n) for n in (1, 2, 3)]
    listed = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    listed = listed.RTReferencedSeriesSequence[0].ContourImageSequence
    assert sorted(r.ReferencedSOPInstanceUID for r in listed) == sorted(uids)
    inverse = np.linalg.inv(affine)
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            assert all(len(v.original_string) <= 16 for v in contour.ContourData)
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            assert int(contour.NumberOfContourPoints) == len(points) >= 3
            k = int(round((inverse @ np.r_[points[0], 1])[2]))
            (ref,) = contour.ContourImageSequence
            assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (CTImageStorage, uids[k])


def test_contours_rasterise_back_onto_the_label(written):
    out, affine, _ = written
    masks = rasterise(pydicom.dcmread(out), affine, SHAPE)
    label = phantom_label()
    for value in (1, 3, 4):  # liver has a hole on two slices, kidney_left is a ring
        expected, got = label == value, masks[NAMES[value]]
        assert dice(got, expected) == 1.0, NAMES[value]  # the README's "Dice 1.000": voxel for voxel
        shift = np.argwhere(got).mean(0) - np.argwhere(expected).mean(0)
        assert np.abs(shift).max() == 0, f"{NAMES[value]} shifted by {shift} voxels"
    assert not (masks["liver"] & (label == 4)).any(), "the tumour's hole is not cut out of the liver"


def test_mask_contours_give_holes_as_separate_rings():
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False
    outer, hole = sorted(mask_contours(ring), key=len, reverse=True)
    assert len(outer) == len(hole) == 8  # corners only; every corner of a square is cut at 45 degrees
    assert outer[:, 0].min() == 0.5 and hole[:, 0].min() == 2.5
    (pixel,) = mask_contours(np.pad([[True]], 2))
    np.testing.assert_array_equal(sorted(map(tuple, pixel)), [(1.5, 2), (2, 1.5), (2, 2.5), (2.5, 2)])


def test_decimal_strings_fit_16_characters():
    assert [format_ds(v) for v in (-0.001, 12.345678, -123456789.987, 1e-9)] == [
        "0",
        "12.35",
        "-123456789.99",
        "0",
    ]


def test_empty_label_map_writes_nothing(tmp_path):
    write_dicom_series(np.zeros(SHAPE, np.int16), AFFINES["axial"], tmp_path / "ct")
    _, geometry = read_image(tmp_path / "ct")
    label = np.zeros(SHAPE, np.uint8)
    assert (
        write_rtstruct(label, geometry, find_series(tmp_path / "ct")[0], NAMES, tmp_path / "rt.dcm") is None
    )
    assert not (tmp_path / "rt.dcm").exists()


def test_blank_uids_are_refused_before_writing(tmp_path):
    for path in write_dicom_series(np.zeros(SHAPE, np.int16), AFFINES["axial"], tmp_path / "ct"):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ""  # an anonymised export
        ds.save_as(path)
    _, geometry = read_image(tmp_path / "ct")
    series = find_series(tmp_path / "ct")[0]
    with pytest.raises(InputError, match="blank StudyInstanceUID"):
        write_rtstruct(phantom_label(), geometry, series, NAMES, tmp_path / "out" / "rt.dcm")
    assert not (tmp_path / "out").exists()


def test_multiframe_source_references_frames(tmp_path):
    shutil.copy(get_testdata_file("eCT_Supplemental.dcm", download=False), tmp_path / "ct.dcm")
    ct, geometry = read_image(tmp_path)
    label = np.zeros(ct.shape, np.uint8)
    label[100:200, 150:300, 1] = 1
    out = write_rtstruct(label, geometry, find_series(tmp_path)[0], NAMES, tmp_path / "out" / "rt.dcm")
    assert dciodvfy_errors(out, kinds=("Error", "Warning")) == []
    (contour,) = pydicom.dcmread(out).ROIContourSequence[0].ContourSequence
    assert contour.ContourImageSequence[0].ReferencedFrameNumber == 2
    got = rasterise(pydicom.dcmread(out), geometry.lps_affine(), ct.shape)["liver"]
    np.testing.assert_array_equal(got, label == 1)
