"""Shared by the bundle tests: run `python -m monai.bundle`, and score instances with StarDist."""

from __future__ import annotations

import subprocess
import sys

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
