"""Every case of the malformed-input corpus gives its documented outcome: a medseg error of the right
kind, one line naming the input, with the expected fragment (exit code 2 through the command), or the
documented result (read; read with a warning; a SEG written)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from corpus.make_corpus import CASES, Case

from medseg.errors import MedsegError
from medseg.io.registry import read_image

CLI_CASES = [c for c in CASES if c.via == "cli"]


def _segment(path: Path) -> subprocess.CompletedProcess:
    out = path.parent / "out"
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def cli_runs(corpus) -> dict[str, subprocess.CompletedProcess]:
    """The command cases, run side by side: each process spends seconds importing torch and MONAI."""
    with ThreadPoolExecutor(max_workers=len(CLI_CASES)) as pool:
        runs = pool.map(lambda c: _segment(corpus[c.name]), CLI_CASES)
        return {c.name: run for c, run in zip(CLI_CASES, runs, strict=True)}


@pytest.fixture(scope="session")
def abdomen_contract():
    from medseg.bundle.contract import read_contract
    from medseg.bundle.locate import shipped_bundles_dir

    return read_contract(shipped_bundles_dir() / "abdomen_ct_segmentation")


def _run(case: Case, path: Path, request) -> object:
    """Run the case through its reader or workflow function; what it returns (for the documented results)."""
    if case.via == "read":
        return read_image(path)
    if case.via == "case":
        from medseg.bundle.parts import read_checked

        return read_checked(path, None, request.getfixturevalue("abdomen_contract"))
    if case.via == "seg":
        from medseg.workflows.dicom import label_map_to_seg

        return label_map_to_seg(path, path.parent / "series", path.parent / "seg.dcm", {1: "lesion"})
    if case.via == "datalist":
        from medseg.workflows.cases import expand_inputs

        return expand_inputs([path])
    raise AssertionError(f"unknown via {case.via!r}")


def _check_result(case: Case, result: object) -> None:
    if case.via == "read":
        array, geometry = result
        assert array.size > 0 and np.isfinite(geometry.affine).all()
    elif case.via == "seg":
        assert result is not None and Path(result).is_file()
    elif case.via == "datalist":
        (item,) = result
        assert item.name == "ct"  # outputs are named by the file, inside --out, wherever the file is
        assert read_image(item.image)[0].shape == (6, 5, 4)


def _check_message(message: str, case: Case, path: Path) -> None:
    assert "\n" not in message.strip(), message
    assert str(path) in message or path.name in message, message
    assert case.fragment in message, message


def test_corpus_table_is_complete(corpus):
    assert len({c.name for c in CASES}) == len(CASES) == len(corpus)
    assert all(c.how for c in CASES), "every case says how it is made"


@pytest.mark.parametrize("case", [c for c in CASES if c.via != "cli"], ids=lambda c: c.name)
def test_case_through_reader(case, corpus, request):
    path = corpus[case.name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case.exit == 2:
            with pytest.raises(MedsegError) as raised:
                _run(case, path, request)
            assert type(raised.value).__name__ == case.kind
            _check_message(str(raised.value), case, path)
            return
        result = _run(case, path, request)
    _check_result(case, result)
    if case.fragment:  # "read, with a warning"
        assert any(case.fragment in str(w.message) for w in caught), [str(w.message) for w in caught]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.name)
def test_case_through_command(case, corpus, cli_runs):
    path, proc = corpus[case.name], cli_runs[case.name]
    assert proc.returncode == case.exit, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("medseg: error: ")
    _check_message(line, case, path)
    assert not (path.parent / "out").exists()
