"""`medseg data verify|datalist|split` through the command line: output, exit codes, files written."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.data import REPO_ROOT

SHIPPED = [
    m
    for m in sorted((REPO_ROOT / "data_manifests").glob("*.json"))
    if "files_dir" in json.loads(m.read_text())
]


@pytest.fixture
def medseg(capsys):
    """Run ``main(argv)`` in this process; give back (exit code, stdout, stderr) and undo the global
    settings main makes for a real run (warning filters, logging level, SIGTERM handler)."""
    filters, show = warnings.filters[:], warnings.showwarning
    disabled, handler = logging.root.manager.disable, signal.getsignal(signal.SIGTERM)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    warnings.filters[:], warnings.showwarning = filters, show
    logging.disable(disabled)
    signal.signal(signal.SIGTERM, handler)


@pytest.mark.parametrize("path", SHIPPED, ids=[m.stem for m in SHIPPED])
def test_verify_passes_on_every_shipped_manifest(medseg, path):
    root = REPO_ROOT / json.loads(path.read_text())["files_dir"]
    code, out, err = medseg("data", "verify", str(path), "--root", str(root))
    assert code == 0, out + err
    assert out.splitlines()[-1].endswith(" checked, 0 problems") and len(out.splitlines()) == 1


def test_the_installed_command_verifies_a_shipped_sample():
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "data", "verify", "data_manifests/nuclei_2d.json"]
        + ["--root", "medseg/data/samples/nuclei_2d"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1 entry, 2 files checked, 0 problems\n"


@pytest.fixture
def msd_folder(tmp_path) -> Path:
    root = tmp_path / "Task99_Boxes"
    for i in range(4):
        label = np.zeros((6, 6, 4), np.uint8)
        label[1:4, 1:4, 1:3] = 1
        for folder, array in (("imagesTr", np.zeros((6, 6, 4), np.float32)), ("labelsTr", label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, np.eye(4)), root / folder / f"box_{i}.nii.gz")
    (root / "dataset.json").write_text(
        json.dumps({"name": "Boxes", "labels": {"0": "background", "1": "box"}})
    )
    return root


def test_datalist_then_verify_then_split(medseg, msd_folder, tmp_path):
    manifest = tmp_path / "boxes.json"
    code, out, _ = medseg("data", "datalist", str(msd_folder), "--out", str(manifest))
    assert code == 0
    summary = "4 training and 0 test cases, 8 files with sha256; fill in licence, citation and source"
    assert out == f"{manifest}: {summary}\n"
    assert json.loads(manifest.read_text())["labels"] == {"0": "background", "1": "box"}

    code, out, _ = medseg("data", "verify", str(manifest), "--root", str(msd_folder))
    assert (code, out) == (0, "4 entries, 8 files checked, 0 problems\n")

    splits = tmp_path / "splits_final.json"
    code, out, _ = medseg("data", "split", str(manifest), "--folds", "2", "--seed", "3", "--out", str(splits))
    assert code == 0 and out.startswith(
        f"{splits}: 2 folds over 4 training cases (validation sizes 2, 2), seed 3"
    )
    folds = json.loads(splits.read_text())
    assert [sorted(f) for f in folds] == [["train", "val"]] * 2
    assert sorted(folds[0]["val"] + folds[1]["val"]) == [f"box_{i}" for i in range(4)]


def test_verify_reports_problems_and_exits_1(medseg, msd_folder, tmp_path):
    manifest = tmp_path / "boxes.json"
    medseg("data", "datalist", str(msd_folder), "--out", str(manifest))
    (msd_folder / "labelsTr/box_2.nii.gz").unlink()
    bad = np.full((6, 6, 4), 5, np.uint8)
    nib.save(nib.Nifti1Image(bad, np.eye(4)), msd_folder / "labelsTr/box_3.nii.gz")
    code, out, _ = medseg("data", "verify", str(manifest), "--root", str(msd_folder))
    assert code == 1
    recorded = json.loads(manifest.read_text())["sha256"]["labelsTr/box_3.nii.gz"]
    now = hashlib.sha256((msd_folder / "labelsTr/box_3.nii.gz").read_bytes()).hexdigest()
    assert out.splitlines() == [
        "training[2] labelsTr/box_2.nii.gz: file not found",
        f"training[3] labelsTr/box_3.nii.gz: sha256 mismatch: the manifest says {recorded[:12]}..., "
        f"the file is {now[:12]}...",
        "training[3] labelsTr/box_3.nii.gz: label values not in the label map: 5 (the map has ids 0, 1)",
        "4 entries, 8 files checked, 3 problems",
    ]


def test_without_out_the_json_is_printed(medseg, msd_folder):
    code, out, _ = medseg("data", "datalist", str(msd_folder))
    assert code == 0 and json.loads(out)["numTraining"] == 4
    assert not (msd_folder / "manifest.json").exists()


def test_user_mistakes_are_one_line_and_exit_2(medseg, msd_folder, tmp_path):
    code, _, err = medseg("data", "datalist", str(msd_folder), "--out", str(msd_folder / "dataset.json"))
    assert code == 2 and err == (
        f"medseg: error: {msd_folder / 'dataset.json'}: would replace the folder's dataset.json; "
        "choose another --out file\n"
    )
    assert json.loads((msd_folder / "dataset.json").read_text())["name"] == "Boxes"
    code, _, err = medseg("data", "verify", str(tmp_path / "nope.json"))
    assert code == 2 and err == f"medseg: error: {tmp_path / 'nope.json'}: manifest not found\n"
    (tmp_path / "broken.json").write_text("{")
    code, _, err = medseg("data", "split", str(tmp_path / "broken.json"))
    assert code == 2 and "not valid JSON" in err and err.count("\n") == 1
