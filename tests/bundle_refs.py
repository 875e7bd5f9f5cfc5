"""Shared by the bundle tests: run `python -m monai.bundle`, check metadata and export, and score
instances with StarDist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medseg.data import REPO_ROOT

SCHEMA = REPO_ROOT / "medseg" / "data" / "schema" / "meta_schema.json"


def medseg_cli(*args: str, cwd=None, timeout: int = 900) -> subprocess.CompletedProcess:
    """The real `medseg` command in a fresh process (the caller checks the exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def copy_bundle(dest: Path, source: str = "nuclei_fluo_unet3d") -> Path:
    """A copy of a shipped bundle (the smallest by default) at ``dest``."""
    import shutil

    from medseg.bundle.locate import shipped_bundles_dir

    shutil.copytree(shipped_bundles_dir() / source, dest)
    return dest


def monai_bundle(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run MONAI's own bundle runner in a fresh process; fail with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_briefly(bundle: Path, tmp_path: Path, *extra: str) -> dict:
    """One short epoch (2 iterations) of the bundle's train.json through ``monai.bundle run``;
    returns the state dict it saved."""
    monai_bundle(
        "run", "--config_file", str(bundle / "configs" / "train.json"), "--bundle_root", str(bundle),
        "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"),
        "--max_epochs", "1", "--epoch_length", "2", *extra,
    )  # fmt: skip
    return torch.load(tmp_path / "models" / "model.pt", map_location="cpu")


def shipped_network(bundle: Path):
    """The bundle's metadata checked by MONAI, and its inference config's parser and network with the
    shipped weights. ``verify_net_in_out`` checks channels and dtype only; an unpadded net's output
    is smaller, so the callers check the spatial shapes."""
    from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

    configs = bundle / "configs"
    verify_metadata(meta_file=str(configs / "metadata.json"), filepath=str(SCHEMA))
    verify_net_in_out(
        "network_def", meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json")
    )
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu"))
    return parser, network


def check_traced_export(bundle: Path, network, input_shape: list[int], other_shape: tuple, tmp_path: Path):
    """MONAI's ``ckpt_export`` traced at ``input_shape`` gives the network's output at another
    valid size (scripting cannot compile the network's size check; tracing keeps it correct)."""
    from monai.bundle import ckpt_export

    configs = bundle / "configs"
    ckpt_export(
        "network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(bundle),
        use_trace=True,
        input_shape=input_shape,
    )
    exported = torch.jit.load(str(tmp_path / "model.ts")).eval()
    x = torch.rand(1, 1, *other_shape)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), network(x), rtol=1e-4, atol=1e-4)


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
    against ``true``, require every reported (with weight map) figure to within ``margin`` (the
    README prints them), and require the bundle's own evaluate.json to give StarDist's numbers."""
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
    print("StarDist scores of the shipped weights:", {k: round(float(v), 3) for k, v in scores.items()})
    for name in scores:  # ap, f1, precision, recall, mean_ap, panoptic_quality, cell_iou
        expected = reported[f"eval_{name}_with_weight_map"]
        assert abs(scores[name] - expected) <= margin, (name, scores, reported)

    # The bundle's own evaluation (evaluate.json overlay, medseg.metrics) agrees with StarDist's.
    monai_bundle(
        "run", "--config_file", f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']",
        "--bundle_root", str(bundle), "--output_dir", str(tmp_path / "eval"),
    )  # fmt: skip
    bundle_scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name, value in scores.items():
        assert abs(bundle_scores[name] - value) <= 1e-6, name
