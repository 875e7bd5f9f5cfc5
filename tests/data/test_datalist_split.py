"""`build_manifest` on nnU-Net v2 and MSD folders written with nibabel, and `split_folds`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.data.datalist import build_manifest, write_json
from medseg.data.manifest import load_manifest
from medseg.data.split import split_folds
from medseg.data.verify import verify_dataset
from medseg.errors import InputError

SHAPE = (8, 7, 6)


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.5, 1.0])), path)


def label(value: int) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    out[2:5, 2:5, 1:4] = value
    return out


@pytest.fixture
def nnunet(tmp_path) -> Path:
    """nnU-Net v2: two channel files per case, labels by case, dataset.json with name -> id labels."""
    root = tmp_path / "Dataset042_Phantom"
    for case in ("ph_001", "ph_002", "ph_003"):
        for channel in range(2):
            save(root / f"imagesTr/{case}_{channel:04d}.nii.gz", np.full(SHAPE, channel, np.float32))
        save(root / f"labelsTr/{case}.nii.gz", label(2))
    for channel in range(2):
        save(root / f"imagesTs/ph_009_{channel:04d}.nii.gz", np.zeros(SHAPE, np.float32))
    described = {
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "gland": 1, "lesion": 2},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(described))
    return root


@pytest.fixture
def msd(tmp_path) -> Path:
    """MSD: one file per case, no dataset.json (labels are then read from the files)."""
    root = tmp_path / "Task99_Phantom"
    for i in (3, 7):
        save(root / f"imagesTr/ph_{i}.nii.gz", np.zeros(SHAPE, np.int16))
        save(root / f"labelsTr/ph_{i}.nii.gz", label(i))
    return root


def test_nnunet_layout_becomes_a_manifest_that_verifies(nnunet):
    manifest = build_manifest(nnunet)
    assert manifest["tensorImageSize"] == "4D" and manifest["modality"] == {"0": "T2", "1": "ADC"}
    assert manifest["labels"] == {"0": "background", "1": "gland", "2": "lesion"}
    assert manifest["numTraining"] == 3 and manifest["numTest"] == 1
    assert manifest["training"][1] == {
        "image": ["imagesTr/ph_002_0000.nii.gz", "imagesTr/ph_002_0001.nii.gz"],
        "label": "labelsTr/ph_002.nii.gz",
    }
    assert manifest["test"] == [{"image": ["imagesTs/ph_009_0000.nii.gz", "imagesTs/ph_009_0001.nii.gz"]}]
    every = sorted(p.relative_to(nnunet).as_posix() for p in nnunet.rglob("*.nii.gz"))
    assert sorted(manifest["sha256"]) == every
    for rel, digest in manifest["sha256"].items():
        assert hashlib.sha256((nnunet / rel).read_bytes()).hexdigest() == digest
    out = write_json(manifest, nnunet.parent / "manifest.json")
    assert [p.name for p in nnunet.parent.iterdir() if p.name.startswith(".")] == []  # no staging file left
    assert [e.case for e in load_manifest(out).section("training")] == ["ph_001", "ph_002", "ph_003"]
    assert verify_dataset(out, nnunet).ok


def test_msd_layout_without_dataset_json_reads_the_label_ids(msd):
    manifest = build_manifest(msd)
    assert manifest["tensorImageSize"] == "3D" and manifest["modality"] == {"0": "channel 0"}
    assert manifest["labels"] == {"0": "background", "3": "label 3", "7": "label 7"}
    assert manifest["training"] == [
        {"image": "imagesTr/ph_3.nii.gz", "label": "labelsTr/ph_3.nii.gz"},
        {"image": "imagesTr/ph_7.nii.gz", "label": "labelsTr/ph_7.nii.gz"},
    ]
    assert manifest["licence"].startswith("unknown") and manifest["test"] == []
    assert verify_dataset(write_json(manifest, msd / "manifest.json")).ok


def test_msd_dataset_json_keeps_its_header(msd):
    described = {"name": "Phantom", "description": "d", "licence": "CC-BY-SA 4.0", "reference": "here"}
    described |= {
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "3": "a", "7": "b"},
    }
    (msd / "dataset.json").write_text(json.dumps(described))
    manifest = build_manifest(msd)
    assert {k: manifest[k] for k in described} == described
    assert manifest["citation"] == "here"  # MSD's reference is the best citation it offers


def test_region_labels_of_nnunet_become_ids_and_regions(nnunet):
    described = json.loads((nnunet / "dataset.json").read_text())
    described["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    (nnunet / "dataset.json").write_text(json.dumps(described))
    manifest = build_manifest(nnunet)
    assert manifest["labels"] == {"0": "background", "1": "label 1", "2": "core"}
    assert manifest["regions"] == {"whole": [1, 2]}


def test_layout_problems_are_input_errors(nnunet, tmp_path):
    (nnunet / "labelsTr/ph_003.nii.gz").unlink()
    with pytest.raises(InputError, match="ph_003_0000.nii.gz: no label for this image"):
        build_manifest(nnunet)
    save(nnunet / "labelsTr/ph_003.nii.gz", label(1))
    (nnunet / "imagesTr/ph_002_0001.nii.gz").rename(nnunet / "imagesTr/ph_002_0002.nii.gz")
    with pytest.raises(InputError, match="case ph_002 has channel files 0000, 0002"):
        build_manifest(nnunet)
    with pytest.raises(InputError, match="no imagesTr/ folder"):
        build_manifest(tmp_path / "empty")


def manifest_with_cases(tmp_path, names: list[str]) -> Path:
    data = json.loads((Path(__file__).parents[2] / "data_manifests" / "nuclei_2d.json").read_text())
    data.pop("sha256")
    data["training"] = [{"image": f"imagesTr/{n}.nii.gz", "label": f"labelsTr/{n}.nii.gz"} for n in names]
    data["numTraining"], data["test"], data["numTest"] = len(names), [], 0
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    return path


def test_folds_cover_every_case_once_and_follow_the_seed(tmp_path):
    names = [f"case_{i:02d}" for i in range(23)]
    manifest = load_manifest(manifest_with_cases(tmp_path, names[::-1]))  # the manifest's order is irrelevant
    folds = split_folds(manifest, folds=5, seed=0)
    assert len(folds) == 5
    vals = [c for fold in folds for c in fold["val"]]
    assert sorted(vals) == names  # every case in exactly one validation fold
    for fold in folds:
        assert sorted(fold["train"] + fold["val"]) == names and not set(fold["train"]) & set(fold["val"])
    assert sorted(len(f["val"]) for f in folds) == [4, 4, 5, 5, 5]
    # the documented rule, written out: a numpy RandomState(seed) shuffle of the sorted names, then every
    # 5th case from offset i (as monai.data.partition_dataset does)
    order = list(range(23))
    np.random.RandomState(0).shuffle(order)
    assert [f["val"] for f in folds] == [sorted(names[j] for j in order[i::5]) for i in range(5)]
    assert split_folds(manifest, folds=5, seed=0) == folds
    assert split_folds(manifest, folds=5, seed=1) != folds


def test_folds_refuse_duplicate_cases_and_too_many_folds(tmp_path):
    duplicate = load_manifest(manifest_with_cases(tmp_path, ["a", "b", "a"]))
    with pytest.raises(InputError, match="training\\[0\\] and training\\[2\\] are both case 'a'"):
        split_folds(duplicate, folds=2)
    few = load_manifest(manifest_with_cases(tmp_path, ["a", "b", "c"]))
    with pytest.raises(InputError, match="3 training cases cannot fill 5 folds"):
        split_folds(few, folds=5)
    with pytest.raises(InputError, match="at least 2 folds"):
        split_folds(few, folds=1)
