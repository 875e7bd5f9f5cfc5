"""A bundle without trained weights (brain_tumor_mri_segmentation ships none) is refused with one line
that says so and how to get them, before anything is written."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from bundle_refs import copy_bundle

from medseg.bundle.engine import BundleEngine
from medseg.bundle.locate import find_bundle
from medseg.errors import BundleError
from medseg.workflows.segment import segment

UNTRAINED = "brain_tumor_mri_segmentation"


def test_segment_with_the_untrained_shipped_bundle_says_how_to_train_it(tmp_path):
    rng = np.random.default_rng(0)
    channels = []
    for name in ("t1", "t1c", "t2", "flair"):
        channels.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(rng.uniform(1, 2, (16, 16, 16)).astype(np.float32), np.eye(4)), channels[-1])
    with pytest.raises(BundleError) as err:
        segment(channels, bundle=UNTRAINED, out_dir=tmp_path / "out", progress=False)
    message = str(err.value)
    root = find_bundle(UNTRAINED)
    assert "\n" not in message
    assert message.startswith(
        f"bundle {UNTRAINED} has no trained weights (no {root / 'models' / 'model.pt'})"
    )
    assert f"medseg train {root} dataset_dir=" in message and str(root / "docs" / "README.md") in message
    assert not (tmp_path / "out").exists()


def test_bundle_without_weights_or_train_config_asks_for_its_models_folder(tmp_path):
    bundle = copy_bundle(tmp_path / "no_weights")
    (bundle / "models" / "model.pt").unlink()
    (bundle / "configs" / "train.json").unlink()
    with pytest.raises(
        BundleError, match=r"has no trained weights \(no .*model\.pt\): install the bundle with"
    ):
        BundleEngine(bundle)
