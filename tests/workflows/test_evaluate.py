"""``medseg.workflows.evaluate``: pairing, grids, rows and summaries, checked against MONAI's metric
classes, numpy counts and known edits of real and synthetic label maps."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric
from nibabel.processing import resample_to_output
from PIL import Image

from medseg.data import sample_path
from medseg.errors import InputError, MedsegWarning
from medseg.workflows.evaluate import EvaluationSettings, evaluate
from medseg.workflows.evaluate_cases import parse_regions

pytestmark = pytest.mark.filterwarnings("ignore:the (ground truth|prediction) of class")
SPACING = (1.0, 0.8, 2.5)


def _save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    affine = np.diag([*SPACING, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(array), affine), path)
    return path


def _monai(pred: np.ndarray, ref: np.ndarray, labels, spacing, tol: float = 2.0) -> dict[str, np.ndarray]:
    """MONAI's metric classes over a batch of cases: per case and label, and their aggregate."""
    p, r = (
        torch.stack([torch.as_tensor(np.stack([c == v for v in labels])) for c in x]).float()
        for x in (pred, ref)
    )
    out = {}
    for key, metric in (
        ("dice", DiceMetric(include_background=True, ignore_empty=True, reduction="mean_batch")),
        ("hd95", HausdorffDistanceMetric(include_background=True, percentile=95, reduction="mean_batch")),
        ("nsd", SurfaceDiceMetric([tol] * len(labels), include_background=True, reduction="mean_batch")),
    ):
        kwargs = {} if key == "dice" else {"spacing": list(spacing)}
        out[key] = metric(p, r, **kwargs).numpy()
        out[f"{key}_mean"] = metric.aggregate().numpy()
    return out


