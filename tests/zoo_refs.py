"""Real MONAI model-zoo bundles as test references: the vendored configs (``tests/data/zoo``) with
seeded random weights, small inputs cut from the embedded real samples, and MONAI's own runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medseg.data import sample_path

ZOO = Path(__file__).resolve().parent / "data" / "zoo"
ZOO_REPO = "Project-MONAI/model-zoo"
ZOO_COMMIT = "dfae206df112837d817e78d3727c9f32b3b52e82"
ZOO_BUNDLES = (
    "spleen_ct_segmentation",
    "brats_mri_segmentation",
    "pathology_nuclei_segmentation_classification",
    "segmentation_template",
    "endoscopic_tool_segmentation",
    "ventricular_short_axis_3label",
)

# Passed to every `monai.bundle run` on top of ZOO_RUN_OVERRIDES: worker processes only cost start-up
# time on 2 cores, and the published 2-4 workers multiply memory.
COMMON_OVERRIDES = {"dataloader#num_workers": 0}

ZOO_RUN_OVERRIDES: dict[str, dict] = {
    # Runs as published: 9 windows of 96^3 over the crop resampled to 192x192x96.
    "spleen_ct_segmentation": {},
    # The published 240x240x160 window pads a 64x64x20 case to 240x240x160 (12x the work); one 64^3 window.
    "brats_mri_segmentation": {"inferer#roi_size": [64, 64, 64]},
    # MONAI 1.6.1 cannot write a 2D NIfTI with SaveImaged's default resample=False (Project-MONAI/MONAI
    # #9068: spatial_resample compares None >= 0); resampling onto the image's own affine is the identity.
    "pathology_nuclei_segmentation_classification": {
        "postprocessing#transforms#4#resample": True,
        "postprocessing#transforms#5#resample": True,
    },
    # Runs as published (SimpleInferer over the whole image; sides must be multiples of 8).
    "segmentation_template": {},
    # An RGB image with its channels last (EnsureChannelFirstd(channel_dim=-1)); its 2D output meets the
    # same MONAI #9068 as HoVerNet's.
    "endoscopic_tool_segmentation": {"postprocessing#transforms#3#resample": True},
    # A 2D network over the slices of a volume (SliceInferer): the metadata says 2D, the input is 3D.
    "ventricular_short_axis_3label": {},
}

# Vendored for what they show, not run against MONAI: a datalist that reads a CSV at parse time, and a
# network that MONAI 1.6 can no longer build. Their LICENSE is the repository's root one.
ZOO_EXTRA = ("prostate_mri_anatomy", "swin_unetr_btcv_segmentation")

# Seeds whose random weights give non-trivial outputs on this module's inputs (every label/type present
# for the 3D bundles at seed 0; HoVerNet at seed 0 finds no nucleus, at seed 3 17 instances of type 1).
ZOO_SEEDS: dict[str, int] = {name: 0 for name in ZOO_BUNDLES} | {
    "pathology_nuclei_segmentation_classification": 3
}

# How each published inference config names its list of cases, and the form of one entry.
_DATALIST = {
    "spleen_ct_segmentation": ("datalist", "path"),
    "brats_mri_segmentation": ("test_datalist", "dict"),
    "pathology_nuclei_segmentation_classification": ("data_list", "dict"),
    "segmentation_template": ("data_list", "path"),
    "endoscopic_tool_segmentation": ("datalist", "path"),
    "ventricular_short_axis_3label": ("datalist", "path"),
}
# Older bundles name their run id `evaluating` (medseg runs no run id at all).
_RUN_IDS = {"ventricular_short_axis_3label": "evaluating"}
# Bundles whose writer names outputs by the input's path relative to `dataset_dir` (SaveImaged's
# `data_root_dir`): left at its default, outputs land outside `output_dir`, next to the inputs.
_ROOT_KEYS = {"segmentation_template": "dataset_dir"}


@dataclass(frozen=True)
class RunResult:
    """What one ``monai.bundle run`` wrote (sorted, recursive) and how long the subprocess took."""

    files: list[Path]
    seconds: float


def config_file(bundle: Path) -> Path:
    """The bundle's inference config: ``inference.json`` or, for YAML bundles, ``inference.yaml``."""
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (bundle / "configs" / name).exists():
            return bundle / "configs" / name
    raise FileNotFoundError(f"{bundle}/configs: no inference.json or inference.yaml")


