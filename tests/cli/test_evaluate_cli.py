"""``medseg evaluate`` end to end through ``medseg.cli.main.main``: the table, the files, the errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.data import sample_path


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The TotalSegmentator sample (reference), an edited copy (prediction) and a label-name file."""
    ref_path = Path(sample_path("example_seg_fast_force_split.nii.gz"))
    image = nib.load(ref_path)
    ref = np.asarray(image.dataobj)
    pred = np.zeros_like(ref)
    pred[:, 1:] = ref[:, :-1]
    pred[(pred == 1) & (np.indices(ref.shape)[2] % 9 == 0)] = 0  # holes through the spleen
    folder = tmp_path_factory.mktemp("cli")
    nib.save(nib.Nifti1Image(pred, image.affine), folder / "pred.nii.gz")
    (folder / "labels.json").write_text(json.dumps({"1": "spleen", "5": "liver", "2": "kidney_right"}))
    return folder / "pred.nii.gz", ref_path, folder / "labels.json"


def _strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_evaluate_prints_a_table_and_writes_csv_and_json(case, tmp_path, capsys):
    pred, ref, labels = case
    out = tmp_path / "eval"
    argv = ["evaluate", str(pred), str(ref), "--out", str(out), "--labels", str(labels), "--lesions"]
    code = main([*argv, "--labels-to-score", "spleen,liver", "--nsd-tolerance", "2,liver=3"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "spleen" in printed and "liver" in printed and "lesion F1" in printed
    assert str(out / "evaluation.csv") in printed and str(out / "evaluation.json") in printed
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    cases = [r for r in rows if r["case"] == "example_seg_fast_force_split"]  # named after the reference
    assert [(r["name"], r["nsd_tolerance"]) for r in cases] == [("spleen", "2.0"), ("liver", "3.0")]
    assert {r["case"] for r in rows} - {cases[0]["case"]} == {"mean", "median", "n", "pooled"}
    assert float(cases[1]["dice"]) > float(cases[0]["dice"])  # the spleen has holes, the liver is whole
    saved = _strict_json((out / "evaluation.json").read_text())
    assert saved["mode"] == "labels" and saved["settings"]["nsd_tolerances"] == {"5": 3.0}
    assert len(saved["rows"]) == 2 and (out / "lesions.csv").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.nii.gz", "{ref}"], "missing.nii.gz: file not found"),
        (["{pred_dir}", "{ref_dir}"], "no case name is in both folders"),
        (["{pred}", "{ref}", "--regions", "WT=a,b"], "--regions"),
        (["{pred}", "{ref}", "--instances", "--lesions"], "does not combine"),
        (["{pred}", "{ref}", "--labels-to-score", "pancreas", "--labels", "{labels}"], "'pancreas'"),
        (["{pred}", "{ref}", "--nsd-tolerance", "-1"], "--nsd-tolerance"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_no_output(case, tmp_path, capsys, args, message):
    pred, ref, labels = case
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    (tmp_path / "p" / "x.nii.gz").write_bytes(pred.read_bytes())
    (tmp_path / "r" / "y.nii.gz").write_bytes(ref.read_bytes())
    paths = {
        "pred": pred,
        "ref": ref,
        "labels": labels,
        "pred_dir": tmp_path / "p",
        "ref_dir": tmp_path / "r",
    }
    argv = [a.format(**paths) for a in args]
    code = main(["evaluate", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("medseg: error:") and message in err[0]
    assert not (tmp_path / "out").exists()