# -- a real case: the TotalSegmentator sample against an edited copy of itself ---------------------------


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """MONAI's metric classes on small volumes run 5x faster on one thread on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample_pair(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    ref_path = Path(sample_path("example_seg_fast_force_split.nii.gz"))
    image = nib.load(ref_path)
    ref = np.asarray(image.dataobj)
    pred = np.zeros_like(ref)
    pred[1:] = ref[:-1]  # everything one voxel (3 mm) along x
    pred[pred == 5] = 0  # the liver missed
    pred[2:6, 2:6, 2:6] = 1  # a stray spleen blob
    path = tmp_path_factory.mktemp("sample") / "example_pred.nii.gz"
    nib.save(nib.Nifti1Image(pred, image.affine), path)
    return path, ref_path, pred, ref


def test_real_case_rows_match_numpy_and_monai(sample_pair, tmp_path):
    pred_path, ref_path, pred, ref = sample_pair
    result = evaluate(pred_path, ref_path, tmp_path / "out")
    rows = {r["label"]: r for r in result.rows}
    assert sorted(rows) == sorted(set(np.unique(ref).tolist()) - {0})
    for label, row in rows.items():
        p, r = pred == label, ref == label
        assert row["pred_voxels"] == p.sum() and row["ref_volume"] == pytest.approx(r.sum() * 27 / 1000)
        assert row["dice"] == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), abs=1e-6)
    labels = [1, 2, 5, 98]
    expected = _monai(pred[None], ref[None], labels, (3.0, 3.0, 3.0))
    for i, label in enumerate(labels):
        assert rows[label]["nsd"] == pytest.approx(float(expected["nsd"][0, i]), abs=1e-6)
        if label == 5:  # missed: MONAI's HD95 is NaN (quantile of infinities), the distance is infinite
            assert math.isnan(expected["hd95"][0, i]) and rows[label]["hd95"] == math.inf
        else:
            assert rows[label]["hd95"] == pytest.approx(float(expected["hd95"][0, i]), abs=1e-4)
    # the stray blob is under 5% of the spleen's surface: HD95 stays at the 3 mm shift, NSD drops
    assert rows[1]["hd95"] == pytest.approx(3.0) and rows[1]["nsd"] < rows[2]["nsd"]
    saved = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert saved["rows"][[r["label"] for r in saved["rows"]].index(5)]["hd95"] == "inf"


def test_prediction_on_another_grid_is_resampled_with_a_warning(sample_pair, tmp_path):
    """The reference written at 1.5 mm, and flipped left-right (LAS): back on the reference grid by
    nearest neighbour, both match the reference exactly."""
    _, ref_path, _, ref = sample_pair
    image = nib.load(ref_path)
    fine = resample_to_output(nib.Nifti1Image(ref, image.affine), (1.5, 1.5, 1.5), order=0)
    nib.save(fine, tmp_path / "fine.nii.gz")
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = ref.shape[0] - 1
    _save(tmp_path / "flipped.nii.gz", ref[::-1], image.affine @ flip)
    for name in ("fine", "flipped"):
        with pytest.warns(MedsegWarning, match="resampled onto it"):
            result = evaluate(
                tmp_path / f"{name}.nii.gz", ref_path, tmp_path / name, EvaluationSettings(labels=(1, 5, 98))
            )
        assert [(r["dice"], r["hd95"], r["nsd"], r["resampled"]) for r in result.rows] == [
            (1.0, 0.0, 1.0, True)
        ] * 3


# -- synthetic cases: folders, summaries, regions, lesions -----------------------------------------------


def _ball(shape, centre, radius) -> np.ndarray:
    idx = np.indices(shape, dtype=float)
    return sum(((idx[d] - centre[d]) * SPACING[d]) ** 2 for d in range(3)) <= radius**2


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Case a: labels 1 and 2, predicted moved; case b: label 1 only, with a false label 2 predicted;
    case c: a prediction with no reference."""
    shape = (40, 40, 16)
    ref_a = np.zeros(shape, np.uint8)
    ref_a[_ball(shape, (20, 20, 8), 12)] = 1
    ref_a[_ball(shape, (12, 12, 8), 5)] = 2
    pred_a = np.roll(ref_a, 2, axis=1)
    ref_b = (_ball(shape, (22, 18, 7), 10)).astype(np.uint8)
    pred_b = np.roll(ref_b, 1, axis=0)
    pred_b[30:34, 30:34, 2:5] = 2
    # as medseg segment writes them: a case folder (a), or side by side with the region channels and
    # an overlay (b); references named as nnU-Net's (a) and BraTS's (b)
    (tmp_path / "pred" / "a").mkdir(parents=True)
    (tmp_path / "pred" / "a" / ".medseg-output").touch()
    _save(tmp_path / "pred" / "a" / "a_seg.nii.gz", pred_a)
    _save(tmp_path / "pred" / "b_seg.nii.gz", pred_b)
    _save(tmp_path / "pred" / "b_regions.nii.gz", np.zeros((*shape, 2), np.uint8))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "pred" / "b_overlay.png")
    _save(tmp_path / "pred" / "c_seg.nii.gz", pred_b)
    (tmp_path / "ref").mkdir()
    _save(tmp_path / "ref" / "a.nii.gz", ref_a)
    _save(tmp_path / "ref" / "b-seg.nii.gz", ref_b)
    return tmp_path / "pred", tmp_path / "ref", np.stack([pred_a, pred_b]), np.stack([ref_a, ref_b])


