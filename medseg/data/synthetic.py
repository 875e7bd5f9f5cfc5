"""Write a volume with known geometry as a single-frame DICOM series (tests and benchmarks).

Neither pydicom, highdicom nor SimpleITK writes a plain CT/MR series from an array with full
study/series/frame-of-reference modules in a few lines (SimpleITK's series writing needs every
tag set by hand too), so this builds the datasets with pydicom. The geometry is exact: slice
``k`` of ``volume[:, :, k]`` is written at ``lps_affine @ [0, 0, k, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medseg.typing import PathLike

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


def _base_dataset(modality: str, uids: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = _SOP_CLASS[modality]
    ds.Modality = modality
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame_of_reference"]
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"
    ds.SeriesDate, ds.SeriesTime = "20260101", "120000"
    ds.ContentDate, ds.ContentTime = "20260101", "120000"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.SeriesNumber, ds.AcquisitionNumber = 1, 1
    ds.SeriesDescription = "synthetic phantom"
    ds.Manufacturer = "medseg"
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "ABDOMEN"  # unpaired: no Laterality needed
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    if modality == "CT":
        ds.KVP = "120"
        ds.RescaleType = "HU"
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTrainLength = "3D", 1
    return ds


def write_dicom_series(
    volume: np.ndarray,
    lps_affine: np.ndarray,
    folder: PathLike,
    *,
    modality: str = "CT",
    rescale: tuple[float, float] = (1.0, 0.0),
    uids: dict[str, str] | None = None,
    file_names: Sequence[str] | None = None,
    skip_slices: Sequence[int] = (),
) -> list[Path]:
    """Write ``volume`` (``(x, y, z)``, stored values before rescale) as one file per slice.

    ``lps_affine`` maps ``[i, j, k, 1]`` to LPS millimetres; its first two columns must be
    orthogonal (they become ImageOrientationPatient and PixelSpacing). ``rescale`` is
    ``(slope, intercept)``; ``file_names[k]`` names slice ``k`` (default ``slice_000.dcm``...);
    ``skip_slices`` leaves slices out, to make gaps.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    uids = uids or {}
    uids = {key: uids.get(key) or generate_uid() for key in ("study", "series", "frame_of_reference")}
    col_spacing, row_spacing = np.linalg.norm(lps_affine[:3, :2], axis=0)
    orientation = np.concatenate([lps_affine[:3, 0] / col_spacing, lps_affine[:3, 1] / row_spacing])
    template = _base_dataset(modality, uids)
    template.Rows, template.Columns = int(volume.shape[1]), int(volume.shape[0])
    template.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
    template.SliceThickness = _ds(np.linalg.norm(lps_affine[:3, 2]))
    template.ImageOrientationPatient = [_ds(v) for v in orientation]
    template.RescaleSlope, template.RescaleIntercept = _ds(rescale[0]), _ds(rescale[1])
    written = []
    for k in range(volume.shape[2]):
        if k in skip_slices:
            continue
        ds = template.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in (lps_affine @ [0, 0, k, 1])[:3]]
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T, dtype="<i2").tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / (file_names[k] if file_names else f"slice_{k:03d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _ds(value: float) -> str:
    """A DICOM decimal string: at most 16 characters, as dciodvfy requires."""
    text = f"{float(value):.10g}"
    if len(text) > 16:
        text = f"{float(value):.6e}" if abs(value) >= 1e10 or 0 < abs(value) < 1e-4 else f"{value:.8f}"[:16]
    return text
