"""The nuclei U-Net bundle through MONAI's own runner (`python -m monai.bundle ...`), on the real sample.

The shipped weights' scores are recomputed here with StarDist's ``matching`` (independent of
``medseg.metrics``) on the evaluation part of the image, cut out with tifffile.
"""

from __future__ import annotations

import json

import pytest
import tifffile
import torch
from bundle_refs import check_shipped_scores, monai_bundle
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from medseg.data import REPO_ROOT, sample_path

BUNDLE = REPO_ROOT / "bundles" / "nuclei_fluo_unet2d"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO_ROOT / "medseg" / "data" / "schema" / "meta_schema.json"
EVAL_COLUMNS = slice(336, 512)  # data_manifests/nuclei_2d.json: eval x range, x = TIFF column
MARGIN = 0.02  # CPU kernels may differ across machines; a changed pipeline moves scores by more


def meta() -> dict:
    return json.loads((CONFIGS / "metadata.json").read_text())


@pytest.mark.slow
def test_one_epoch_of_training_writes_a_checkpoint(tmp_path):
    monai_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "train.json"),
        "--bundle_root",
        str(BUNDLE),
        "--ckpt_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(tmp_path / "eval"),
        "--max_epochs",
        "1",
        "--epoch_length",
        "2",
        "--num_samples",
        "2",
    )
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu")
    assert any(k.startswith("head.") for k in state)


@pytest.mark.slow
def test_metadata_network_and_export(tmp_path):
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))
    # verify_net_in_out checks channels and dtype only; an unpadded net's output is smaller,
    # so the spatial shapes are checked here.
    verify_net_in_out(
        "network_def", meta_file=str(CONFIGS / "metadata.json"), config_file=str(CONFIGS / "inference.json")
    )
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu"))
    formats = meta()["network_data_format"]
    x = torch.rand(1, 1, *formats["inputs"]["image"]["spatial_shape"])
    with torch.no_grad():
        assert network(x).shape[2:] == tuple(formats["outputs"]["pred"]["spatial_shape"])

    # Scripting cannot compile the network's size check; tracing keeps it correct at other sizes.
    ckpt_export(
        "network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(BUNDLE / "models" / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        bundle_root=str(BUNDLE),
        use_trace=True,
        input_shape=[1, 1, 188, 188],
    )
    exported = torch.jit.load(str(tmp_path / "model.ts")).eval()
    x = torch.rand(1, 1, 284, 284)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), network(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_shipped_weights_reach_reported_scores(tmp_path):
    image = tifffile.imread(sample_path("img2d.tif", "nuclei_2d"))[:, EVAL_COLUMNS]
    true = tifffile.imread(sample_path("mask2d.tif", "nuclei_2d"))[:, EVAL_COLUMNS]
    check_shipped_scores(BUNDLE, image, true, tmp_path, MARGIN)
