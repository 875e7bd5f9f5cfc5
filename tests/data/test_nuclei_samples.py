"""The shipped nuclei samples are the files their manifests describe, and the split holds its counts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data import REPO_ROOT, manifest_path, sample_dir
from medseg.io.tiff import read_tiff

SAMPLES = {
    "2d": {"shape": (512, 512), "image_dtype": np.uint16, "label_dtype": np.uint16, "instances": 125},
    "3d": {"shape": (256, 256, 60), "image_dtype": np.uint16, "label_dtype": np.uint32, "instances": 20},
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(kind: str) -> tuple[dict, Path]:
    manifest = json.loads(Path(manifest_path(f"nuclei_{kind}")).read_text())
    folder = REPO_ROOT / manifest["files_dir"]
    assert folder == Path(sample_dir(f"nuclei_{kind}"))
    return manifest, folder


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_checksums_match_manifest_and_sha256sums(kind):
    manifest, folder = load(kind)
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    (case,) = manifest["training"]
    for key in ("image", "label"):
        digest = sha256(folder / case[key])
        assert digest == manifest["sha256"][case[key]] == listed[case[key]], case[key]
        assert (folder / case[key]).stat().st_size == case[f"bytes_{key}"]
    assert (folder / "LICENSE").read_text().startswith(("BSD 3-Clause", "\nCopyright"))
    assert manifest["source"]["version"] in (folder / "ATTRIBUTION.md").read_text()


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_shapes_dtypes_and_instance_counts(kind):
    manifest, folder = load(kind)
    (case,) = manifest["training"]
    expected = SAMPLES[kind]
    image, _ = read_tiff(folder / case["image"])
    label, _ = read_tiff(folder / case["label"])
    assert image.shape == label.shape == expected["shape"]
    assert image.dtype == expected["image_dtype"] and label.dtype == expected["label_dtype"]
    ids = np.unique(label)
    assert ids[0] == 0 and len(ids) - 1 == expected["instances"] == case["num_instances"]


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_split_ranges_hold_the_documented_nuclei(kind):
    manifest, folder = load(kind)
    split = manifest["split"]
    label, _ = read_tiff(folder / manifest["training"][0]["label"])
    ids = np.unique(label)[1:]
    axis = split["medseg_axis"]
    x = np.arange(label.shape[axis])
    total = np.bincount(label.ravel(), minlength=ids.max() + 1)

    def pixels_in(part: str) -> np.ndarray:
        start, stop = split[part]["x"]
        part_labels = np.compress((start <= x) & (x < stop), label, axis=axis)
        return np.bincount(part_labels.ravel(), minlength=ids.max() + 1)

    train, gap, evaluation = pixels_in("train"), pixels_in("gap"), pixels_in("eval")
    assert np.array_equal(train + gap + evaluation, total)  # the three parts tile the axis
    counts = split["counts"]
    assert counts["in_both_parts"] == int(np.sum((train[ids] > 0) & (evaluation[ids] > 0))) == 0
    assert counts["train"] == int(np.sum(2 * train[ids] > total[ids]))
    assert counts["train_whole"] == int(np.sum(train[ids] == total[ids]))
    assert counts["train_visible"] == int(np.sum(train[ids] > 0))
    assert counts["eval_whole"] == int(np.sum(evaluation[ids] == total[ids]))
    assert counts["eval_visible"] == int(np.sum(evaluation[ids] > 0))
    eval_ids = ids[2 * evaluation[ids] > total[ids]].tolist()
    assert eval_ids == split["eval_ids"] and counts["eval"] == len(eval_ids)
    neither = ids[(2 * train[ids] <= total[ids]) & (2 * evaluation[ids] <= total[ids])].tolist()
    assert neither == split["neither_ids"] and counts["neither"] == len(neither)
    assert counts["train"] + counts["eval"] + counts["neither"] == counts["total"] == len(ids)
    # every nucleus visible in the eval crop is an evaluation nucleus: no ignore mask needed
    assert (
        split["excluded_from_eval_ids"]
        == ids[(evaluation[ids] > 0) & (2 * evaluation[ids] <= total[ids])].tolist()
    )
    assert 0.25 <= counts["eval"] / counts["total"] <= 0.35
