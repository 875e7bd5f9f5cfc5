"""DICOM RT Structure Set (RTSTRUCT) from a label map and its source series, with pydicom.

Radiotherapy planning systems import structures as RTSTRUCT, not SEG. highdicom does not write
it, and rt-utils writes objects that dciodvfy rejects (decimal strings over 16 characters,
missing Type 1/2 attributes) and pulls in OpenCV, so the data set is built here with pydicom.
The label map is checked and cut into the source's frames by ``dicom_seg`` (same contract as
``write_seg``); each label on each slice becomes closed planar contours traced by scikit-image,
placed in LPS millimetres with the source slice's own position, orientation and spacing.

Example::

    from medseg.io import find_series, read_image
    from medseg.io.dicom_rtstruct import write_rtstruct

    ct, geometry = read_image("patient/ct")  # the series the label map was predicted on
    label = predict(ct)  # (x, y, z) integer map on the same grid
    names = {1: "liver", 2: "liver_tumor"}
    out = write_rtstruct(label, geometry, find_series("patient/ct")[0], names, "out/rtstruct.dcm")
    # out is None (nothing written) when no label has a voxel
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from scipy import ndimage
from skimage.measure import find_contours

from medseg.errors import InputError
from medseg.io.atomic import atomic_path
from medseg.io.dicom import DicomSeries
from medseg.io.dicom_codes import ABNORMALITY
from medseg.io.dicom_seg import check_seg_source, palette, present_labels, source_frames
from medseg.io.geometry import Geometry
from medseg.typing import PathLike

log = logging.getLogger(__name__)

# Retired "Detached Study Management" SOP class: what RTReferencedStudySequence items have
# always carried (the standard asks for a SOP class there but no current one fits a study).
STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
# Contour points are rounded to this many decimals of a mm: far below any voxel, and short
# enough that every DS value fits in DICOM's 16 characters.
DS_DECIMALS = 2
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def format_ds(value: float) -> str:
    """A DICOM decimal string rounded to 0.01 mm; dciodvfy rejects DS values over 16 characters."""
    rounded = round(float(value), DS_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = f"{rounded:.{DS_DECIMALS}f}".rstrip("0").rstrip(".")
    if len(text) > 16:
        raise InputError(f"coordinate {value} mm does not fit a DICOM decimal string")
    return text


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed boundaries of a 2D boolean mask, as ``(N, 2)`` (row, col) pixel coordinates.

    Outer boundaries and hole boundaries alike, each without a repeated end point and with only
    its corners. The contours run between pixel centres (level 0.5), so a pixel is inside
    exactly when its centre is inside under even-odd filling.
    """
    # Padding closes contours that would otherwise stop open at the image edge.
    padded = np.pad(np.asarray(mask, bool), 1).astype(np.uint8)
    rings = [c[:-1] - 1.0 for c in find_contours(padded, 0.5)]
    return [ring for ring in (_corners(r) for r in rings) if len(ring) >= 3]


def _corners(ring: np.ndarray) -> np.ndarray:
    """Drop the points of straight runs: find_contours puts one on every pixel edge it crosses."""
    before = ring - np.roll(ring, 1, axis=0)
    after = np.roll(ring, -1, axis=0) - ring
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return ring[np.abs(turn) > 1e-9]


def pixels_to_lps(points: np.ndarray, position: np.ndarray, series: DicomSeries) -> np.ndarray:
    """``(N, 2)`` (row, col) pixel coordinates of a slice at ``position`` to ``(N, 3)`` LPS mm."""
    iop = series.orientation()
    row_spacing, col_spacing = series.pixel_spacing()
    # DICOM: the column index runs along the row direction cosine, the row index along the column one.
    return (
        position
        + np.outer(points[:, 1], iop[:3] * col_spacing)
        + np.outer(points[:, 0], iop[3:] * row_spacing)
    )


def _image_ref(series: DicomSeries, frame: int) -> Dataset:
    """A reference to source frame ``frame`` (``source_frames`` order): its file, or its frame."""
    source = series.headers[0 if series.multiframe else frame]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if series.multiframe:
        ref.ReferencedFrameNumber = frame + 1
    return ref


def _contour_items(
    frames: np.ndarray, value: int, box: tuple[slice, ...], series: DicomSeries
) -> list[Dataset]:
    """ContourSequence items of one label: every closed boundary on every slice it touches."""
    positions = series.positions()
    items = []
    for offset, mask in enumerate(frames[box] == value):
        frame = box[0].start + offset
        for ring in mask_contours(mask):
            points = pixels_to_lps(ring + (box[1].start, box[2].start), positions[frame], series)
            item = Dataset()
            item.ContourImageSequence = [_image_ref(series, frame)]
            # Holes are contours of their own: RT systems fill the contours of a slice with the
            # even-odd (XOR) rule, so a hole boundary inside an outer one cuts it out.
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourNumber = len(items) + 1
            item.ContourData = [format_ds(v) for v in points.ravel()]
            items.append(item)
    return items


