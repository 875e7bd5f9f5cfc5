"""The abdomen CT bundle through MONAI's own runner (`python -m monai.bundle ...`), on tiny real data."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_refs import SCHEMA, monai_bundle
from monai.bundle import ConfigParser

from medseg.data import REPO_ROOT

BUNDLE = REPO_ROOT / "bundles" / "abdomen_ct_segmentation"
CONFIGS = BUNDLE / "configs"


@pytest.fixture(scope="module")
def tiny_case(tmp_path_factory, case_a):
    """A 64x64x32 crop of case A around the upper-abdominal organs, plus a Decathlon datalist."""
    root = tmp_path_factory.mktemp("tiny")
    image, label = (nib.load(p) for p in case_a)
    crop = (slice(30, 94), slice(20, 84), slice(78, 110))
    for img, name in ((image, "ct.nii.gz"), (label, "seg.nii.gz")):
        nib.save(img.slicer[crop], root / name)
    (root / "datalist.json").write_text(
        json.dumps({"training": [{"image": "ct.nii.gz", "label": "seg.nii.gz"}]})
    )
    return root


@pytest.mark.slow
def test_train_then_infer_through_monai_bundle(tiny_case, tmp_path):
    models = tmp_path / "models"
    monai_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "train.json"),
        "--bundle_root",
        str(BUNDLE),
        "--dataset_dir",
        str(tiny_case),
        "--datalist",
        str(tiny_case / "datalist.json"),
        "--ckpt_dir",
        str(models),
        "--log_dir",
        str(tmp_path / "logs"),
        "--max_epochs",
        "2",
        "--epoch_length",
        "2",
        "--val_interval",
        "2",
        "--num_samples",
        "2",
        "--num_workers",
        "0",
    )
    assert (models / "model.pt").is_file()

    # Inference on an LPS-ordered, 2.5 mm copy so that inversion to the input grid is not trivial.
    src = nib.load(tiny_case / "ct.nii.gz")
    lps = nib.Nifti1Image(
        np.asarray(src.dataobj)[::-1, ::-1],
        src.affine
        @ np.array([[-1, 0, 0, src.shape[0] - 1], [0, -1, 0, src.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]]),
    )
    lps.header.set_zooms((3.0, 3.0, 3.0))
    nib.save(lps, tmp_path / "case.nii.gz")
    monai_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "inference.json"),
        "--bundle_root",
        str(tmp_path),
        "--input_image",
        str(tmp_path / "case.nii.gz"),
        "--output_dir",
        str(tmp_path / "out"),
    )
    out = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    assert out.shape == lps.shape
    np.testing.assert_allclose(out.affine, lps.affine, atol=1e-5)
    assert np.asarray(out.dataobj).max() < 8


@pytest.mark.slow
def test_metadata_and_network_verify_offline():
    monai_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA))
    monai_bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        str(CONFIGS / "inference.json"),
    )


@pytest.mark.slow
def test_shipped_weights_export_to_torchscript(tmp_path):
    monai_bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(tmp_path / "model.ts"),
        "--ckpt_file",
        str(BUNDLE / "models" / "model.pt"),
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        str(CONFIGS / "inference.json"),
        "--bundle_root",
        str(BUNDLE),
    )
    exported = torch.jit.load(str(tmp_path / "model.ts"))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    network = parser.get_parsed_content("network_def")
    state = torch.load(BUNDLE / "models" / "model.pt", map_location="cpu")
    network.load_state_dict(state.get("model", state))
    x = torch.rand(1, 1, 64, 64, 16)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(x), network.eval()(x), rtol=1e-4, atol=1e-4)


def test_metadata_labels_match_manifest():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    manifest = json.loads((REPO_ROOT / "data_manifests" / "totalsegmentator_samples.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    # the bundle segments a subset of the dataset's label map (TotalSegmentator ids 1-7), same ids and names
    assert channel_def == {key: manifest["labels"][key] for key in channel_def}
    assert sorted(int(k) for k in channel_def) == list(range(8))
