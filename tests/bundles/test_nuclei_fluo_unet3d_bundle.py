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
from bundle_refs import check_shipped_scores, check_traced_export, shipped_network, train_briefly
from monai.bundle import ConfigParser

from medseg.data import REPO_ROOT, sample_path
from medseg.networks.unet_valid import output_size

BUNDLE = REPO_ROOT / "bundles" / "nuclei_fluo_unet3d"
CONFIGS = BUNDLE / "configs"
# data_manifests/nuclei_3d.json: eval x range [0, 86); x is medseg axis 0 = tifffile axis 2.
EVAL_X = slice(0, 86)
MARGIN = 0.02  # CPU kernels may differ across machines; a changed pipeline moves scores by more


def meta() -> dict:
    return json.loads((CONFIGS / "metadata.json").read_text())


@pytest.mark.slow
def test_one_epoch_of_training_writes_a_checkpoint(tmp_path):
    # --val_interval 2: no evaluation pass; the full-volume inference is covered below
    state = train_briefly(BUNDLE, tmp_path, "--num_samples", "1", "--val_interval", "2")
    assert any(k.startswith("head.") for k in state)
    assert state["head.weight"].ndim == 5  # a 3D network


@pytest.mark.slow
def test_metadata_network_and_export(tmp_path):
    parser, network = shipped_network(BUNDLE)
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

    # other valid sizes, anisotropic
    check_traced_export(BUNDLE, network, [1, 1, *in_shape], (84, 92, 76), tmp_path)


@pytest.mark.slow
def test_shipped_weights_reach_reported_scores(tmp_path):
    # tifffile reads (z, y, x); the eval part is a range of x, all y and z.
    image = tifffile.imread(sample_path("nuclei.tif", "nuclei_3d"))[:, :, EVAL_X]
    true = tifffile.imread(sample_path("nuclei_label.tif", "nuclei_3d"))[:, :, EVAL_X]
    assert len(np.unique(true)) - 1 == 6  # the manifest's 6 evaluation nuclei
    check_shipped_scores(BUNDLE, image, true, tmp_path, MARGIN)