def _referenced_frame_of_reference(series: DicomSeries) -> Dataset:
    first = series.headers[0]
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = first.SeriesInstanceUID
    ref_series.ContourImageSequence = [_image_ref(series, i) for i in range(len(series))]
    study = Dataset()
    study.ReferencedSOPClassUID = STUDY_SOP_CLASS
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = [ref_series]
    frame_of_reference = Dataset()
    frame_of_reference.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_of_reference.RTReferencedStudySequence = [study]
    return frame_of_reference


def interpreted_type(name: str) -> str:
    """RTROIInterpretedType: GTV for tumour-like names (``liver_tumor``), ORGAN otherwise."""
    words = name.lower().replace("-", "_").replace(" ", "_").split("_")
    return "GTV" if any(w in ABNORMALITY for w in words) else "ORGAN"


def _roi_items(
    number: int, name: str, contours: list[Dataset], series: DicomSeries, algorithm: str
) -> tuple[Dataset, Dataset, Dataset]:
    """The StructureSetROI, ROIContour and RTROIObservations items of one structure."""
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = series.headers[0].FrameOfReferenceUID
    roi.ROIName = name
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = algorithm[:64]
    contour = Dataset()
    contour.ROIDisplayColor = list(palette(number))
    contour.ContourSequence = contours
    contour.ReferencedROINumber = number
    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    observation.RTROIInterpretedType = interpreted_type(name)
    observation.ROIInterpreter = ""
    return roi, contour, observation


def _header(source: Dataset, now: datetime, algorithm_name: str, algorithm_version: str) -> Dataset:
    """Patient, study and frame of reference from the source; RT series, equipment, SOP common."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = generate_uid()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    for keyword in PATIENT_STUDY:  # Type 2 where the source lacks them: present and empty
        setattr(ds, keyword, source.get(keyword, "") or "")
    # The Frame of Reference module joined the RT Structure Set IOD in recent editions.
    ds.FrameOfReferenceUID = source.FrameOfReferenceUID
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "") or ""
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    # The SEG writer takes +1000; RTSTRUCT and SEG of one scan can then sit side by side.
    ds.SeriesNumber = int(source.get("SeriesNumber", 0) or 0) + 2000
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = f"RT Structure Set ({algorithm_name})"[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = "medseg"
    ds.ManufacturerModelName = algorithm_name[:64]
    ds.SoftwareVersions = algorithm_version[:64]
    ds.StructureSetLabel = algorithm_name[:16]  # SH: 16 characters at most
    ds.StructureSetDescription = f"{algorithm_name} {algorithm_version} automatic segmentation"
    ds.InstanceNumber = 1
    ds.StructureSetDate, ds.StructureSetTime = date, time
    return ds


def write_rtstruct(
    label: np.ndarray,
    geometry: Geometry,
    series: DicomSeries,
    names: Mapping[int, str],
    out_path: PathLike,
    *,
    algorithm_name: str = "medseg",
    algorithm_version: str = "0",
) -> Path | None:
    """Write ``label`` (on the grid of ``series``) as a DICOM RTSTRUCT; ``None`` if it is empty.

    ``names`` maps label values to names (``{1: "liver", ...}``). Labels without voxels are left
    out; the ROI numbers of the others are 1, 2, ... in label order, coloured as in the SEG.
    """
    check_seg_source(series)
    frames = source_frames(label, geometry, series)
    present = present_labels(frames, names)
    if not present:
        log.info("no labelled voxels: no RTSTRUCT written")
        return None
    boxes = ndimage.find_objects(frames, max_label=max(present))
    algorithm = f"{algorithm_name} {algorithm_version}"
    rois = [
        _roi_items(number, names[v], _contour_items(frames, v, boxes[v - 1], series), series, algorithm)
        for number, v in enumerate(present, start=1)
    ]
    ds = _header(series.headers[0], datetime.now(), algorithm_name, algorithm_version)
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame_of_reference(series)]
    ds.StructureSetROISequence = [roi for roi, _, _ in rois]
    ds.ROIContourSequence = [contour for _, contour, _ in rois]
    ds.RTROIObservationsSequence = [observation for _, _, observation in rois]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with atomic_path(out_path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(out_path)
