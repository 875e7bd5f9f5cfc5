"""Time per case: the ``medseg segment`` CLI vs ``python -m monai.bundle run``, same weights, same input.

    .venv/bin/python benchmarks/zoo_bundles.py                      # 9 bundles (10 cases), best of 2 rounds
    .venv/bin/python benchmarks/zoo_bundles.py --rounds 1 --only spleen_ct_segmentation

Bundles: six published model-zoo bundles (configs vendored in ``tests/data/zoo`` with seeded
random weights from their own ``network_def``, inputs and run overrides from ``tests/zoo_refs.py``)
and the three shipped ones (``bundles/``, their own weights):

- ``spleen_ct_segmentation``: ``zoo_refs.spleen_nifti`` (96x96x64 CT crop, 3 mm), and the 1.5 mm chest
  CT sample ``aorta_report/example_ct.nii.gz`` (233x167x191) for a case of realistic size;
- ``brats_mri_segmentation``: ``zoo_refs.brats_channels`` (4 channel files, 64x64x20), with
  ``ZOO_RUN_OVERRIDES`` (one 64^3 window; the same ``--override`` for medseg);
- ``pathology_nuclei_segmentation_classification``: ``zoo_refs.hovernet_png`` (RGB PNG 300x260);
- ``segmentation_template``: ``zoo_refs.template_nifti`` (64x64x48 CT crop);
- ``endoscopic_tool_segmentation``: ``zoo_refs.hovernet_png`` (its mask is compared with the PNG MONAI
  writes, scaled by 255);
- ``ventricular_short_axis_3label``: a 64x64x20 crop of the MR sample (a 2D network over its slices);
- ``abdomen_ct_segmentation``: ``example_ct.nii.gz`` (122x101x112, 3 mm);
- ``nuclei_fluo_unet2d``: ``img2d.tif`` (512x512);
- ``nuclei_fluo_unet3d``: a 60x80x80 corner of ``nuclei.tif``, an ImageJ TIFF (axes ZYX).

Each measurement is the wall time of one fresh subprocess (interpreter start, imports, bundle
parse, weights, read, inference, writing), in a new output folder. The two runners alternate
(medseg first in odd rounds, MONAI first in even ones) and each bundle keeps its best time over
``--rounds``. Labels are compared after the last round as ``tests/zoo/test_zoo_segment.py`` and
``tests/workflows/test_segment_engine.py`` do: medseg's label map (or instance and class maps)
against the file(s) MONAI's ``SaveImaged`` wrote, in the same axis order. Run it on a quiet
machine: both sides use every core, and contention moves the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from zoo_refs import (  # noqa: E402
    ZOO_RUN_OVERRIDES,
    ZOO_SEEDS,
    brats_channels,
    hovernet_png,
    make_zoo_bundle,
    monai_bundle_run,
    spleen_nifti,
    template_nifti,
)

TIMEOUT_S = 900


@dataclass
class Pair:
    """One label array medseg writes and the MONAI output it must equal (loaded in the same order)."""

    medseg_file: str  # name in medseg's --out
    monai_suffix: str  # the one file MONAI wrote whose name ends with this
    monai_order: Callable[[np.ndarray], np.ndarray] = lambda a: a  # MONAI's array -> medseg's file order


@dataclass(frozen=True)
class Spec:
    """How to benchmark one bundle: its input (files written under a folder) and what to compare."""

    make_input: Callable[[Path], list[Path]]
    input: str
    pairs: tuple[Pair, ...]
    zoo: bool  # a model-zoo bundle (vendored configs, random weights, zoo_refs' runner) or a shipped one


@dataclass
class Setup:
    """A bundle ready to run: its folder, the case's files, and the medseg options it needs."""

    name: str
    spec: Spec
    bundle: Path
    images: list[Path]
    medseg_args: list[str] = field(default_factory=list)


def _transposed(a: np.ndarray) -> np.ndarray:
    # MONAI saves medseg's (x, y[, z]) order as NIfTI; tifffile reads ([z,] y, x).
    return np.transpose(np.squeeze(a))


def _cli_overrides(name: str) -> list[str]:
    """The same config overrides as the reference run, less the ones for MONAI's writers."""
    keep = {k: v for k, v in ZOO_RUN_OVERRIDES[name].items() if not k.startswith("postprocessing")}
    return [a for k, v in keep.items() for a in ("--override", f"{k}={json.dumps(v)}")]


def _sample(name: str, source: str = "totalsegmentator") -> Callable[[Path], list[Path]]:
    def make(dest: Path) -> list[Path]:
        from medseg.data import sample_path

        return [Path(sample_path(name, source))]

    return make


