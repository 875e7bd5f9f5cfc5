"""`verify_dataset` on a small dataset written with nibabel: clean, then one defect at a time, each
reported as one line naming the entry and the file, nothing crashing and nothing modified."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.data.verify import label_value_problem, verify_dataset

SHAPE = (12, 10, 8)
AFFINE = np.array([[1.5, 0, 0, -10.0], [0, 1.5, 0, 5.0], [0, 0, 3.0, 20.0], [0, 0, 0, 1]])
HEADER = {
    "name": "phantoms",
    "description": "three labelled boxes and one unlabelled test image",
    "tensorImageSize": "3D",
    "modality": {"0": "CT"},
    "labels": {"0": "background", "1": "organ", "2": "lesion"},
    "numTraining": 3,
    "numTest": 1,
    "licence": "CC0",
    "citation": "none",
    "source": "written by the test",
}


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)


def phantom_label(shape=SHAPE, value: int = 2) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[2:9, 2:8, 1:6] = 1
    label[4:6, 4:6, 2:4] = value
    return label


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "dataset"
    rng = np.random.default_rng(0)
    for i in range(4):
        folder = "imagesTs" if i == 3 else "imagesTr"
        save(root / folder / f"case{i}.nii.gz", rng.normal(0, 100, SHAPE).astype(np.float32))
        if i < 3:
            save(root / "labelsTr" / f"case{i}.nii.gz", phantom_label())
    checksummed = ("imagesTr/case0.nii.gz", "labelsTr/case0.nii.gz")
    manifest = {
        **HEADER,
        "sha256": {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in checksummed},
        "training": [
            {"image": f"imagesTr/case{i}.nii.gz", "label": f"labelsTr/case{i}.nii.gz"} for i in range(3)
        ],
        "test": ["imagesTs/case3.nii.gz"],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    save(root.parent / "outside.nii.gz", phantom_label())
    return root


@pytest.fixture
def dataset(template, tmp_path) -> Path:
    """A fresh copy (with the file outside the root next to it) for one test to break."""
    shutil.copytree(template, tmp_path / "dataset", symlinks=True)
    shutil.copy2(template.parent / "outside.nii.gz", tmp_path / "outside.nii.gz")
    return tmp_path / "dataset"


def edit_manifest(root: Path, change) -> None:
    data = json.loads((root / "manifest.json").read_text())
    change(data)
    (root / "manifest.json").write_text(json.dumps(data))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_clean_dataset_has_no_problem_and_counts_entries_and_files(dataset):
    report = verify_dataset(dataset / "manifest.json")  # default root: the manifest's folder
    assert report.ok and report.problems == ()
    files = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*.nii.gz")}
    assert report.entries == 4 and report.files == len(files) == 7
    assert report.format() == "4 entries, 7 files checked, 0 problems"


def _missing(root):
    (root / "labelsTr/case1.nii.gz").unlink()


def _label_shape(root):
    save(root / "labelsTr/case2.nii.gz", phantom_label((12, 10, 9)))


def _label_origin(root):
    shifted = AFFINE.copy()
    shifted[0, 3] += 4.5
    save(root / "labelsTr/case1.nii.gz", phantom_label(), shifted)


def _label_spacing(root):
    coarser = AFFINE.copy()
    coarser[0, 0] = 2.0
    save(root / "labelsTr/case2.nii.gz", phantom_label(), coarser)


def _image_4d(root):
    save(root / "imagesTr/case1.nii.gz", np.zeros((*SHAPE, 2), np.float32))


def _label_4d(root):
    save(root / "labelsTr/case2.nii.gz", np.stack([phantom_label()] * 2, axis=-1))


def _unknown_label(root):
    save(root / "labelsTr/case2.nii.gz", phantom_label(value=7))


def _corrupt_image(root):
    (root / "imagesTr/case1.nii.gz").write_bytes(b"not an image at all" * 10)


def _truncated_label(root):
    data = (root / "labelsTr/case2.nii.gz").read_bytes()
    raw = gzip.decompress(data)
    (root / "labelsTr/case2.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))


def _dotdot(root):
    edit_manifest(root, lambda d: d["training"][1].update(label="../outside.nii.gz"))


def _absolute(root):
    edit_manifest(root, lambda d: d["training"][1].update(label=str(root.parent / "outside.nii.gz")))


def _symlink_out(root):
    (root / "labelsTr/case1.nii.gz").unlink()
    (root / "labelsTr/case1.nii.gz").symlink_to(root.parent / "outside.nii.gz")


def _checksum(root):
    save(root / "imagesTr/case0.nii.gz", np.ones(SHAPE, np.float32))


def _count(root):
    edit_manifest(root, lambda d: d.update(numTraining=4))


def _no_label(root):
    edit_manifest(root, lambda d: d["training"][2].pop("label"))


DEFECTS = {
    "missing file": (_missing, "training[1] labelsTr/case1.nii.gz: file not found"),
    "label shape": (
        _label_shape,
        "training[2] labelsTr/case2.nii.gz: label on another grid: shape (12, 10, 9) vs image (12, 10, 8)",
    ),
    "label origin": (
        _label_origin,
        "training[1] labelsTr/case1.nii.gz: label on another grid: origin (-5.5, 5, 20)",
    ),
    "label spacing": (
        _label_spacing,
        "training[2] labelsTr/case2.nii.gz: label on another grid: spacing (2, 1.5, 3)",
    ),
    "4D image": (
        _image_4d,
        "training[1] imagesTr/case1.nii.gz: 4D image (12, 10, 8, 2) where tensorImageSize 3D was declared",
    ),
    "4D label": (
        _label_4d,
        "training[2] labelsTr/case2.nii.gz: label is 4D (12, 10, 8, 2); a label map is 3D",
    ),
    "unknown label": (
        _unknown_label,
        "training[2] labelsTr/case2.nii.gz: label values not in the label map: 7 (the map has ids 0-2)",
    ),
    "corrupt image": (_corrupt_image, "training[1] imagesTr/case1.nii.gz: unreadable ("),
    "truncated label": (_truncated_label, "training[2] labelsTr/case2.nii.gz: unreadable ("),
    "dotdot": (_dotdot, "training[1] ../outside.nii.gz: refused: path escapes the root ('..')"),
    "absolute": (_absolute, "training[1] /"),
    "symlink": (_symlink_out, "training[1] labelsTr/case1.nii.gz: refused: symlink points outside the root"),
    "checksum": (_checksum, "training[0] imagesTr/case0.nii.gz: sha256 mismatch: the manifest says"),
    "count": (_count, "header: numTraining is 4 but training and validation list 3"),
    "no label": (_no_label, "training[2] imagesTr/case2.nii.gz: no label"),
}


@pytest.mark.parametrize("defect", DEFECTS, ids=list(DEFECTS))
def test_each_defect_is_one_line_and_nothing_is_modified(dataset, defect):
    make, expected = DEFECTS[defect]
    make(dataset)
    before = snapshot(dataset.parent)
    report = verify_dataset(dataset / "manifest.json", dataset)
    assert snapshot(dataset.parent) == before  # bytes and mtimes of every file, the outside one too
    assert len(report.problems) == 1, report.format()
    line = str(report.problems[0])
    assert line.startswith(expected), line
    assert report.format().splitlines()[-1].endswith(", 1 problem")
    if defect == "absolute":
        assert "refused: absolute path" in line


def test_label_with_flipped_axes_on_the_same_world_grid_passes(dataset):
    """A label stored with x reversed (affine adjusted) covers the same voxels: nibabel's canonical
    reorientation of both files gives one grid, and verify agrees."""
    image = nib.load(dataset / "imagesTr/case1.nii.gz")
    flip = np.array([[-1, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    save(dataset / "labelsTr/case1.nii.gz", phantom_label()[::-1].copy(), AFFINE @ flip)
    label = nib.load(dataset / "labelsTr/case1.nii.gz")
    canonical_image, canonical_label = nib.as_closest_canonical(image), nib.as_closest_canonical(label)
    np.testing.assert_allclose(canonical_label.affine, canonical_image.affine)
    np.testing.assert_array_equal(np.asanyarray(canonical_label.dataobj), phantom_label())
    assert verify_dataset(dataset / "manifest.json").ok


def test_corrupt_image_data_behind_an_intact_header_needs_read_images(dataset):
    """Images are checked by their header unless asked: a truncated NIfTI still has one."""
    raw = gzip.decompress((dataset / "imagesTr/case2.nii.gz").read_bytes())
    (dataset / "imagesTr/case2.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    assert nib.load(dataset / "imagesTr/case2.nii.gz").shape == SHAPE  # the header reads
    assert verify_dataset(dataset / "manifest.json").ok
    report = verify_dataset(dataset / "manifest.json", read_images=True)
    assert [str(p).split(": ")[0] for p in report.problems] == ["training[2] imagesTr/case2.nii.gz"]


def write_channels_dataset(root: Path, image, modality: int = 2, tensor: str = "4D") -> Path:
    """One case with a label, the image given as ``image`` (a path or a list); files written by the caller."""
    save(root / "labelsTr/c.nii.gz", phantom_label())
    manifest = {
        **HEADER,
        "tensorImageSize": tensor,
        "modality": {str(i): f"seq{i}" for i in range(modality)},
        "numTraining": 1,
        "numTest": 0,
        "training": [{"image": image, "label": "labelsTr/c.nii.gz"}],
    }
    (root / "m.json").write_text(json.dumps(manifest))
    return root / "m.json"


CHANNEL_CASES = {
    "two channel files": (["a", "b"], {"a": SHAPE, "b": SHAPE}, None),
    "one 4D file, 2 channels": ("a", {"a": (*SHAPE, 2)}, None),
    "4D file, 3 channels": ("a", {"a": (*SHAPE, 3)}, "3 channels in (12, 10, 8, 3), modality declares 2"),
    "3D file": ("a", {"a": SHAPE}, "3D image (12, 10, 8), but modality declares 2 channels"),
    "one file in the list": (["a"], {"a": SHAPE}, "1 channel files, modality declares 2"),
    "channel on another grid": (["a", "b"], {"a": SHAPE, "b": (12, 10, 7)}, "channel on another grid: shape"),
}


@pytest.mark.parametrize("case", CHANNEL_CASES, ids=list(CHANNEL_CASES))
def test_channels_as_declared(tmp_path, case):
    image, shapes, expected = CHANNEL_CASES[case]
    for name, shape in shapes.items():
        save(tmp_path / f"imagesTr/{name}.nii.gz", np.zeros(shape, np.float32))
    rel = [f"imagesTr/{n}.nii.gz" for n in image] if isinstance(image, list) else f"imagesTr/{image}.nii.gz"
    report = verify_dataset(write_channels_dataset(tmp_path, rel))
    if expected is None:
        assert report.ok, report.format()
    else:
        assert len(report.problems) == 1 and expected in str(report.problems[0]), report.format()


def test_instance_labels_accept_any_id_but_not_negative_ones(tmp_path):
    save(tmp_path / "imagesTr/a.nii.gz", np.zeros(SHAPE, np.float32))
    manifest = write_channels_dataset(tmp_path, "imagesTr/a.nii.gz", modality=1, tensor="3D")
    edit = json.loads(manifest.read_text())
    edit["labels"] = {"0": "background", "1": "nucleus"}
    edit["label_type"] = "instance"
    manifest.write_text(json.dumps(edit))
    ids = np.zeros(SHAPE, np.int16)
    ids[1:3, 1:3, 1:3], ids[5:7, 5:7, 5:7] = 17, 250
    save(tmp_path / "labelsTr/c.nii.gz", ids)
    assert verify_dataset(manifest).ok
    ids[0, 0, 0] = -1
    save(tmp_path / "labelsTr/c.nii.gz", ids)
    (problem,) = verify_dataset(manifest).problems
    assert str(problem).endswith("instance ids must be whole numbers >= 0, found -1")


def test_label_values_against_the_map():
    labels = {0: "background", 1: "a", 4: "b"}
    assert label_value_problem(np.array([0, 1, 4]), labels) is None
    assert label_value_problem(np.array([0.0, 1.0, 4.0]), labels) is None  # float storage of whole ids
    assert label_value_problem(np.array([0, 1.5, 3]), labels) == (
        "label values not in the label map: 1.5, 3 (the map has ids 0, 1, 4)"
    )
    many = label_value_problem(np.arange(0, 40), {0: "background"})
    assert many.startswith("label values not in the label map: 1, 2, 3, 4, 5, 6, 7, 8 and 31 more")


def test_an_msd_dataset_json_verifies_as_it_is(dataset):
    """MSD's own dataset.json (``./`` paths, test images as plain strings, no citation or source)
    is enough to check a Task folder: verify needs only the keys that describe the files."""
    msd = {
        "name": "Phantom",
        "description": "MSD style",
        "reference": "none",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ", "2": "lesion"},
        "numTraining": 3,
        "numTest": 1,
        "training": [
            {"image": f"./imagesTr/case{i}.nii.gz", "label": f"./labelsTr/case{i}.nii.gz"} for i in range(3)
        ],
        "test": ["./imagesTs/case3.nii.gz"],
    }
    (dataset / "dataset.json").write_text(json.dumps(msd))
    report = verify_dataset(dataset / "dataset.json")
    assert report.format() == "4 entries, 7 files checked, 0 problems"
    (dataset / "labelsTr/case0.nii.gz").unlink()
    assert [str(p) for p in verify_dataset(dataset / "dataset.json").problems] == [
        "training[0] ./labelsTr/case0.nii.gz: file not found"
    ]
