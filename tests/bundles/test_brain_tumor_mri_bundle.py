"""The BraTS-recipe bundle (ships without weights) end to end on synthetic 4-channel phantoms: train
a few iterations with `python -m monai.bundle run`, infer, segment through `medseg segment`,
evaluate with the evaluate.json overlay.

No 4-channel brain tumour MRI can be obtained here, so the phantoms are made below: a skull-stripped
head-like ellipsoid of brain (zero outside, as BraTS gives it) with a nested tumour (necrotic core,
label 1, inside an enhancing rim, label 4, inside edema, label 2), each tissue with the relative
intensities it has in T1, T1c, T2 and FLAIR. A few iterations cannot teach the network the tumour, so
the tests check the mechanics (files, grids, regions, metrics against independent references), not
the quality of a trained model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_refs import SCHEMA, medseg_cli, monai_bundle
from monai.bundle import ConfigParser
from monai.data import load_decathlon_datalist

from medseg.data import REPO_ROOT

BUNDLE = REPO_ROOT / "bundles" / "brain_tumor_mri_segmentation"
CONFIGS = BUNDLE / "configs"
CHANNELS = ("t1", "t1c", "t2", "flair")  # the bundle's order (metadata channel_def)
# Relative intensity of each tissue per channel (T1, T1c, T2, FLAIR), as radiologists describe them:
# edema dark on T1, bright on T2 and FLAIR; the enhancing rim bright on T1c only; the necrotic core
# dark on T1/T1c, fluid-bright on T2 and suppressed on FLAIR; CSF dark on T1 and FLAIR, bright on T2.
TISSUES = {
    "brain": (1.0, 1.0, 1.0, 1.0),
    "csf": (0.3, 0.3, 1.9, 0.3),
    "edema": (0.7, 0.7, 1.6, 1.7),
    "necrosis": (0.4, 0.4, 1.9, 0.9),
    "enhancing": (0.8, 2.2, 1.2, 1.3),
}
SCANNER_SCALE = (450.0, 520.0, 610.0, 330.0)  # arbitrary units per channel, as scanners give them
# The BraTS 2021 label of each tumour tissue.
BRATS_LABELS = {"necrosis": 1, "edema": 2, "enhancing": 4}


def ellipsoid(shape: tuple, spacing: tuple, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Normalised distance (< 1 inside) from ``centre`` (mm) on a grid of ``spacing`` (mm)."""
    axes = [(np.arange(n) + 0.5) * s - c for n, s, c in zip(shape, spacing, centre, strict=True)]
    grids = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(sum((g / r) ** 2 for g, r in zip(grids, radii, strict=True)))


