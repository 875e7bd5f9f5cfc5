"""The abdomen bundle's disk cache (``cache_dir``): reused while the preprocessing is the same,
never when a deterministic transform's parameter changes."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from medseg.bundle.locate import shipped_bundles_dir

pytestmark = pytest.mark.slow
CONFIG = shipped_bundles_dir() / "abdomen_ct_segmentation" / "configs" / "train.json"


def _first_item(cache_dir, **overrides):
    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    parser.update({"cache_dir": str(cache_dir), **overrides})
    dataset = parser.get_parsed_content("train#dataset")
    dataset.transform.set_random_state(seed=7)
    return dataset[0], sorted(p.name for p in cache_dir.iterdir())


def test_cache_is_keyed_by_the_deterministic_preprocessing(tmp_path):
    first, files = _first_item(tmp_path)
    assert len(files) == 1 and files[0].endswith(".pt")
    again, files_again = _first_item(tmp_path)  # a new parser, new transform objects: same key
    assert files_again == files
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    _, after_noise = _first_item(tmp_path, **{"train#random_transforms#7#std": 0.2})  # random: not cached
    assert after_noise == files
    resampled, after_spacing = _first_item(tmp_path, spacing=[4.0, 4.0, 4.0])
    assert len(after_spacing) == 2 and set(files) < set(after_spacing)  # a new entry, the old one kept
    assert not torch.equal(resampled[0]["image"], first[0]["image"])
