"""The nuclei U-Net bundle through MONAI's own runner (`python -m monai.bundle ...`), on the real sample.

The shipped weights' scores are recomputed here with StarDist's ``matching`` (independent of
``medseg.metrics``) on the evaluation part of the image, cut out with tifffile.
"""

from __future__ import annotations

import json

import pytest
import tifffile
import torch
from bundle_refs import check_shipped_scores, check_traced_export, shipped_network, train_briefly

from medseg.data import REPO_ROOT, sample_path

BUNDLE = REPO_ROOT / "bundles" / "nuclei_fluo_unet2d"
CONFIGS = BUNDLE / "configs"
EVAL_COLUMNS = slice(336, 512)  # data_manifests/nuclei_2d.json: eval x range, x = TIFF column
MARGIN = 0.02  # CPU kernels may differ across machines; a changed pipeline moves scores by more


def meta() -> dict:
    return json.loads((CONFIGS / "metadata.json").read_text())


@pytest.mark.slow
def test_one_epoch_of_training_writes_a_checkpoint(tmp_path):
    state = train_briefly(BUNDLE, tmp_path, "--num_samples", "2")
    assert any(k.startswith("head.") for k in state)


@pytest.mark.slow
def test_metadata_network_and_export(tmp_path):
    _, network = shipped_network(BUNDLE)
    formats = meta()["network_data_format"]
    x = torch.rand(1, 1, *formats["inputs"]["image"]["spatial_shape"])
    with torch.no_grad():
        assert network(x).shape[2:] == tuple(formats["outputs"]["pred"]["spatial_shape"])
    check_traced_export(BUNDLE, network, [1, 1, 188, 188], (284, 284), tmp_path)


@pytest.mark.slow
def test_shipped_weights_reach_reported_scores(tmp_path):
    image = tifffile.imread(sample_path("img2d.tif", "nuclei_2d"))[:, EVAL_COLUMNS]
    true = tifffile.imread(sample_path("mask2d.tif", "nuclei_2d"))[:, EVAL_COLUMNS]
    check_shipped_scores(BUNDLE, image, true, tmp_path, MARGIN)
