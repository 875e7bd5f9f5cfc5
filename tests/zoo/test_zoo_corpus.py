"""The vendored model-zoo corpus itself: files as published, metadata that MONAI accepts, random weights
that fit the bundles' own networks, and small real inputs (MONAI's runner on them: test_zoo_segment.py)."""

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
    brats_4d,
    brats_channels,
    config_file,
    hovernet_png,
    make_zoo_bundle,
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
