"""Held-apart Dice of the lung tumour and brain extraction bundles, and what each step does.

    .venv/bin/python benchmarks/tumour_brain.py                     # shipped weights, CPU
    .venv/bin/python benchmarks/tumour_brain.py --lung-bundle NAME=FOLDER   # one more trained variant

Lung (``lung_tumor_ct_segmentation``, held-apart case ``lung1``; trained on ``lung2`` only): the
bundle as shipped, then with one inference step turned off by a config override: the lung-region
crop (``lung_margin`` so large that the crop keeps the whole scan) and the component-size filter
(``min_lesion_ml`` 0). Training-time steps need a model trained without them: pass such bundles
with ``--lung-bundle``. Settings were fixed before lung1 was first scored; these rows are a
sensitivity analysis, not a choice.

Brain (``brain_mri_extraction``, held-apart subject Colin27 with its own brain mask): the image as
given (it lies in MNI space, as the template does), then moved rigidly (rotations of 20-30 degrees
about all three axes and shifts of 20-30 mm; image resampled linearly and mask by nearest
neighbour with SimpleITK onto an axis-aligned 1 mm grid that holds the whole moved head). The
baseline is the template's own brain mask placed in world coordinates (what "register nothing,
assume MNI space" gives): perfect when the head lies where the template does, poor elsewhere.

Every prediction runs through ``medseg.bundle.engine.BundleEngine`` (what ``medseg segment``
runs); Dice is computed here with numpy on the reference's grid.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from medseg.bundle.engine import BundleEngine
from medseg.data import REPO_ROOT, sample_path
from medseg.io import read_image

sys.path.insert(0, str(REPO_ROOT / "tests"))
from brain_refs import MOVES, dice, rigid_move, template_mask_on  # noqa: E402

BUNDLES = REPO_ROOT / "bundles"


def segment(bundle: Path, image: str | Path, overrides: dict | None = None) -> tuple[np.ndarray, float]:
    engine = BundleEngine(bundle, device="cpu", overrides=overrides)
    start = time.perf_counter()
    labels = engine(image).labels
    return labels, time.perf_counter() - start


def lung_rows(extra: dict[str, Path]) -> list[tuple[str, float, float]]:
    reference, _ = read_image(sample_path("lung1_label.nrrd", "pyradiomics"))
    image = sample_path("lung1_image.nrrd", "pyradiomics")
    bundle = BUNDLES / "lung_tumor_ct_segmentation"
    variants = {
        "as shipped": (bundle, None),
        "without the lung-region crop": (bundle, {"lung_margin": [10000, 10000, 10000]}),
        "without the component-size filter": (bundle, {"min_lesion_ml": 0.0}),
    }
    variants.update({name: (folder, None) for name, folder in extra.items()})
    rows = []
    for name, (folder, overrides) in variants.items():
        labels, seconds = segment(folder, image, overrides)
        rows.append((name, dice(labels, reference), seconds))
    return rows


def brain_rows(folder: Path) -> list[tuple[str, float, float, float]]:
    bundle = BUNDLES / "brain_mri_extraction"
    cases = {
        "as given": (sample_path("ch2.nii.gz", "colin27"), sample_path("ch2_brainmask.nii.gz", "colin27"))
    }
    for name, (rotation, shift) in MOVES.items():
        image, mask = (folder / f"{name.replace(' ', '_')}_{k}.nii.gz" for k in ("t1", "mask"))
        t1, brain = cases["as given"]
        sitk.WriteImage(rigid_move(t1, rotation, shift, nearest=False), str(image))
        sitk.WriteImage(rigid_move(brain, rotation, shift, nearest=True, like=t1), str(mask))
        cases[name] = (str(image), str(mask))
    rows = []
    for name, (image, mask) in cases.items():
        reference, _ = read_image(mask)
        labels, seconds = segment(bundle, image)
        baseline = dice(template_mask_on(mask), sitk.GetArrayFromImage(sitk.ReadImage(mask)))
        rows.append((name, dice(labels, reference), baseline, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lung-bundle", action="append", default=[], help="NAME=FOLDER: a trained variant")
    parser.add_argument("--only", choices=("lung", "brain"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only != "brain":
        extra = dict(spec.split("=", 1) for spec in args.lung_bundle)
        print("| lung tumour bundle, held-apart lung1 | Dice | s |\n| --- | --- | --- |")
        for name, value, seconds in lung_rows({k: Path(v) for k, v in extra.items()}):
            print(f"| {name} | {value:.3f} | {seconds:.1f} |", flush=True)
    if args.only != "lung":
        print("\n| Colin27 T1 | brain_mri_extraction Dice | template-in-world baseline Dice | s |")
        print("| --- | --- | --- | --- |")
        with tempfile.TemporaryDirectory() as tmp:
            for name, value, baseline, seconds in brain_rows(Path(tmp)):
                print(f"| {name} | {value:.3f} | {baseline:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
