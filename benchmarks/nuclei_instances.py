"""Mask R-CNN against the U-Net + border-weights bundles, on the same held-apart nuclei.

    .venv/bin/python benchmarks/nuclei_instances.py            # all parts, shipped weights, CPU
    .venv/bin/python benchmarks/nuclei_instances.py --bundle-dir unet2d_wide=/path/to/bundle

Parts (each bundle's ``configs/datalist.json``, one rule for all bundles):
- ``dsb``: the right part of the DSB 2018 image (x 336-512, 36 nuclei), disjoint from training;
- ``bbbc007``: the 5 BBBC007 images kept out of training (489 nuclei, algorithm-made labels):
  another lab, microscope and cell line than DSB: the cross-source figure;
- ``3d``: the left part of the 3D nuclei stack (x 0-86), disjoint from training.

Each bundle runs through ``medseg.bundle.engine.BundleEngine`` (what ``medseg segment`` runs: the
bundle's own preprocessing, network, inferer and postprocessing). Scores are
``medseg.workflows.instances.instance_scores`` (counts pooled over a part's images; the bundle
tests check them against StarDist and pycocotools). The U-Net bundles give no per-instance score,
so for them every instance scores 1 and mask AP is one operating point. ``s/image`` is the engine's
``predict`` (network, inferer, postprocessing; not reading), the best of ``--repeat`` runs, after
one warm-up run per bundle. Run it on a quiet machine.

Last, the 3D Mask R-CNN bundle's time on a 128^3 volume (the issue's size): the stack's first
128x128 columns, its 60 planes mirrored out to 128 (real texture, nuclei cut and mirrored in z).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from medseg.bundle.engine import BundleEngine
from medseg.data import REPO_ROOT, sample_root
from medseg.workflows.instances import instance_scores

BUNDLES = REPO_ROOT / "bundles"
PARTS = {
    "dsb": ("nuclei_fluo_maskrcnn", "validation"),
    "bbbc007": ("nuclei_fluo_maskrcnn", "heldout"),
    "3d": ("nuclei3d_fluo_maskrcnn", "validation"),
}
METHODS = {  # name: (bundle folder, parts it runs on)
    "U-Net 2D + border weights": (BUNDLES / "nuclei_fluo_unet2d", ("dsb", "bbbc007")),
    "Mask R-CNN 2D": (BUNDLES / "nuclei_fluo_maskrcnn", ("dsb", "bbbc007")),
    "U-Net 3D + border weights": (BUNDLES / "nuclei_fluo_unet3d", ("3d",)),
    "Mask R-CNN 3D": (BUNDLES / "nuclei3d_fluo_maskrcnn", ("3d",)),
}
COLUMNS = ("mask_ap50", "mask_ap", "f1", "panoptic_quality", "ap", "mean_ap")


def _cut(array: np.ndarray, entry: dict) -> np.ndarray:
    """tifffile's ([z,] y, x) array cut to the entry's (x, y[, z]) roi."""
    if "roi_start" not in entry:
        return array
    start, end = entry["roi_start"], entry["roi_end"]
    window = tuple(slice(a, b) for a, b in zip(start, end, strict=True))[::-1]
    return array[window]


def part_images(part: str, folder: Path) -> list[tuple[Path, np.ndarray]]:
    """(image file, true instances in medseg order) per image of a part; cut parts written to ``folder``."""
    bundle, key = PARTS[part]
    entries = json.loads((BUNDLES / bundle / "configs" / "datalist.json").read_text())[key]
    cases = []
    for n, entry in enumerate(entries):
        image = Path(sample_root()) / entry["image"]
        label = _cut(tifffile.imread(Path(sample_root()) / entry["label"]), entry)
        if "roi_start" in entry:
            path = folder / f"{part}_{n}.tif"
            tifffile.imwrite(path, _cut(tifffile.imread(image), entry))
            image = path
        cases.append((image, np.transpose(label)))
    return cases


def run(bundle: Path, cases: list[tuple[Path, np.ndarray]], repeat: int) -> tuple[dict, float]:
    engine = BundleEngine(bundle, device="cpu")
    preds, best = [], []
    for n, (image, _) in enumerate(cases):
        case = engine.read(image)
        item = engine.preprocess(case)
        times = []
        for _ in range(repeat + (n == 0)):  # the first image once more: warm-up
            start = time.perf_counter()
            pred = engine.predict(item, case)
            times.append(time.perf_counter() - start)
        best.append(min(times[1:] if n == 0 else times))
        preds.append(pred)
    scores = None
    if all(p.scores is not None for p in preds):
        scores = [p.scores for p in preds]
    found = instance_scores([t for _, t in cases], [p.instances for p in preds], scores=scores)
    return found, float(np.mean(best))


def time_128(repeat: int, folder: Path) -> tuple[float, int]:
    """Best ``predict`` time of the shipped 3D Mask R-CNN bundle on a 128^3 volume, and its count."""
    stack = tifffile.imread(Path(sample_root()) / "nuclei_3d" / "nuclei.tif")[:, :128, :128]  # (z, y, x)
    volume = np.pad(stack, ((0, 128 - stack.shape[0]), (0, 0), (0, 0)), mode="symmetric")
    tifffile.imwrite(folder / "volume128.tif", volume)
    engine = BundleEngine(BUNDLES / "nuclei3d_fluo_maskrcnn", device="cpu")
    case = engine.read(folder / "volume128.tif")
    item = engine.preprocess(case)
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        pred = engine.predict(item, case)
        times.append(time.perf_counter() - start)
    return min(times[1:]), int(pred.instances.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bundle-dir", action="append", default=[], help="NAME=FOLDER[:PARTS]: one more")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = dict(METHODS)
    for spec in args.bundle_dir:
        name, folder = spec.split("=", 1)
        folder, _, parts = folder.partition(":")
        methods[name] = (Path(folder), tuple(parts.split(",")) if parts else ("dsb", "bbbc007"))
    print(f"| method | part | {' | '.join(COLUMNS)} | s/image |")
    print("| --- | --- |" + " --- |" * (len(COLUMNS) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        cases = {part: part_images(part, Path(tmp)) for part in PARTS}
        for name, (bundle, parts) in methods.items():
            for part in parts:
                scores, seconds = run(bundle, cases[part], args.repeat)
                values = " | ".join(f"{scores[c]:.3f}" for c in COLUMNS)
                print(f"| {name} | {part} | {values} | {seconds:.2f} |", flush=True)
        seconds, count = time_128(args.repeat, Path(tmp))
        print(f"\nMask R-CNN 3D on a 128^3 volume: {seconds:.2f} s ({count} instances)")


if __name__ == "__main__":
    main()
