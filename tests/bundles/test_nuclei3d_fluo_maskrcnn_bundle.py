"""The 3D Mask R-CNN nuclei bundle through MONAI's own runner (`python -m monai.bundle ...`).

The shipped weights' reported scores on the disjoint evaluation part of the 3D stack are recomputed
independently of ``medseg.metrics``: StarDist's ``matching`` and pycocotools' COCOeval (on voxels).
"""

from __future__ import annotations

import pytest
from bundle_refs import check_maskrcnn_bundle, shipped_network, train_briefly

from medseg.data import REPO_ROOT

BUNDLE = REPO_ROOT / "bundles" / "nuclei3d_fluo_maskrcnn"
CONFIGS = BUNDLE / "configs"
MARGIN = 0.02  # CPU kernels may differ across machines; a changed pipeline moves scores by more


@pytest.mark.slow
def test_one_epoch_of_training_and_validation_writes_a_checkpoint(tmp_path):
    state = train_briefly(BUNDLE, tmp_path, "--num_samples", "1")
    assert any(k.startswith("roi_heads.mask_head") for k in state)


def test_metadata_verifies_and_weights_load():
    _, network = shipped_network(BUNDLE, net_in_out=False)
    assert network.spatial_dims == 3
    assert (BUNDLE / "models" / "model.pt").stat().st_size < 10e6


@pytest.mark.slow
def test_shipped_weights_reach_reported_scores_and_bundle_evaluation_agrees(tmp_path):
    check_maskrcnn_bundle(BUNDLE, {"3d": "validation"}, "3d", tmp_path, MARGIN)