def zoo_network(bundle: Path) -> torch.nn.Module:
    """The bundle's own ``network_def``, parsed alone (no datalist or dataset expression is run)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file(bundle)))
    return parser.get_parsed_content("network_def")


def make_zoo_bundle(name: str, dest: Path, seed: int = 0) -> Path:
    """Copy the vendored bundle ``name`` to ``dest/name`` and give it random weights from its own
    ``network_def`` (seeded), saved as a plain state dict in ``models/model.pt`` as the zoo ships.
    None of the four networks downloads anything (HoVerNet only does with ``pretrained_url``)."""
    bundle = Path(dest) / name
    shutil.copytree(ZOO / name, bundle)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        network = zoo_network(bundle)
    (bundle / "models").mkdir()
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    return bundle


def _save_crop(image: nib.Nifti1Image, slices: tuple, path: Path) -> Path:
    # nibabel's slicer moves the affine's origin with the crop.
    nib.save(image.slicer[slices], path)
    return path


def spleen_nifti(dest: Path) -> Path:
    """A 96x96x64 crop (3 mm voxels) of the real CT sample holding all of its spleen, kidneys and stomach
    and 94% of its liver (TotalSegmentator labels of the sample)."""
    ct = nib.load(sample_path("example_ct.nii.gz"))
    return _save_crop(ct, (slice(5, 101), slice(2, 98), slice(48, 112)), Path(dest) / "spleen_ct.nii.gz")


def template_nifti(dest: Path) -> Path:
    """A 64x64x48 crop of the real CT sample (sides multiples of 8, as the template's UNet needs)."""
    ct = nib.load(sample_path("example_ct.nii.gz"))
    return _save_crop(ct, (slice(10, 74), slice(10, 74), slice(60, 108)), Path(dest) / "template_ct.nii.gz")


def _brats_stand_ins() -> tuple[list[np.ndarray], np.ndarray]:
    """Four different channels (T1c, T1, T2, FLAIR stand-ins) from a 64x64x20 crop of the real MR."""
    from scipy import ndimage

    mr = nib.load(sample_path("example_mr_sm.nii.gz"))
    crop = mr.slicer[25:89, 12:76, :]
    x = np.asarray(crop.dataobj, dtype=np.float32).clip(0, None)
    channels = [
        x,
        x.max() * (x / x.max()) ** 0.6,
        np.where(x > 0, x.max() - x, 0),
        ndimage.gaussian_filter(x, sigma=1.5),
    ]
    return [c.astype(np.float32) for c in channels], crop.affine


def brats_channels(dest: Path) -> list[Path]:
    """Four 3D NIfTI files, one per BraTS channel in the bundle's order (T1c, T1, T2, FLAIR), same grid."""
    channels, affine = _brats_stand_ins()
    paths = []
    for name, data in zip(("t1c", "t1", "t2", "flair"), channels, strict=True):
        paths.append(Path(dest) / f"brats_{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[-1])
    return paths


def brats_4d(dest: Path) -> Path:
    """The same four channels stacked as one 4D NIfTI of shape (x, y, z, 4)."""
    channels, affine = _brats_stand_ins()
    path = Path(dest) / "brats_4d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack(channels, axis=-1), affine), path)
    return path


def hovernet_png(dest: Path) -> Path:
    """An H&E-looking RGB PNG, 300 wide by 260 high (width != height catches axis-order mistakes), from
    the real fluorescence nuclei sample: intensity inverted so nuclei are purple on white."""
    import tifffile
    from PIL import Image

    nuclei = tifffile.imread(sample_path("img2d.tif", "nuclei_2d"))[100:360, 50:350].astype(np.float32)
    v = (nuclei - nuclei.min()) / max(float(np.ptp(nuclei)), 1.0)
    rgb = 255.0 - np.stack([150 * v, 220 * v, 90 * v], axis=-1)
    path = Path(dest) / "hovernet_he.png"
    Image.fromarray(rgb.round().astype(np.uint8)).save(path)
    return path


def _datalist(name: str, images: list) -> dict:
    """The override that makes bundle ``name`` read exactly ``images``. For BraTS each item is one case,
    the list of its four channel files: its config has no EnsureChannelFirstd, so a 4D NIfTI would load
    channel-last."""
    key, form = _DATALIST[name]
    entries = [[str(c) for c in i] if isinstance(i, list | tuple) else str(i) for i in images]
    override = {key: [{"image": e} for e in entries] if form == "dict" else entries}
    if name in _ROOT_KEYS:
        files = [Path(f) for e in entries for f in (e if isinstance(e, list) else [e])]
        override[_ROOT_KEYS[name]] = os.path.commonpath([str(f.parent) for f in files])
    return override


def _cli(overrides: dict) -> list[str]:
    # MONAI's fire CLI reads each value as a Python literal; repr round-trips lists, numbers, bools and
    # strings (including "$..." expressions and paths).
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", repr(value)]
    return args


def _failure(name: str, proc: subprocess.CompletedProcess) -> RuntimeError:
    # MONAI wraps the real error in several "applying transform" / "Failed to evaluate" layers; name
    # every error line first so the cause survives the tail's cut.
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if "Error:" in line or "Error(" in line]
    return RuntimeError(
        f"monai.bundle run {name} failed (rc {proc.returncode}).\nErrors:\n"
        + "\n".join(errors[:12])
        + f"\nOutput tail:\n{output[-4000:]}"
    )


def monai_bundle_run(
    bundle_dir: Path, images: list, out_dir: Path, overrides: dict | None = None
) -> RunResult:
    """Run the bundle's inference config with ``python -m monai.bundle run`` on exactly ``images``,
    writing into ``out_dir``, with ``--dataloader#num_workers 0`` and then ``overrides`` (for example
    ``ZOO_RUN_OVERRIDES[name]``); fail with the runner's errors and output tail if it fails.
    ``bundle_dir`` must be named as in the zoo (``make_zoo_bundle`` does), since each config names its
    list of cases differently."""
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    configs = bundle_dir / "configs"
    args = ["run", "--config_file", str(config_file(bundle_dir))]
    args += ["--meta_file", str(configs / "metadata.json")]
    if (configs / "logging.conf").exists():
        args += ["--logging_file", str(configs / "logging.conf")]
    settings = {
        "bundle_root": str(bundle_dir),
        "output_dir": str(out_dir),
        **_datalist(bundle_dir.name, images),
        **({"run_id": _RUN_IDS[bundle_dir.name]} if bundle_dir.name in _RUN_IDS else {}),
        **COMMON_OVERRIDES,
        **(overrides or {}),
    }
    command = [sys.executable, "-m", "monai.bundle", *args, *_cli(settings)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise _failure(bundle_dir.name, proc)
    files = sorted(p for p in out_dir.rglob("*") if p.is_file()) if out_dir.exists() else []
    return RunResult(files, seconds)
