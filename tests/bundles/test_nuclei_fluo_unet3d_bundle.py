"""The 3D nuclei U-Net bundle through MONAI's own runner (`python -m monai.bundle ...`), on the real sample.

The shipped weights' scores are recomputed here with StarDist's ``matching`` (independent of
``medseg.metrics``) on the evaluation part of the volume, cut out with tifffile.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from bundle_refs import check_shipped_scores, monai_bundle
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from medseg.data import REPO_ROOT, sample_path
from medseg.networks.unet_valid import output_size

BUNDLE = REPO_ROOT / "bundles" / "nuclei_fluo_unet3d"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO_ROOT / "medseg" / "data" / "schema" / "meta_schema.json"
# data_manifests/nuclei_3d.json: eval x range [0, 86); x is medseg axis 0 = tifffile axis 2.
EVAL_X = slice(0, 86)
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
        "1",
        "--val_interval",
        "2",  # no evaluation pass: the full-volume inference is covered below
    )
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu")
    assert any(k.startswith("head.") for k in state)
    assert state["head.weight"].ndim == 5  # a 3D network


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
    in_shape = formats["inputs"]["image"]["spatial_shape"]
    out_shape = tuple(formats["outputs"]["pred"]["spatial_shape"])
    assert output_size(in_shape, parser["depth"]) == out_shape
    x = torch.rand(1, 1, *in_shape)
    with torch.no_grad():
        assert network(x).shape[2:] == out_shape

    # The training config uses the same tile and network as the metadata says.
    train = ConfigParser()
    train.read_config(str(CONFIGS / "train.json"))
    assert train.get_parsed_content("tile_size") == list(in_shape)
    assert tuple(train.get_parsed_content("output_size")) == out_shape
    assert train["network_def"] | {"features": 0} == parser["network_def"] | {"features": 0}
    assert train["features"] == parser["network_def"]["features"]

    # Scripting cannot compile the network's size check; tracing keeps it correct at other sizes.
    ckpt_export(
        "network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(BUNDLE / "models" / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        bundle_root=str(BUNDLE),
        use_trace=True,
        input_shape=[1, 1, *in_shape],
    )
    exported = torch.jit.load(str(tmp_path / "model.ts")).eval()
    x = torch.rand(1, 1, 84, 92, 76)  # other valid sizes, anisotropic
    with torch.no_grad():
        torch.testing.assert_close(exported(x), network(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_shipped_weights_reach_reported_scores(tmp_path):
    # tifffile reads (z, y, x); the eval part is a range of x, all y and z.
    image = tifffile.imread(sample_path("nuclei.tif", "nuclei_3d"))[:, :, EVAL_X]
    true = tifffile.imread(sample_path("nuclei_label.tif", "nuclei_3d"))[:, :, EVAL_X]
    assert len(np.unique(true)) - 1 == 6  # the manifest's 6 evaluation nuclei
    check_shipped_scores(BUNDLE, image, true, tmp_path, MARGIN)