def _mr_crop(dest: Path) -> list[Path]:
    """64x64x20 of the MR sample, as tests/zoo/test_zoo_segment.py uses for the slice-wise bundle."""
    from medseg.data import sample_path

    path = dest / "mr.nii.gz"
    nib.save(nib.load(sample_path("example_mr_sm.nii.gz")).slicer[20:84, 10:74, :], path)
    return [path]


def _nuclei_3d(dest: Path) -> list[Path]:
    """60x80x80 (z, y, x) corner of the 3D nuclei sample as an ImageJ TIFF, as the engine test writes it."""
    import tifffile

    from medseg.data import sample_path

    stack = tifffile.imread(sample_path("nuclei.tif", "nuclei_3d"))[:60, :80, :80]
    path = dest / "stack.tif"
    calibration = {"spacing": 0.5, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.26, 1 / 0.26), metadata=calibration)
    return [path]


def _instances(stem: str, instance_suffix: str, class_suffix: str) -> tuple[Pair, ...]:
    return (
        Pair(f"{stem}_instances.ome.tif", instance_suffix, _transposed),
        Pair(f"{stem}_classes.ome.tif", class_suffix, _transposed),
    )


SPECS: dict[str, Spec] = {
    "spleen_ct_segmentation": Spec(
        lambda d: [spleen_nifti(d)],
        "CT crop 96x96x64, 3 mm (NIfTI)",
        (Pair("spleen_ct_seg.nii.gz", ".nii.gz"),),
        zoo=True,
    ),
    "spleen_ct_segmentation@chest_ct": Spec(
        _sample("aorta_report/example_ct.nii.gz"),
        "chest CT 233x167x191, 1.5 mm (NIfTI)",
        (Pair("example_ct_seg.nii.gz", ".nii.gz"),),
        zoo=True,
    ),
    "brats_mri_segmentation": Spec(
        brats_channels,
        "4 MR channel files 64x64x20 (NIfTI)",
        (Pair("brats_t1c_seg.nii.gz", ".nii.gz"),),
        zoo=True,
    ),
    "pathology_nuclei_segmentation_classification": Spec(
        lambda d: [hovernet_png(d)],
        "RGB PNG 300x260",
        _instances("hovernet_he", "_instance_map.nii.gz", "_type_map.nii.gz"),
        zoo=True,
    ),
    "segmentation_template": Spec(
        lambda d: [template_nifti(d)],
        "CT crop 64x64x48, 3 mm (NIfTI)",
        (Pair("template_ct_seg.nii.gz", ".nii.gz"),),
        zoo=True,
    ),
    "endoscopic_tool_segmentation": Spec(
        lambda d: [hovernet_png(d)],
        "RGB PNG 300x260",
        (Pair("hovernet_he_seg.ome.tif", ".png", lambda a: a // 255),),
        zoo=True,
    ),
    "ventricular_short_axis_3label": Spec(
        _mr_crop,
        "MR crop 64x64x20, 3 mm (NIfTI)",
        (Pair("mr_seg.nii.gz", ".nii.gz"),),
        zoo=True,
    ),
    "abdomen_ct_segmentation": Spec(
        _sample("example_ct.nii.gz"),
        "example_ct.nii.gz 122x101x112, 3 mm",
        (Pair("example_ct_seg.nii.gz", "example_ct_seg.nii.gz"),),
        zoo=False,
    ),
    "nuclei_fluo_unet2d": Spec(
        _sample("img2d.tif", "nuclei_2d"),
        "img2d.tif 512x512 (TIFF)",
        _instances("img2d", "_instances.nii.gz", "_classes.nii.gz"),
        zoo=False,
    ),
    "nuclei_fluo_unet3d": Spec(
        _nuclei_3d,
        "nuclei.tif crop 60x80x80 (ImageJ TIFF, ZYX)",
        _instances("stack", "_instances.nii.gz", "_classes.nii.gz"),
        zoo=False,
    ),
}
BUNDLES = tuple(SPECS)


def setup(name: str, work: Path) -> Setup:
    """The bundle folder and input of ``name`` under ``work`` (zoo bundles get their seeded weights)."""
    spec, bundle_name = SPECS[name], name.split("@")[0]  # "bundle@case": another input for a bundle
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    images = spec.make_input(inputs)
    if spec.zoo:
        bundle = make_zoo_bundle(bundle_name, work, seed=ZOO_SEEDS.get(bundle_name, 0))
    else:
        bundle = ROOT / "bundles" / bundle_name
    args = (["--channels"] if len(images) > 1 else []) + (_cli_overrides(bundle_name) if spec.zoo else [])
    return Setup(name, spec, bundle, images, args)


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        errors = [line for line in output.splitlines() if "Error" in line][:12]
        raise RuntimeError(
            f"{what} failed (rc {proc.returncode}):\n" + "\n".join(errors) + "\n" + output[-3000:]
        )


def medseg_command() -> list[str]:
    """The installed ``medseg`` console script next to this interpreter (else ``-m medseg.cli.main``)."""
    script = Path(sys.executable).parent / "medseg"
    return [str(script)] if script.exists() else [sys.executable, "-m", "medseg.cli.main"]


def run_medseg(s: Setup, out: Path) -> float:
    command = [*medseg_command(), "segment", *map(str, s.images), "--bundle", str(s.bundle),
               "--out", str(out), "--quiet", *s.medseg_args]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - start
    _check(proc, f"medseg segment {s.name}")
    return seconds


def run_monai(s: Setup, out: Path) -> float:
    if s.spec.zoo:
        case = s.images if len(s.images) > 1 else s.images[0]  # BraTS: one case of four channel files
        return monai_bundle_run(s.bundle, [case], out, ZOO_RUN_OVERRIDES[s.bundle.name]).seconds
    command = [sys.executable, "-m", "monai.bundle", "run",
               "--config_file", str(s.bundle / "configs" / "inference.json"), "--bundle_root", str(s.bundle),
               "--input_image", str(s.images[0]), "--output_dir", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - start
    _check(proc, f"monai.bundle run {s.name}")
    return seconds


def _read(path: Path) -> np.ndarray:
    name = path.name.lower()
    if name.endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(path)
    if name.endswith(".png"):
        from PIL import Image

        return np.asarray(Image.open(path))
    return np.asarray(nib.load(path).dataobj)


def compare(s: Setup, medseg_out: Path, monai_out: Path) -> str:
    """``yes`` if every label array equals MONAI's, else what differs."""
    problems = []
    monai_files = sorted(p for p in monai_out.rglob("*") if p.is_file())
    for pair in s.spec.pairs:
        found = [p for p in monai_files if p.name.endswith(pair.monai_suffix)]
        mine = medseg_out / pair.medseg_file
        if len(found) != 1 or not mine.exists():
            problems.append(f"{pair.medseg_file}: missing (MONAI wrote {[p.name for p in monai_files]})")
            continue
        got = _read(mine)
        expected = np.rint(pair.monai_order(_read(found[0])))
        if got.shape != expected.shape:
            problems.append(f"{pair.medseg_file}: shape {got.shape} vs {expected.shape}")
        elif not np.array_equal(got, expected.astype(got.dtype)):
            problems.append(f"{pair.medseg_file}: {int((got != expected).sum())} of {got.size} differ")
    return "yes" if not problems else "no: " + "; ".join(problems)


def benchmark(names: list[str], rounds: int, work: Path) -> list[dict]:
    setups = [setup(name, work / name) for name in names]
    best = {s.name: {"medseg": float("inf"), "monai": float("inf")} for s in setups}
    for r in range(rounds):
        for s in setups:
            order = ("medseg", "monai") if r % 2 == 0 else ("monai", "medseg")
            for side in order:
                out = work / s.name / f"out_{side}"
                shutil.rmtree(out, ignore_errors=True)
                seconds = (run_medseg if side == "medseg" else run_monai)(s, out)
                best[s.name][side] = min(best[s.name][side], seconds)
                print(f"round {r + 1} {s.name} {side}: {seconds:.2f} s", file=sys.stderr, flush=True)
    rows = []
    for s in setups:
        b = best[s.name]
        same = compare(s, work / s.name / "out_medseg", work / s.name / "out_monai")
        rows.append({"bundle": s.name, "input": s.spec.input, **b, "same": same})
    return rows


def table(rows: list[dict], rounds: int) -> str:
    lines = [
        f"Best of {rounds} round(s), wall time of one subprocess per case.\n",
        "| bundle | input | medseg s | monai.bundle run s | ratio (monai/medseg) | labels identical |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['bundle']} | {r['input']} | {r['medseg']:.2f} | {r['monai']:.2f} | "
            f"{r['monai'] / r['medseg']:.2f}x | {r['same'].replace('|', '/')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="best of this many rounds (default 2)")
    parser.add_argument("--only", nargs="+", choices=BUNDLES, help="these bundles only")
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep it (default: a temporary one)"
    )
    args = parser.parse_args()
    names = list(args.only or BUNDLES)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows = benchmark(names, args.rounds, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="zoo_bundles_") as tmp:
            rows = benchmark(names, args.rounds, Path(tmp))
    print(table(rows, args.rounds))


if __name__ == "__main__":
    main()
