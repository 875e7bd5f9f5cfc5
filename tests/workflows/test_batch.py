"""`medseg segment` over many inputs: expansion of folders/globs/datalists, one loaded bundle for
all cases, a bad case that does not stop the others, --resume, and the summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from bundle_refs import monai_bundle

from medseg.data import sample_path
from medseg.data.synthetic import write_dicom_series
from medseg.errors import InputError
from medseg.io.dicom import find_series
from medseg.workflows.batch import segment_many
from medseg.workflows.bundles import find_bundle
from medseg.workflows.cases import expand_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two copies of the real CT (case A), one truncated file."""
    folder = tmp_path_factory.mktemp("inputs")
    ct = sample_path("example_ct.nii.gz")
    shutil.copy(ct, folder / "first.nii.gz")
    shutil.copy(ct, folder / "second.nii.gz")
    (folder / "broken.nii.gz").write_bytes(open(ct, "rb").read()[:5000])
    return folder


def test_expand_folder_glob_and_datalist(inputs, tmp_path):
    by_folder = expand_inputs([inputs])
    assert [c.name for c in by_folder] == ["broken", "first", "second"]
    assert [c.name for c in expand_inputs([str(inputs / "s*.nii.gz")])] == ["second"]
    datalist = tmp_path / "list.json"
    relative = os.path.relpath(inputs / "first.nii.gz", tmp_path)
    datalist.write_text(json.dumps({"test": [{"image": relative}, {"image": str(inputs / "first.nii.gz")}]}))
    cases = expand_inputs([datalist])
    assert [c.name for c in cases] == ["first"]  # one file listed twice is one case
    assert cases[0].image.resolve() == (inputs / "first.nii.gz").resolve()


def test_expand_dicom_folder_with_two_series(tmp_path):
    volume = np.zeros((8, 8, 4), np.int16)
    for n in range(2):
        write_dicom_series(volume, np.eye(4), tmp_path / f"s{n}")
    with pytest.raises(InputError, match="2 series found"):
        expand_inputs([tmp_path])
    cases = expand_inputs([tmp_path], all_series=True)
    assert [(c.name, c.series) for c in cases] == [(f"{tmp_path.name}_series{i}", i) for i in (0, 1)]
    assert expand_inputs([tmp_path], series=1)[0].series == find_series(tmp_path)[1].key


@pytest.mark.parametrize("bad", ["missing.nii.gz", "nothing*.nii.gz"])
def test_expand_refuses_what_does_not_exist(tmp_path, bad):
    with pytest.raises(InputError, match=bad.replace("*", r"\*")):
        expand_inputs([str(tmp_path / bad)])


@pytest.fixture(scope="module")
def batch(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, segment_many(expand_inputs([inputs]), out_dir=out, device="cpu", progress=False)


@pytest.mark.slow  # the batch fixture runs the abdomen bundle on two cases
def test_a_bad_case_does_not_stop_the_others(batch, inputs):
    out, results = batch
    status = {r.case: (r.status, r.reason) for r in results}
    assert status["first"][0] == status["second"][0] == "done"
    assert status["broken"][0] == "failed"
    assert "broken.nii.gz" in status["broken"][1] and "\n" not in status["broken"][1]
    assert not (out / "broken").exists() and not list(out.glob(".*"))  # nothing partial, no staging left
    summary = json.loads((out / "summary.json").read_text())
    assert [row["status"] for row in summary] == ["failed", "done", "done"]
    assert (out / "summary.csv").read_text().splitlines()[0] == "case,image,status,seconds,reason"


@pytest.mark.slow  # the batch fixture runs the abdomen bundle on two cases
def test_batch_output_equals_monai_bundle_run(batch, tmp_path):
    """The bundle loaded once and fed case after case writes what `monai.bundle run` writes."""
    out, _ = batch
    bundle = find_bundle("abdomen_ct_segmentation")
    monai_bundle(
        "run", "--config_file", str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
        "--input_image", sample_path("example_ct.nii.gz"), "--output_dir", str(tmp_path),
    )  # fmt: skip
    reference = np.asarray(nib.load(tmp_path / "example_ct_seg.nii.gz").dataobj)
    assert reference.any()
    for case in ("first", "second"):
        assert np.array_equal(np.asarray(nib.load(out / case / f"{case}_seg.nii.gz").dataobj), reference)


@pytest.mark.slow  # the batch fixture runs the abdomen bundle on two cases
def test_resume_skips_finished_cases(batch, inputs):
    out, _ = batch
    before = {p.name: p.stat().st_mtime_ns for p in (out / "first").iterdir()}
    results = segment_many(expand_inputs([inputs]), out_dir=out, device="cpu", progress=False, resume=True)
    assert [r.status for r in results] == ["failed", "skipped", "skipped"]  # broken, first, second
    assert {p.name: p.stat().st_mtime_ns for p in (out / "first").iterdir()} == before


@pytest.mark.slow  # the batch fixture runs the abdomen bundle on two cases
def test_cli_summary_and_exit_code(batch, inputs):
    out, _ = batch
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(inputs), "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "3 cases: 0 done, 2 skipped (already done), 1 failed" in proc.stdout
    assert "failed: broken:" in proc.stdout


def test_datalist_items_with_one_file_per_channel(inputs, tmp_path):
    """A datalist item whose image is a list is one case with a file per channel, in that order."""
    datalist = tmp_path / "list.json"
    channels = [str(inputs / "first.nii.gz"), str(inputs / "second.nii.gz")]
    datalist.write_text(json.dumps({"testing": [{"image": channels}, {"image": channels[1]}]}))
    cases = expand_inputs([datalist])
    assert [(c.name, c.images) for c in cases] == [
        ("first", [inputs / "first.nii.gz", inputs / "second.nii.gz"]),
        ("second", [inputs / "second.nii.gz"]),
    ]
    (one,) = expand_inputs(channels, channels=True)  # the same from the command line
    assert one.images == [inputs / "first.nii.gz", inputs / "second.nii.gz"]