def phantom(shape: tuple, spacing: tuple, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(4, *shape) intensities in (T1, T1c, T2, FLAIR) order and the BraTS 2021 label map (0, 1, 2, 4).

    The brain fills most of the field of view; the tumour's centre, radii and elongation are drawn from
    ``seed``; a ventricle-like CSF ellipsoid sits at the centre of the brain."""
    rng = np.random.default_rng(seed)
    extent = np.asarray(shape) * np.asarray(spacing)
    centre = extent / 2
    brain = ellipsoid(shape, spacing, centre, extent * rng.uniform(0.40, 0.46, 3)) < 1
    csf = ellipsoid(shape, spacing, centre, extent * [0.08, 0.14, 0.08]) < 1
    where = centre + rng.choice([-1, 1], 3) * extent * rng.uniform(0.12, 0.18, 3)
    stretch = rng.uniform(0.8, 1.25, 3)
    core_r, rim, edema_r = rng.uniform(3.0, 4.5), rng.uniform(1.5, 2.5), rng.uniform(8.0, 11.0)
    distance = ellipsoid(shape, spacing, where, stretch)  # in mm along the stretched axes
    label = np.zeros(shape, np.uint8)
    label[(distance < edema_r) & brain] = BRATS_LABELS["edema"]
    label[distance < core_r + rim] = BRATS_LABELS["enhancing"]
    label[distance < core_r] = BRATS_LABELS["necrosis"]
    label[~brain] = 0
    tissue = np.full(shape, "brain", dtype=object)
    tissue[csf] = "csf"
    for name, value in BRATS_LABELS.items():
        tissue[label == value] = name
    image = np.zeros((4, *shape), np.float32)
    for name, levels in TISSUES.items():
        image[:, tissue == name] = np.asarray(levels, np.float32)[:, None]
    image *= 1 + 0.05 * rng.standard_normal(image.shape).astype(np.float32)
    image *= np.asarray(SCANNER_SCALE, np.float32)[:, None, None, None]
    image[:, ~brain] = 0  # skull-stripped, as BraTS
    return image, label


def write_case(folder: Path, name: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> dict:
    """One file per channel and the label, as BraTS gives them; the Decathlon datalist entry."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for channel, array in zip(CHANNELS, image, strict=True):
        files.append(f"{name}_{channel}.nii.gz")
        nib.save(nib.Nifti1Image(array, affine), folder / files[-1])
    nib.save(nib.Nifti1Image(label, affine), folder / f"{name}_seg.nii.gz")
    return {"image": files, "label": f"{name}_seg.nii.gz"}


def regions_reference(label: np.ndarray) -> np.ndarray:
    """BraTS 2021 labels -> (TC, WT, ET), written out from the BraTS definitions: the tumour core is
    necrosis and enhancing tumour, the whole tumour every tumour label, the enhancing tumour label 4."""
    return np.stack([(label == 1) | (label == 4), (label == 1) | (label == 2) | (label == 4), label == 4])


def merged_reference(regions: np.ndarray) -> np.ndarray:
    """Regions (TC, WT, ET) -> one BraTS label map: 4 where ET, else 1 where TC, else 2 where WT."""
    tc, wt, et = regions
    return np.where(et, 4, np.where(tc, 1, np.where(wt, 2, 0))).astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def channel_paths(folder: Path, entry: dict) -> list[str]:
    return [str(folder / name) for name in entry["image"]]


LPS_TILTED = np.array([[-1.0, 0, 0, 20.0], [0, -1.0, 0, 30.0], [0, 0, 1.2, -15.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def brats_data(tmp_path_factory) -> dict:
    """Two training and one validation phantom (48^3 at 1 mm, RAS, as BraTS after reorientation), a
    Decathlon datalist, and a held-out phantom on another grid (LPS, 1.2 mm slices, 40x48x36)."""
    root = tmp_path_factory.mktemp("brats")
    data = root / "data"
    cases = [write_case(data, f"case{s}", *phantom((48, 48, 48), (1, 1, 1), s), np.eye(4)) for s in range(3)]
    (data / "datalist.json").write_text(json.dumps({"training": cases[:2], "validation": cases[2:]}))
    held = write_case(root / "held", "held", *phantom((40, 48, 36), (1.0, 1.0, 1.2), 7), LPS_TILTED)
    return {"root": root, "data": data, "validation": cases[2], "held": held}


@pytest.fixture(scope="module")
def trained(brats_data) -> Path:
    """A copy of the bundle trained 2 iterations (one epoch of 2, 16^3 patches, then a validation on
    one 48^3 window) by MONAI's own runner; its checkpoints go to bundle_root/models."""
    bundle = brats_data["root"] / "bundle"
    shutil.copytree(BUNDLE, bundle)
    monai_bundle(
        "run", "--config_file", str(bundle / "configs" / "train.json"), "--bundle_root", str(bundle),
        "--dataset_dir", str(brats_data["data"]), "--patch_size", "[16,16,16]",
        "--inference_patch_size", "[48,48,48]", "--max_epochs", "1", "--epoch_length", "2",
        "--val_interval", "1", "--batch_size", "1", "--num_workers", "0",
    )  # fmt: skip
    return bundle


@pytest.fixture(scope="module")
def inferred(brats_data, trained) -> Path:
    """`monai.bundle run` of inference.json on the held-out and the validation phantom."""
    root = brats_data["root"]
    datalist = [{"image": channel_paths(root / "held", brats_data["held"])}]
    datalist.append({"image": channel_paths(brats_data["data"], brats_data["validation"])})
    monai_bundle(
        "run", "--config_file", str(trained / "configs" / "inference.json"), "--bundle_root", str(trained),
        "--datalist", json.dumps(datalist), "--output_dir", str(root / "monai_out"),
        "--inference_patch_size", "[48,48,48]",
    )  # fmt: skip
    return root / "monai_out"


def test_shipped_bundle_has_no_weights_and_verifies_offline():
    from monai.bundle import verify_metadata, verify_net_in_out

    assert not (BUNDLE / "models" / "model.pt").exists()
    meta_file, config_file = str(CONFIGS / "metadata.json"), str(CONFIGS / "inference.json")
    verify_metadata(meta_file=meta_file, filepath=str(SCHEMA))
    verify_net_in_out("network_def", meta_file=meta_file, config_file=config_file)
    meta = json.loads((CONFIGS / "metadata.json").read_text())["network_data_format"]
    assert meta["inputs"]["image"]["channel_def"] == {"0": "T1", "1": "T1c", "2": "T2", "3": "FLAIR"}
    assert meta["outputs"]["pred"]["num_channels"] == 3
    assert list(meta["outputs"]["pred"]["channel_def"].values()) == [
        "tumor_core",
        "whole_tumor",
        "enhancing_tumor",
    ]


# Label values each convention writes for BraTS 2021's 1 (NCR), 2 (ED), 4 (ET), and the overrides
# that tell the bundle; MSD Task01 also gives one 4D image per case in the order FLAIR, T1, T1c, T2.
CONVENTIONS = {
    "BraTS 2021": ({1: 1, 2: 2, 4: 4}, {}),
    "MSD Task01": (
        {1: 2, 2: 1, 4: 3},
        {"label_ncr": 2, "label_edema": 1, "label_et": 3, "channel_order": [1, 2, 3, 0]},
    ),
    "BraTS 2023": ({1: 1, 2: 2, 4: 3}, {"label_et": 3}),
}
MSD_ORDER = (3, 0, 1, 2)  # MSD's FLAIR, T1w, T1gd, T2w as indices into (T1, T1c, T2, FLAIR)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_train_config_converts_labels_and_channels(tmp_path, convention):
    """The train config's deterministic transforms (load, reorder, reorient, resample, relabel,
    convert, normalise) give the reference regions, nested ET < TC < WT, and each channel in the
    bundle's order normalised over the brain, whatever convention the phantom is written in."""
    image, label = phantom((48, 48, 48), (1, 1, 1), seed=3)
    values, overrides = CONVENTIONS[convention]
    relabelled = np.zeros_like(label)
    for brats, other in values.items():
        relabelled[label == brats] = other
    entry = write_case(tmp_path, "case", image, relabelled, np.eye(4))
    channels = channel_paths(tmp_path, entry)
    if convention == "MSD Task01":
        msd = np.moveaxis(image[list(MSD_ORDER)], 0, -1)  # one 4D file, channels last
        nib.save(nib.Nifti1Image(msd, np.eye(4)), tmp_path / "msd.nii.gz")
        channels = str(tmp_path / "msd.nii.gz")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    for key, value in overrides.items():
        parser[key] = value
    load = parser.get_parsed_content("validate#preprocessing")
    item = load({"image": channels, "label": str(tmp_path / entry["label"])})
    regions = item["label"].numpy() > 0
    expected = regions_reference(label)
    assert regions.shape == expected.shape and np.array_equal(regions, expected)
    tc, wt, et = expected
    assert et.any() and (tc & ~et).any() and (wt & ~tc).any()  # all three present and distinct
    assert not (et & ~tc).any() and not (tc & ~wt).any()  # nested
    brain = image[0] > 0
    reference = np.zeros_like(image)
    for c in range(4):  # z-scores over the brain (non-zero voxels), zero outside
        inside = image[c][brain]
        reference[c][brain] = (inside - inside.mean()) / inside.std()
    np.testing.assert_allclose(item["image"].numpy(), reference, atol=1e-3)


@pytest.mark.slow
def test_training_writes_checkpoints_into_bundle_models(trained, tmp_path):
    """Under MONAI's runner the model zoo convention holds: bundle_root/models gets model.pt (the
    final weights), model_best.pt (best validation Dice) and a resumable checkpoint with optimizer,
    scheduler, trainer counters and generator states; the weights export with MONAI's ckpt_export."""
    from monai.bundle import ckpt_export

    models = trained / "models"
    checkpoint = torch.load(
        models / "checkpoints" / "checkpoint_it00000002.pt", map_location="cpu", weights_only=True
    )
    assert {"model", "optimizer", "lr_scheduler", "trainer", "rng"} <= set(checkpoint)
    assert checkpoint["trainer"]["iteration"] == 2
    assert [s["step"] for s in checkpoint["optimizer"]["state"].values()][0] == 2  # two iterations ran
    for name in ("model.pt", "model_best.pt"):
        state = torch.load(models / name, map_location="cpu", weights_only=True)
        assert state.keys() == checkpoint["model"].keys()
    configs = trained / "configs"
    ckpt_export(
        "network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(models / "model.pt"),
        meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"),
        bundle_root=str(trained),
    )  # fmt: skip
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    network = parser.get_parsed_content("network_def").eval()
    state = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))
    x = torch.rand(1, 4, 16, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(tmp_path / "model.ts")).eval()(x), network(x))


@pytest.mark.slow
def test_monai_inference_writes_regions_on_the_input_grid(brats_data, inferred):
    """Three binary region channels and the merged BraTS map, on the held-out case's own (LPS, 1.2 mm)
    grid as nibabel reads it."""
    source = nib.load(brats_data["root"] / "held" / "held_t1.nii.gz")
    regions = nib.load(inferred / "held_t1_regions.nii.gz")
    merged = nib.load(inferred / "held_t1_seg.nii.gz")
    assert regions.shape == (*source.shape, 3) and merged.shape == source.shape
    for out in (regions, merged):
        np.testing.assert_allclose(out.affine, source.affine, atol=1e-5)
    stack = np.moveaxis(np.asarray(regions.dataobj), -1, 0)
    assert set(np.unique(stack)) <= {0, 1}
    np.testing.assert_array_equal(np.asarray(merged.dataobj), merged_reference(stack > 0))


@pytest.mark.slow
def test_medseg_segment_gives_monai_regions(brats_data, trained, inferred, tmp_path):
    """`medseg segment T1 T1c T2 FLAIR --channels` writes the overlapping regions (channel last) and
    the merged map on the input grid, voxel for voxel what `monai.bundle run` wrote."""
    out = tmp_path / "out"
    files = channel_paths(brats_data["root"] / "held", brats_data["held"])
    proc = medseg_cli(
        "segment", *files, "--channels", "--bundle", str(trained), "--out", str(out), "--quiet",
        "--override", "inference_patch_size=[48,48,48]",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "regions (nifti):" in proc.stdout and "whole_tumor" in proc.stdout
    for suffix in ("regions", "seg"):
        ours = nib.load(out / "held_t1" / f"held_t1_{suffix}.nii.gz")
        reference = nib.load(inferred / f"held_t1_{suffix}.nii.gz")
        np.testing.assert_allclose(ours.affine, reference.affine, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(reference.dataobj))
    rows = json.loads((out / "held_t1" / "held_t1_volumes.json").read_text())
    stack = np.asarray(nib.load(out / "held_t1" / "held_t1_regions.nii.gz").dataobj) > 0
    assert [r["name"] for r in rows] == ["tumor_core", "whole_tumor", "enhancing_tumor"]
    assert [r["voxels"] for r in rows] == [int(stack[..., i].sum()) for i in range(3)]


@pytest.mark.slow
def test_evaluate_overlay_scores_match_reference_dice(brats_data, trained, inferred):
    """evaluate.json on the validation phantom (a 1 mm RAS grid, so the bundle's space is the input's):
    its TC/WT/ET Dice equal those computed here from inference's output and the phantom's labels."""
    out = brats_data["root"] / "eval"
    configs = trained / "configs"
    monai_bundle(
        "run", "--config_file", f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']",
        "--bundle_root", str(trained), "--dataset_dir", str(brats_data["data"]), "--output_dir", str(out),
        "--inference_patch_size", "[48,48,48]", "--num_workers", "0",
    )  # fmt: skip
    scores = dict(line.split(",") for line in (out / "metrics.csv").read_text().split())
    label = np.asarray(nib.load(brats_data["data"] / brats_data["validation"]["label"]).dataobj)
    predicted = np.moveaxis(np.asarray(nib.load(inferred / "case2_t1_regions.nii.gz").dataobj), -1, 0) > 0
    expected = [dice(p, r) for p, r in zip(predicted, regions_reference(label), strict=True)]
    for name, value in zip(("tc", "wt", "et"), expected, strict=True):
        assert float(scores[f"val_mean_dice_{name}"]) == pytest.approx(value, abs=1e-5), name
    assert float(scores["val_mean_dice"]) == pytest.approx(np.mean(expected), abs=1e-5)


@pytest.mark.parametrize(
    "release, ends",
    [("2021", ("_t1", "_t1ce", "_t2", "_flair", "_seg")), ("2023", ("-t1n", "-t1c", "-t2w", "-t2f", "-seg"))],
)
def test_prepare_datalist_script(tmp_path, release, ends):
    """The bundle's script on a BraTS-named folder tree (empty files: only names matter): channels in
    the bundle's order, a seeded disjoint split of the labelled cases, unlabelled ones in ``test``,
    paths that MONAI's datalist loader resolves against ``dataset_dir``."""
    names = [f"case{i:02d}" for i in range(10)]
    for i, name in enumerate(names):
        (tmp_path / name).mkdir()
        for end in ends[:4] if i >= 8 else ends:  # two cases without a label, as a validation set
            (tmp_path / name / f"{name}{end}.nii.gz").touch()
    script = BUNDLE / "scripts" / "prepare_datalist.py"
    run = [sys.executable, str(script), str(tmp_path), "--release", release]
    proc = subprocess.run(run, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"{tmp_path / 'datalist.json'}: 6 training, 2 validation, 2 test"
    datalist = json.loads((tmp_path / "datalist.json").read_text())
    first = datalist["training"][0]["image"][0].split("/")[0]
    assert datalist["training"][0]["image"] == [f"{first}/{first}{end}.nii.gz" for end in ends[:4]]
    labelled = [c["label"].split("/")[0] for key in ("training", "validation") for c in datalist[key]]
    assert (
        sorted(labelled) == names[:8] and [c["image"][0].split("/")[0] for c in datalist["test"]] == names[8:]
    )
    subprocess.run([*run, "--output", str(tmp_path / "again.json")], check=True, capture_output=True)
    assert json.loads((tmp_path / "again.json").read_text()) == datalist  # the seed fixes the split
    loaded = load_decathlon_datalist(str(tmp_path / "datalist.json"), True, "validation", str(tmp_path))
    assert all(Path(p).is_file() for entry in loaded for p in [*entry["image"], entry["label"]])

    (tmp_path / names[0] / f"{names[0]}{ends[2]}.nii.gz").unlink()
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 1 and f"{names[0]}{ends[2]}.nii.gz: missing" in proc.stderr
