"""DICOM SEG writing: dciodvfy finds no errors, pydicom and highdicom decode the label map back.

The expected label maps are built on the grid the series was *written* with (known affine), and
the SEG is decoded independently of medseg: by pydicom (frames + their PlanePosition mapped
through the known affine) and by highdicom (frames per referenced source instance).
"""

from __future__ import annotations

import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_refs import dciodvfy_errors, decode_seg, oblique_affine
from pydicom.data import get_testdata_file

from medseg.data.synthetic import write_dicom_series
from medseg.errors import GeometryError, InputError
from medseg.io import find_series, label_to_grid, read_image
from medseg.io.dicom_codes import segment_codes
from medseg.io.dicom_seg import write_seg
from medseg.io.geometry import Geometry

NAMES = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "liver_tumor"}
SHAPE = (24, 20, 8)


def decode_with_pydicom(path, lps_affine, shape, names=NAMES) -> np.ndarray:
    return decode_seg(path, lps_affine, shape, {v: k for k, v in names.items()})


def phantom_label() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[4:14, 3:12, 1:6] = 1  # liver
    label[16:22, 10:18, 3:8] = 3  # kidney_left
    label[6:8, 5:7, 2:4] = 4  # liver_tumor; spleen (2) is absent
    return label


AFFINES = {
    "axial": np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1.0]]),
    "reversed": np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 20], [0, 0, -2.5, -30], [0, 0, 0, 1.0]]),
    "sagittal": np.array([[0, 0, 2.0, 5], [0.9, 0, 0, -40], [0, -0.9, 0, 60], [0, 0, 0, 1.0]]),
}


AFFINES["oblique"] = oblique_affine()


@pytest.mark.parametrize("orientation", list(AFFINES))
def test_seg_round_trip_on_synthetic_series(orientation, tmp_path):
    written_affine = AFFINES[orientation]
    files = write_dicom_series(np.zeros(SHAPE, np.int16), written_affine, tmp_path / "ct")
    expected = phantom_label()
    # Hand medseg the label on the grid medseg reads (the known grid, flipped along k when the
    # series runs against its normal), then decode on the known grid.
    _, geometry = read_image(tmp_path / "ct")
    flipped = np.dot(geometry.lps_affine()[:3, 2], written_affine[:3, 2]) < 0
    label = expected[:, :, ::-1] if flipped else expected
    np.testing.assert_allclose(
        geometry.lps_affine()[:3, 3], written_affine[:3, 3] + (SHAPE[2] - 1) * written_affine[:3, 2] * flipped
    )
    series = find_series(tmp_path / "ct")[0]
    out = write_seg(
        label, geometry, series, NAMES, tmp_path / "seg.dcm", algorithm_name="test", algorithm_version="1"
    )

    assert dciodvfy_errors(out) == []
    np.testing.assert_array_equal(decode_with_pydicom(out, written_affine, SHAPE), expected)

    seg = hd.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "kidney_left", "liver_tumor"]
    sop_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    by_source = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids, combine_segments=True, ignore_spatial_locations=False
    )
    numbers = {1: 1, 3: 2, 4: 3}
    np.testing.assert_array_equal(
        by_source, np.vectorize(lambda v: numbers.get(v, 0))(expected).transpose(2, 1, 0)
    )
    source_series = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_series


def test_segment_codes_are_snomed_with_laterality_and_abnormality():
    kidney = segment_codes("kidney_left")
    assert (kidney.category.value, kidney.property_type.value, kidney.modifier.value) == (
        "91723000",
        "64033007",
        "7771000",
    )
    tumour = segment_codes("liver_tumor")
    assert (tumour.category.value, tumour.property_type.value, tumour.anatomic_region.value) == (
        "49755003",
        "108369006",
        "10200004",
    )
    assert segment_codes("small_intestine").property_type.value == "30315005"


