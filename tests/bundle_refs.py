"""Shared by the bundle tests: run `python -m monai.bundle`, and score instances with StarDist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def monai_bundle(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run MONAI's own bundle runner in a fresh process; fail with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def stardist_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The nuclei bundles' reported scores, computed independently with ``stardist.matching``."""
    from stardist.matching import matching

    at = {t: matching(true, pred, thresh=t) for t in np.round(np.arange(0.5, 1.0, 0.05), 2)}
    m = at[0.5]
    return {
        "ap": m.accuracy,
        "f1": m.f1,
        "precision": m.precision,
        "recall": m.recall,
        "panoptic_quality": m.panoptic_quality,
        "mean_ap": float(np.mean([s.accuracy for s in at.values()])),
        "cell_iou": float(np.sum((true > 0) & (pred > 0)) / np.sum((true > 0) | (pred > 0))),
    }


def check_shipped_scores(
    bundle: Path, image: np.ndarray, true: np.ndarray, tmp_path: Path, margin: float
) -> None:
    """Run a nuclei bundle's inference on ``image`` (tifffile axis order), score it with StarDist
    against ``true``, require the reported (with weight map) figures minus ``margin``, and require
    the bundle's own evaluate.json to give StarDist's numbers."""
    import tifffile

    configs = bundle / "configs"
    tifffile.imwrite(tmp_path / "eval_part.tif", image)
    monai_bundle(
        "run", "--config_file", str(configs / "inference.json"), "--bundle_root", str(bundle),
        "--input_image", str(tmp_path / "eval_part.tif"), "--output_dir", str(tmp_path / "out"),
    )  # fmt: skip
    # The bundle writes medseg's (x, y[, z]) order; tifffile reads ([z,] y, x).
    pred = np.asarray(nib.load(tmp_path / "out" / "eval_part_instances.nii.gz").dataobj).T
    assert pred.shape == true.shape
    scores = stardist_scores(true, pred)
    reported = json.loads((configs / "metadata.json").read_text())["eval_metrics"]
    for name in ("ap", "f1", "mean_ap", "panoptic_quality", "cell_iou"):
        assert scores[name] >= reported[f"eval_{name}_with_weight_map"] - margin, (name, scores, reported)

    # The bundle's own evaluation (evaluate.json overlay, medseg.metrics) agrees with StarDist's.
    monai_bundle(
        "run", "--config_file", f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']",
        "--bundle_root", str(bundle), "--output_dir", str(tmp_path / "eval"),
    )  # fmt: skip
    bundle_scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name, value in scores.items():
        assert abs(bundle_scores[name] - value) <= 1e-6, name
