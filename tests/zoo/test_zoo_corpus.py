"""The vendored model-zoo corpus itself: files as published, metadata that MONAI accepts, random weights
that fit the bundles' own networks, and MONAI's runner writing labels on the input grid."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from zoo_refs import (
    ZOO,
    ZOO_BUNDLES,
    ZOO_COMMIT,
    ZOO_EXTRA,
    ZOO_RUN_OVERRIDES,
    ZOO_SEEDS,
    brats_4d,
    brats_channels,
    config_file,
    hovernet_png,
    make_zoo_bundle,
    monai_bundle_run,
    spleen_nifti,
    template_nifti,
    zoo_network,
)

from medseg.data import REPO_ROOT

MIRROR = Path("/work/.mirror/Project-MONAI+model-zoo/repo")
SCHEMA = REPO_ROOT / "medseg" / "data" / "schema" / "meta_schema.json"


def _vendored(bundle: str) -> list[Path]:
    return sorted(p for p in (ZOO / bundle).rglob("*") if p.is_file())


def test_corpus_holds_only_configs_and_licences():
    for bundle in (*ZOO_BUNDLES, *ZOO_EXTRA):
        names = {str(p.relative_to(ZOO / bundle)) for p in _vendored(bundle)}
        config = config_file(ZOO / bundle).name
        assert names == {"LICENSE", "configs/metadata.json", f"configs/{config}", "configs/logging.conf"}, (
            bundle
        )
    assert ZOO_COMMIT in (ZOO / "README.md").read_text()


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no model-zoo snapshot at {MIRROR} (only on dev machines)")
@pytest.mark.parametrize("bundle", (*ZOO_BUNDLES, *ZOO_EXTRA))
def test_vendored_bytes_match_the_named_commit(bundle):
    for path in _vendored(bundle):
        rel = path.relative_to(ZOO / bundle).as_posix()
        source = "LICENSE" if bundle in ZOO_EXTRA and rel == "LICENSE" else f"models/{bundle}/{rel}"
        published = subprocess.run(
            ["git", "-C", str(MIRROR), "show", f"{ZOO_COMMIT}:{source}"],
            capture_output=True,
            check=True,
        ).stdout
        assert path.read_bytes() == published, f"{bundle}/{rel} differs from the zoo at {ZOO_COMMIT}"


@pytest.mark.filterwarnings("ignore:No hash value provided")
@pytest.mark.parametrize("bundle", ZOO_BUNDLES)
def test_metadata_verifies_and_declares_inputs_and_outputs(bundle):
    from monai.bundle import verify_metadata

    meta_file = ZOO / bundle / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA))
    formats = json.loads(meta_file.read_text())["network_data_format"]
    assert formats["inputs"]["image"]["num_channels"] >= 1
    assert formats["outputs"] and all(out["channel_def"] for out in formats["outputs"].values())


@pytest.mark.parametrize("bundle", ZOO_BUNDLES)
def test_random_weights_load_strictly_and_follow_the_seed(bundle, tmp_path):
    folder = make_zoo_bundle(bundle, tmp_path / "a", seed=3)
    state = torch.load(folder / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    zoo_network(folder).load_state_dict(state, strict=True)

    torch.manual_seed(3)
    again = zoo_network(folder).state_dict()
    assert all(torch.equal(again[k], v) for k, v in state.items())


def test_inputs_are_real_small_and_distinct(tmp_path):
    channels = [nib.load(p) for p in brats_channels(tmp_path)]
    stacked = nib.load(brats_4d(tmp_path))
    assert stacked.shape == (*channels[0].shape, 4) and max(channels[0].shape) <= 64
    assert all(np.array_equal(c.affine, stacked.affine) for c in channels)
    data = [np.asarray(c.dataobj) for c in channels]
    assert all(not np.allclose(data[i], data[j]) for i in range(4) for j in range(i + 1, 4))
    np.testing.assert_array_equal(np.asarray(stacked.dataobj)[..., 2], data[2])

    from PIL import Image

    with Image.open(hovernet_png(tmp_path)) as png:
        assert png.mode == "RGB" and png.size == (300, 260)  # PIL size is (width, height)


def _label_run(bundle: str, case, tmp_path: Path) -> tuple[np.ndarray, dict]:
    """One case through ``monai.bundle run``: its single output file must lie on the case's grid."""
    folder = make_zoo_bundle(bundle, tmp_path, seed=ZOO_SEEDS[bundle])
    result = monai_bundle_run(folder, [case], tmp_path / "out", ZOO_RUN_OVERRIDES[bundle])
    assert len(result.files) == 1 and result.seconds > 0, result.files
    source = nib.load(case[0] if isinstance(case, list) else case)
    label = nib.load(result.files[0])
    assert label.shape == source.shape
    np.testing.assert_allclose(label.affine, source.affine, atol=1e-4)
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    return np.asarray(label.dataobj), meta["network_data_format"]["outputs"]["pred"]["channel_def"]


def _check_label_run(bundle: str, image: Path, tmp_path: Path) -> None:
    labels, channel_def = _label_run(bundle, image, tmp_path)
    assert set(np.unique(labels).astype(int)) <= {int(k) for k in channel_def}


@pytest.mark.slow
def test_spleen_runs_under_monai_on_the_input_grid(tmp_path):
    _check_label_run("spleen_ct_segmentation", spleen_nifti(tmp_path), tmp_path)


@pytest.mark.slow
def test_segmentation_template_runs_under_monai_on_the_input_grid(tmp_path):
    _check_label_run("segmentation_template", template_nifti(tmp_path), tmp_path)


@pytest.mark.slow
def test_brats_runs_under_monai_and_writes_brats_labels(tmp_path):
    # Three sigmoid channels (TC, WT, ET) become one map with the BraTS label values via the config's Lambdad.
    labels, channel_def = _label_run("brats_mri_segmentation", brats_channels(tmp_path), tmp_path)
    assert len(channel_def) == 3 and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
