"""Every manifest in data_manifests/ follows the format (data_manifests/README.md), MONAI's Decathlon
reader takes its lists, and the manifests of shipped samples verify clean against the files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medseg.data import REPO_ROOT
from medseg.data.manifest import PathEscapeError, case_name, load_manifest, resolve_path
from medseg.data.verify import verify_dataset
from medseg.errors import InputError

MANIFESTS = sorted((REPO_ROOT / "data_manifests").glob("*.json"))
SHIPPED = [m for m in MANIFESTS if "files_dir" in json.loads(m.read_text())]
# The header every manifest carries, and the JSON types of its values (written out here, not imported).
HEADER = {
    "name": str,
    "description": str,
    "tensorImageSize": str,
    "modality": dict,
    "labels": dict,
    "licence": str,
    "citation": str,
    "source": (dict, str),
    "numTraining": int,
    "numTest": int,
}
PUBLIC = {"msd_task01_brain_tumour", "msd_task03_liver", "msd_task06_lung", "msd_task09_spleen", "kits23"}
PUBLIC |= {"brats2021", "btcv"}


def test_the_expected_manifests_are_there():
    names = {m.stem for m in MANIFESTS}
    assert PUBLIC <= names
    assert {"totalsegmentator_samples", "totalsegmentator_mr", "nuclei_2d", "nuclei_3d", "bbbc007"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=[m.stem for m in MANIFESTS])
def test_manifest_has_the_header_and_loads(path):
    data = json.loads(path.read_text())
    for key, kind in HEADER.items():
        assert isinstance(data.get(key), kind), f"{path.name}: {key}"
    assert data["tensorImageSize"] in ("2D", "3D", "4D")
    assert list(data["modality"]) == [str(i) for i in range(len(data["modality"]))]
    assert all(int(k) >= 0 for k in data["labels"]) and data["labels"].get("0") == "background"
    assert data["licence"] and data["citation"]
    for section in ("training", "validation", "test"):
        assert isinstance(data.get(section, []), list)
    listed = len(data.get("training", [])) + len(data.get("validation", []))
    assert listed in (0, data["numTraining"])
    assert len(data["test"]) in (0, data["numTest"])
    manifest = load_manifest(path)
    cases = [e.case for e in manifest.section("training")]
    assert len(cases) == len(set(cases)), "case names must be unique for folds"
    if isinstance(data["source"], dict) and "files_dir" not in data:
        assert data["source"]["url"].startswith("http") and isinstance(data["source"]["registration"], bool)


@pytest.mark.parametrize("path", MANIFESTS, ids=[m.stem for m in MANIFESTS])
def test_monai_reads_the_lists(path, tmp_path):
    """MONAI's own Decathlon reader takes every list (test lists may hold plain paths, as MSD's)."""
    from monai.data import load_decathlon_datalist

    data = json.loads(path.read_text())
    for section, labelled in (("training", True), ("test", False)):
        if data[section]:
            items = load_decathlon_datalist(path, labelled, section, base_dir=tmp_path)
            assert len(items) == len(data[section])
            first = data[section][0]
            image = first if isinstance(first, str) else first["image"]
            image = image[0] if isinstance(image, list) else image
            got = items[0]["image"][0] if isinstance(items[0]["image"], list) else items[0]["image"]
            assert Path(got) == tmp_path / image


@pytest.mark.parametrize("path", SHIPPED, ids=[m.stem for m in SHIPPED])
def test_shipped_manifest_verifies_clean(path):
    data = json.loads(path.read_text())
    report = verify_dataset(path, REPO_ROOT / data["files_dir"])
    assert report.ok, report.format()
    assert report.entries == len(data["training"]) + len(data.get("validation", [])) + len(data["test"])


def test_shipped_sha256_maps_cover_each_sample_folder():
    """Together, the manifests of one sample folder checksum every file its SHA256SUMS lists."""
    covered: dict[str, dict[str, str]] = {}
    for path in SHIPPED:
        data = json.loads(path.read_text())
        covered.setdefault(data["files_dir"], {}).update(data["sha256"])
    for files_dir, sums in covered.items():
        lines = (REPO_ROOT / files_dir / "SHA256SUMS").read_text().splitlines()
        listed = dict(reversed(line.split(maxsplit=1)) for line in lines if line.strip())
        assert sums == listed, files_dir


def test_public_manifests_hold_the_published_facts():
    load = {name: json.loads((REPO_ROOT / "data_manifests" / f"{name}.json").read_text()) for name in PUBLIC}
    spleen = load["msd_task09_spleen"]
    names = [e["image"] for e in spleen["training"]] + spleen["test"]
    assert len(spleen["training"]) == 41 and len(spleen["test"]) == 20 and len(set(names)) == 61
    brain = load["msd_task01_brain_tumour"]
    assert brain["tensorImageSize"] == "4D" and len(brain["modality"]) == 4 and brain["numTraining"] == 484
    assert set(load["brats2021"]["labels"]) == {"0", "1", "2", "4"}  # BraTS skips id 3
    assert load["brats2021"]["source"]["registration"] and load["btcv"]["source"]["registration"]
    kits = load["kits23"]
    assert len({e["case"] for e in kits["training"]}) == kits["numTraining"] == 489
    assert len(load["btcv"]["labels"]) == 14 and load["btcv"]["numTraining"] == len(load["btcv"]["training"])


def test_case_names_drop_suffix_and_channel():
    assert case_name("imagesTr/la_003_0000.nii.gz") == "la_003"
    assert case_name("./imagesTr/spleen_2.nii.gz") == "spleen_2"
    assert case_name("BraTS2021_00000/BraTS2021_00000_t1.nii.gz") == "BraTS2021_00000_t1"
    assert case_name("img0001.nii") == "img0001"


def test_paths_that_leave_the_root_are_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret.nii.gz"
    (root / "sub").mkdir(parents=True)
    outside.write_bytes(b"x")
    (root / "sub" / "inside.nii.gz").write_bytes(b"y")
    os.symlink(outside, root / "link.nii.gz")
    os.symlink(root / "sub", root / "alias")  # a symlink that stays inside is fine
    os.symlink(tmp_path, root / "up")
    assert resolve_path(root, "sub/inside.nii.gz") == root / "sub" / "inside.nii.gz"
    assert resolve_path(root, "./alias/inside.nii.gz") == root / "alias" / "inside.nii.gz"
    refused = {
        "../secret.nii.gz": "'..'",
        "sub/../../secret.nii.gz": "'..'",
        str(outside): "absolute path",
        "C:\\data\\x.nii.gz": "absolute path",
        "link.nii.gz": "symlink points outside",
        "up/secret.nii.gz": "symlink points outside",
    }
    for relative, reason in refused.items():
        with pytest.raises(PathEscapeError, match=reason):
            resolve_path(root, relative)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[]", "the top level is not a JSON object"),
        (json.dumps({**dict.fromkeys(HEADER, "x")}), "'modality' must be an object"),
    ],
)
def test_malformed_manifests_raise_one_input_error(tmp_path, text, message):
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as err:
        load_manifest(path)
    assert str(err.value).startswith(str(path))


def test_header_value_problems_are_listed_together(tmp_path):
    data = json.loads((REPO_ROOT / "data_manifests" / "nuclei_2d.json").read_text())
    data.pop("citation")
    data["labels"] = {"background": 0}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="header key 'citation' missing"):
        load_manifest(path)
    data["citation"] = "x"
    data["tensorImageSize"] = "5D"
    data["training"][0]["image"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_manifest(path)
    assert "tensorImageSize must be one of" in str(err.value) and "labels must map label ids" in str(
        err.value
    )
    assert "training[0] image must be a path" in str(err.value)
