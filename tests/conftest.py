"""Shared fixtures: paths to the embedded real samples and small synthetic volumes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from medseg.data import sample_path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYTHONWARNINGS", "ignore")
# MLflow's start-up (its SQLite tables) adds about 5 s to every training; the one test of it turns it on.
os.environ.setdefault("MEDSEG_MLFLOW", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def case_b_dicom() -> Path:
    return Path(sample_path("example_ct_dicom"))


@pytest.fixture(scope="session")
def case_b_reference() -> Path:
    return Path(sample_path("example_seg_dicom.nii.gz"))


@pytest.fixture(scope="session")
def case_a() -> tuple[Path, Path]:
    return Path(sample_path("example_ct.nii.gz")), Path(sample_path("example_seg_fast_force_split.nii.gz"))


@pytest.fixture(scope="session")
def case_b_dicom_with_uids(case_b_dicom, tmp_path_factory) -> Path:
    """Case B as PACS would hold it: the sample was exported with blank Study/Series/SOP UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("case_b_uids")
    study, series = generate_uid(), generate_uid()
    for src in sorted(case_b_dicom.iterdir()):
        ds = pydicom.dcmread(src)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.save_as(folder / src.name)
    return folder
