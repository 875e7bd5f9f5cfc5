"""Case names (issue 12): unique within a run, whatever order the inputs come in, so one result
never overwrites another and ``--resume`` finds the same outputs on the next run."""

from __future__ import annotations

import itertools
import re
import shutil

import pytest

from medseg.data import sample_path
from medseg.data.synthetic import write_dicom_series
from medseg.workflows.cases import expand_inputs


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``A/first``, ``B/first``, ``B/first_2``: the inputs of the issue."""
    root = tmp_path_factory.mktemp("tree")
    for name in ("A/first.nii.gz", "B/first.nii.gz", "B/first_2.nii.gz"):
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy(sample_path("img2d.tif", "nuclei_2d"), root / name.replace(".nii.gz", ".tif"))
    return root


def _names(inputs) -> dict[str, str]:
    return {c.name: c.image.relative_to(c.image.parents[1]).as_posix() for c in expand_inputs(inputs)}


def test_clashing_names_take_their_folder(tree):
    names = _names([tree / "A", tree / "B"])
    assert names == {"A_first": "A/first.tif", "B_first": "B/first.tif", "first_2": "B/first_2.tif"}


def test_names_do_not_depend_on_the_order_of_the_inputs(tree):
    files = [tree / "A/first.tif", tree / "B/first.tif", tree / "B/first_2.tif"]
    seen = {frozenset(_names(list(order)).items()) for order in itertools.permutations(files)}
    assert len(seen) == 1


def test_the_same_input_twice_is_one_case(tree, monkeypatch):
    monkeypatch.chdir(tree)
    cases = expand_inputs(["A/first.tif", str(tree / "A" / "first.tif"), "A"])
    assert [c.name for c in cases] == ["first"]


def test_clashes_at_one_folder_take_two(tmp_path):
    # x/A/first and y/A/first clash at one folder (A_first), and are told apart at two.
    for top in ("x", "y"):
        (tmp_path / top / "A").mkdir(parents=True)
        shutil.copy(sample_path("img2d.tif", "nuclei_2d"), tmp_path / top / "A" / "first.tif")
    names = sorted(c.name for c in expand_inputs([tmp_path / "x" / "A", tmp_path / "y" / "A"]))
    assert names == ["x_A_first", "y_A_first"]


def test_dicom_folders_of_the_same_name(tmp_path):
    import numpy as np

    for site in ("site1", "site2"):
        write_dicom_series(np.zeros((8, 8, 3), np.int16), np.eye(4), tmp_path / site / "CT")
    names = sorted(c.name for c in expand_inputs([tmp_path / "site1" / "CT", tmp_path / "site2" / "CT"]))
    assert names == ["site1_CT", "site2_CT"]


def test_cases_that_folders_cannot_tell_apart_take_a_hash(tree, tmp_path):
    """Two datalist items with the same first channel and different second channels."""
    import json

    first, other, third = (str(tree / p) for p in ("A/first.tif", "B/first.tif", "B/first_2.tif"))
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"test": [{"image": [first, other]}, {"image": [first, third]}]}))
    names = [c.name for c in expand_inputs([datalist])]
    assert len(set(names)) == 2 and all(re.fullmatch(r".+_A_first-[0-9a-f]{8}", n) for n in names), names
    assert names == [c.name for c in expand_inputs([datalist])]  # stable from run to run