def test_folders_are_paired_by_case_name_and_summarised_as_monai(folders, tmp_path):
    pred_dir, ref_dir, preds, refs = folders
    settings = EvaluationSettings(names={1: "tumour"}, nsd_tolerance=1.5)
    with pytest.warns(MedsegWarning, match="pred: c"):
        result = evaluate(pred_dir, ref_dir, tmp_path / "out", settings)
    assert result.unmatched == ["pred: c"]
    assert [(r["case"], r["label"], r["name"]) for r in result.rows] == [
        ("a", 1, "tumour"), ("a", 2, "label_2"), ("b", 1, "tumour"), ("b", 2, "label_2")
    ]  # fmt: skip
    b2 = result.rows[3]
    assert math.isnan(b2["dice"]) and b2["hd95"] == math.inf and b2["nsd"] == 0 and b2["ref_voxels"] == 0
    expected = _monai(preds, refs, [1, 2], SPACING, tol=1.5)
    summary = {(r["case"], r["label"]): r for r in result.summary}
    for i, label in enumerate((1, 2)):
        for key in ("dice", "hd95", "nsd"):
            assert summary["mean", label][key] == pytest.approx(float(expected[f"{key}_mean"][i]), abs=1e-4)
    assert summary["n", 2]["dice"] == 1 and summary["n", 2]["nsd"] == 2 and summary["n", 2]["hd95"] == 1
    assert summary["median", 1]["pred_volume"] == pytest.approx(
        np.median([(p == 1).sum() for p in preds]) * 2e-3
    )


def test_a_label_missing_from_one_case_gets_an_empty_row(tmp_path):
    a = np.zeros((12, 12, 6), np.uint8)
    a[2:6, 2:6, 1:4] = 3
    b = np.zeros_like(a)
    b[5:9, 5:9, 1:4] = 1
    entries = []
    for name, arr in (("a", a), ("b", b)):
        entries.append(
            {
                "name": name,
                "pred": _save(tmp_path / f"{name}_p.nii.gz", arr).name,
                "label": f"{name}_r.nii.gz",
            }
        )
        _save(tmp_path / f"{name}_r.nii.gz", arr)
    (tmp_path / "list.json").write_text(json.dumps({"validation": entries}))
    result = evaluate(tmp_path / "list.json", None, tmp_path / "out")
    rows = {(r["case"], r["label"]): r for r in result.rows}
    assert sorted(rows) == [("a", 1), ("a", 3), ("b", 1), ("b", 3)]
    assert rows["a", 1]["pred_volume"] == 0 and all(
        math.isnan(rows["a", 1][k]) for k in ("dice", "hd95", "nsd")
    )
    assert rows["b", 1]["dice"] == 1.0


def _brats_like(shape, shift: int, small: bool = True) -> np.ndarray:
    """Oedema (2) around a core of necrosis (1) and enhancing tumour (3), and a second small lesion."""
    out = np.zeros(shape, np.uint8)
    out[_ball(shape, (20 + shift, 20, 8), 14)] = 2
    out[_ball(shape, (20 + shift, 20, 8), 8)] = 3
    out[_ball(shape, (20 + shift, 20, 8), 5)] = 1
    if small:
        out[_ball(shape, (36, 6, 3), 3)] = 3
    return out