def test_seg_carries_codes_and_laterality_modifier(tmp_path):
    write_dicom_series(np.zeros(SHAPE, np.int16), AFFINES["axial"], tmp_path / "ct")
    _, geometry = read_image(tmp_path / "ct")
    out = write_seg(phantom_label(), geometry, find_series(tmp_path / "ct")[0], NAMES, tmp_path / "seg.dcm")
    segments = pydicom.dcmread(out).SegmentSequence
    kidney = segments[1].SegmentedPropertyTypeCodeSequence[0]
    assert (kidney.CodeValue, kidney.CodingSchemeDesignator) == ("64033007", "SCT")
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"
    assert segments[0].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert segments[0].SegmentAlgorithmType == "AUTOMATIC"


def test_real_sample_series_round_trip(case_b_dicom_with_uids, case_b_reference, tmp_path):
    """The JPEG2000 sample (with its UIDs restored) and its reference segmentation."""
    ct, geometry = read_image(case_b_dicom_with_uids)
    reference = nib.load(case_b_reference)
    label = label_to_grid(np.asarray(reference.dataobj), reference.affine, ct.shape, geometry.affine)
    label = np.where(label <= 7, label, 0).astype(np.uint8)  # TotalSegmentator ids 1-7: the bundle's organs
    names = {
        1: "spleen",
        2: "kidney_right",
        3: "kidney_left",
        4: "gallbladder",
        5: "liver",
        6: "stomach",
        7: "pancreas",
    }
    out = write_seg(label, geometry, find_series(case_b_dicom_with_uids)[0], names, tmp_path / "seg.dcm")
    assert dciodvfy_errors(out) == []
    ds = pydicom.dcmread(out)
    present = [names[v] for v in np.unique(label) if v]
    assert [s.SegmentLabel for s in ds.SegmentSequence] == present
    np.testing.assert_array_equal(decode_with_pydicom(out, geometry.lps_affine(), ct.shape, names), label)


def test_multiframe_source(tmp_path):
    shutil.copy(get_testdata_file("eCT_Supplemental.dcm", download=False), tmp_path / "ct.dcm")
    ct, geometry = read_image(tmp_path)
    label = np.zeros(ct.shape, np.uint8)
    label[100:200, 150:300, 0] = 1
    label[300:400, 100:200, 1] = 3
    (tmp_path / "out").mkdir()
    out = write_seg(label, geometry, find_series(tmp_path)[0], NAMES, tmp_path / "out" / "seg.dcm")
    assert dciodvfy_errors(out) == []
    np.testing.assert_array_equal(decode_with_pydicom(out, geometry.lps_affine(), ct.shape), label)


def test_blank_uids_are_refused_before_writing(case_b_dicom, tmp_path):
    ct, geometry = read_image(case_b_dicom)
    label = np.ones(ct.shape, np.uint8)
    with pytest.raises(InputError, match="blank StudyInstanceUID.*--format nifti"):
        write_seg(label, geometry, find_series(case_b_dicom)[0], NAMES, tmp_path / "seg.dcm")
    assert not any(tmp_path.iterdir())


def test_label_off_the_source_grid_is_refused(tmp_path):
    write_dicom_series(np.zeros(SHAPE, np.int16), AFFINES["axial"], tmp_path / "ct")
    _, geometry = read_image(tmp_path / "ct")
    shifted = geometry.affine.copy()
    shifted[:3, 3] += 0.4  # half a voxel
    with pytest.raises(GeometryError, match="not on the source series' grid"):
        write_seg(
            phantom_label(), Geometry(shifted), find_series(tmp_path / "ct")[0], NAMES, tmp_path / "s.dcm"
        )
    assert not (tmp_path / "s.dcm").exists()


def test_empty_label_map_writes_nothing(tmp_path):
    write_dicom_series(np.zeros(SHAPE, np.int16), AFFINES["axial"], tmp_path / "ct")
    _, geometry = read_image(tmp_path / "ct")
    label = np.zeros(SHAPE, np.uint8)
    assert write_seg(label, geometry, find_series(tmp_path / "ct")[0], NAMES, tmp_path / "s.dcm") is None
    assert not (tmp_path / "s.dcm").exists()
