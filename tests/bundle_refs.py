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
        "--log_dir", str(tmp_path / "logs"), "--max_epochs", "1", "--epoch_length", "2", *extra,
    )  # fmt: skip
    return torch.load(tmp_path / "models" / "model.pt", map_location="cpu")


def bundle_evaluation(bundle: Path, out: Path, metric: str) -> float:
    """The first case's ``metric`` as the bundle's own evaluate.json overlay (MetricsSaver) writes it."""
    configs = bundle / "configs"
    monai_bundle(
        "run", "--config_file", f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']",
        "--bundle_root", str(bundle), "--output_dir", str(out),
    )  # fmt: skip
    return float((out / f"{metric}_raw.csv").read_text().splitlines()[1].split(",")[1])


def train_beside_shipped(bundle: Path, tmp_path: Path, *extra: str) -> dict:
    """``train_briefly`` on a shipped bundle: the state dict it saved in ``tmp_path``, after checking
    it has the shipped network's keys and that the shipped weights were not touched."""
    import hashlib

    shipped = bundle / "models" / "model.pt"
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    state = train_briefly(bundle, tmp_path, *extra)
    assert state.keys() == torch.load(shipped, map_location="cpu", weights_only=True).keys()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before
    return state


def shipped_network(bundle: Path, net_in_out: bool = True):
    """The bundle's metadata checked by MONAI, and its inference config's parser and network with the
    shipped weights. ``verify_net_in_out`` checks channels and dtype only; an unpadded net's output
    is smaller, so the callers check the spatial shapes. A detection network returns detections,
    not a tensor: ``net_in_out=False`` leaves that check out."""
    from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

    configs = bundle / "configs"
    meta_file, config_file = str(configs / "metadata.json"), str(configs / "inference.json")
    verify_metadata(meta_file=meta_file, filepath=str(SCHEMA))
    if net_in_out:
        verify_net_in_out("network_def", meta_file=meta_file, config_file=config_file)
    parser = ConfigParser()
    parser.read_config(config_file)
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


def stardist_scores(true, pred) -> dict[str, float]:
    """The nuclei bundles' reported scores, computed independently with ``stardist.matching``; for
    lists of images, counts are pooled over them (``matching_dataset(..., by_image=False)``)."""
    from stardist.matching import matching, matching_dataset

    true, pred = (list(x) if isinstance(x, list | tuple) else [x] for x in (true, pred))

    def match(t: float):
        if len(true) == 1:
            return matching(true[0], pred[0], thresh=t)
        return matching_dataset(true, pred, thresh=t, by_image=False, show_progress=False)

    at = {t: match(t) for t in np.round(np.arange(0.5, 1.0, 0.05), 2)}
    m = at[0.5]
    inter = sum(int(np.sum((t > 0) & (p > 0))) for t, p in zip(true, pred, strict=True))
    union = sum(int(np.sum((t > 0) | (p > 0))) for t, p in zip(true, pred, strict=True))
    return {
        "ap": m.accuracy,
        "f1": m.f1,
        "precision": m.precision,
        "recall": m.recall,
        "panoptic_quality": m.panoptic_quality,
        "mean_ap": float(np.mean([s.accuracy for s in at.values()])),
        "cell_iou": inter / union,
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


def datalist_cut(entry: dict, name: str) -> np.ndarray:
    """The image or label of a bundle datalist entry as tifffile reads it (([z,] y, x)), cut to the
    entry's ``roi_start``/``roi_end`` (given in medseg's (x, y[, z]) order)."""
    import tifffile

    from medseg.data import sample_root

    array = tifffile.imread(Path(sample_root()) / entry[name])
    if "roi_start" in entry:
        window = [slice(a, b) for a, b in zip(entry["roi_start"], entry["roi_end"], strict=True)]
        array = array[tuple(window[::-1])]
    return array


def maskrcnn_inference(bundle: Path, images: list[Path], out: Path) -> list[tuple[np.ndarray, dict]]:
    """One `monai.bundle run` of a Mask R-CNN bundle's inference.json over ``images``: per image the
    instance map (tifffile order) and each instance's score, read from the saved score map."""
    configs = bundle / "configs"
    monai_bundle(
        "run", "--config_file", str(configs / "inference.json"), "--bundle_root", str(bundle),
        "--datalist", str([{"image": str(p)} for p in images]), "--output_dir", str(out),
    )  # fmt: skip
    results = []
    for path in images:
        instances = np.asarray(nib.load(out / f"{path.stem}_instances.nii.gz").dataobj).squeeze().T
        score_map = np.asarray(nib.load(out / f"{path.stem}_scores.nii.gz").dataobj).squeeze().T
        ids = np.unique(instances[instances > 0])
        scores = {int(i): float(score_map[instances == i][0]) for i in ids}
        assert all(np.all(score_map[instances == i] == scores[int(i)]) for i in ids)  # one score each
        results.append((instances, scores))
    return results


def check_maskrcnn_bundle(bundle: Path, parts: dict[str, str], evaluate: str, tmp_path: Path, margin: float):
    """A Mask R-CNN bundle's shipped weights against its reported figures and its own evaluator.

    ``parts`` maps a part name to a key of the bundle's ``configs/datalist.json``. One `monai.bundle
    run` of inference.json over every image of every part (cut to its roi and written as a file,
    as a user would give it); per part, every figure the bundle reports as ``eval_<score>_<part>``
    is within ``margin`` of StarDist's matching scores and pycocotools' mask AP (up to 1000
    detections per image) of that output. Then evaluate.json (medseg.metrics) on the part named
    ``evaluate`` gives StarDist's numbers to 1e-6 and pycocotools' mask AP to 1e-3.
    """
    import tifffile
    from coco_refs import coco_eval

    configs = bundle / "configs"
    datalist = json.loads((configs / "datalist.json").read_text())
    images, truth = {}, {}
    for part, key in parts.items():
        images[part], truth[part] = [], []
        for n, entry in enumerate(datalist[key]):
            images[part].append(tmp_path / f"{part}_{n}.tif")
            tifffile.imwrite(images[part][-1], datalist_cut(entry, "image"))
            truth[part].append(datalist_cut(entry, "label"))
    every = [path for paths in images.values() for path in paths]
    results = dict(zip(every, maskrcnn_inference(bundle, every, tmp_path / "out"), strict=True))
    reported = json.loads((configs / "metadata.json").read_text())["eval_metrics"]
    found = {}
    for part in parts:
        pred = [results[path][0] for path in images[part]]
        scores = stardist_scores(truth[part], pred)
        coco = coco_eval(truth[part], pred, [results[p][1] for p in images[part]], max_detections=1000)
        found[part] = {**scores, "mask_ap": coco[0], "mask_ap50": coco[1], "mask_ap75": coco[2]}
        print(part, {k: round(float(v), 3) for k, v in found[part].items()})
        for name, value in found[part].items():
            assert abs(value - reported[f"eval_{name}_{part}"]) <= margin, (part, name, found[part])

    monai_bundle(
        "run", "--config_file", f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']",
        "--bundle_root", str(bundle), "--output_dir", str(tmp_path / "eval"), "--eval_key", parts[evaluate],
    )  # fmt: skip
    ours = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name, value in found[evaluate].items():
        tolerance = 1e-3 if name.startswith("mask_ap") else 1e-6
        assert abs(ours[name] - value) <= tolerance, (name, ours[name], value)