def test_region_channels_against_a_label_map_reference(tmp_path):
    shape = (44, 40, 16)
    ref, pred = _brats_like(shape, 0), _brats_like(shape, 2, small=False)  # the small lesion missed
    order = {"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)}  # the MONAI BraTS bundle's channel order
    channels = np.stack([np.isin(pred, ids) for ids in order.values()], axis=-1).astype(np.uint8)
    _save(tmp_path / "regions.nii.gz", channels)
    _save(tmp_path / "labels.nii.gz", pred)
    _save(tmp_path / "ref.nii.gz", ref)
    assert list(parse_regions("brats").items()) == list(order.items())
    settings = EvaluationSettings(
        names={1: "TC", 2: "WT", 3: "ET"}, regions=order, lesions=True, lesion_min_volume=0
    )
    result = evaluate(tmp_path / "regions.nii.gz", tmp_path / "ref.nii.gz", tmp_path / "out", settings)
    assert result.mode == "regions" and [r["name"] for r in result.rows] == ["TC", "WT", "ET"]
    for row, ids in zip(result.rows, order.values(), strict=True):
        single = _monai(np.isin(pred, ids)[None], np.isin(ref, ids)[None], [True], SPACING)
        assert (row["dice"], row["hd95"], row["nsd"]) == pytest.approx(
            (float(single["dice"][0, 0]), float(single["hd95"][0, 0]), float(single["nsd"][0, 0])), abs=1e-4
        )
    et = result.rows[2]  # two ET lesions: the big one found, the small one missed, no false positive
    assert (et["lesion_tp"], et["lesion_fn"], et["lesion_fp"]) == (1, 1, 0)
    assert et["lesion_dice"] == pytest.approx(
        result.lesions[[x["name"] for x in result.lesions].index("ET")]["dice"] / 2
    )
    same = evaluate(tmp_path / "labels.nii.gz", tmp_path / "ref.nii.gz", tmp_path / "out2", settings)
    assert [(r["dice"], r["hd95"], r["lesion_f1"]) for r in same.rows] == [
        (r["dice"], r["hd95"], r["lesion_f1"]) for r in result.rows
    ]
    assert (tmp_path / "out" / "lesions.csv").read_text().count("\n") == len(result.lesions) + 1


def test_instances_count_the_objects_removed(tmp_path):
    ref_path = Path(sample_path("mask2d.tif", "nuclei_2d"))
    ref = np.array(Image.open(ref_path))
    ids = [i for i in np.unique(ref) if i]
    pred = ref.copy()
    pred[np.isin(pred, ids[:5])] = 0
    pred[pred == ids[10]] = 60000  # another id for the same object: still a match
    Image.fromarray(pred).save(tmp_path / "pred.tif")
    result = evaluate(tmp_path / "pred.tif", ref_path, tmp_path / "out", EvaluationSettings(instances=True))
    (row,) = result.rows
    n = len(ids)
    assert (row["n_true"], row["tp"], row["fn"], row["fp"]) == (n, n - 5, 5, 0)
    assert row["f1"] == pytest.approx(2 * (n - 5) / (2 * n - 5))
    assert result.summary[-1]["case"] == "pooled" and result.summary[-1]["recall"] == pytest.approx(
        (n - 5) / n
    )


# -- bad input: one clear error, nothing written ---------------------------------------------------------


def test_a_corrupt_case_stops_the_run_before_anything_is_written(folders, tmp_path):
    pred_dir, ref_dir, _, _ = folders
    (pred_dir / "b_seg.nii.gz").write_bytes(b"not a nifti")
    with warnings.catch_warnings(), pytest.raises(InputError, match="b_seg.nii.gz"):
        warnings.simplefilter("ignore")
        evaluate(pred_dir, ref_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_grids_that_cannot_be_matched_are_refused(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[2:5, 2:5, 1:3] = 1
    _save(tmp_path / "ref.nii.gz", a)
    far = np.diag([*SPACING, 1.0])
    far[:3, 3] = 1000.0
    _save(tmp_path / "far.nii.gz", a, far)
    with pytest.raises(InputError, match="do not overlap"):
        evaluate(tmp_path / "far.nii.gz", tmp_path / "ref.nii.gz", tmp_path / "out")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "p.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "r.png")
    with pytest.raises(InputError, match="PNG/JPEG carry no geometry"):
        evaluate(tmp_path / "p.png", tmp_path / "r.png", tmp_path / "out")
    with pytest.raises(InputError, match="2D prediction, 3D reference"):
        evaluate(tmp_path / "p.png", tmp_path / "ref.nii.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_grids_within_a_tenth_of_a_voxel_are_the_same_grid(tmp_path):
    """Float rounding in an affine, or a 5-dimensional NIfTI with one channel, is no reason to resample."""
    a = np.zeros((10, 10, 4), np.uint8)
    a[2:5, 2:5, 1:3] = 1
    _save(tmp_path / "ref.nii.gz", a)
    near = np.diag([*SPACING, 1.0])
    near[:3, 3] = 0.05 * np.array(SPACING)
    _save(tmp_path / "near.nii.gz", a[..., None], near)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        (row,) = evaluate(tmp_path / "near.nii.gz", tmp_path / "ref.nii.gz", tmp_path / "out").rows
    assert (row["dice"], row["hd95"], row["resampled"]) == (1.0, 0.0, False)
