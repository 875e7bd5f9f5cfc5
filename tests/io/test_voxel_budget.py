"""The voxel budget: a tiny file whose header declares a huge image is refused before any pixel is
allocated, in one line naming the file, by every reader and by `medseg segment`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from corpus import make_corpus as corpus

from medseg.errors import InputError
from medseg.io.budget import ENV, check_voxels, default_max_voxels, max_voxels
from medseg.io.registry import read_image

HUGE_FILES = [
    corpus.nifti_huge,
    corpus.nrrd_huge,
    corpus.mha_huge,
    corpus.tiff_huge,
    corpus.dicom_huge_series,
    corpus.dicom_huge_multiframe,
]


@pytest.fixture(autouse=True)
def budget(monkeypatch):
    """A fixed budget (1e9 voxels), so that the outcome does not depend on this machine's memory."""
    monkeypatch.setenv(ENV, "1e9")


@pytest.mark.parametrize("make", HUGE_FILES, ids=lambda f: f.__name__)
def test_huge_declared_size_is_refused_by_the_reader(tmp_path, make):
    path = make(tmp_path)
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 5000
    with pytest.raises(InputError) as raised:
        read_image(path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message
    assert "exceeds the voxel budget of 1.0e9 voxels (MEDSEG_MAX_VOXELS" in message


def test_message_names_size_dtype_and_bytes():
    with pytest.raises(InputError, match=r"^scan.nii.gz: declared size 4000x4000x4000 float64 \(477 GiB\) "):
        check_voxels("scan.nii.gz", (4000, 4000, 4000), "float64")


def test_png_header_within_pillow_limit_is_checked_against_the_budget(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (3000, 2000)).save(path)
    monkeypatch.setenv(ENV, "1e6")
    with pytest.raises(InputError, match="declared size 3000x2000x1 uint8"):
        read_image(path)


def test_size_at_the_budget_reads(tmp_path, monkeypatch):
    path = corpus.write_nifti(tmp_path / "small.nii.gz")  # 6x5x4 = 120 voxels
    monkeypatch.setenv(ENV, "120")
    assert read_image(path)[0].shape == (6, 5, 4)
    monkeypatch.setenv(ENV, "119")
    with pytest.raises(InputError, match="exceeds the voxel budget of 1.2e2 voxels"):
        read_image(path)


def test_default_is_physical_memory_over_16_bytes(monkeypatch):
    monkeypatch.delenv(ENV)
    import os

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert max_voxels() == default_max_voxels() == ram // 16


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan", "inf"])
def test_bad_budget_variable_is_one_line(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(InputError, match=f"^{ENV}="):
        max_voxels()


def test_segment_command_refuses_huge_header_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV)  # the machine's default: 4000^3 voxels exceed it below 1 TiB of memory
    path = corpus.nifti_huge(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"medseg: error: {path}: declared size 4000x4000x4000 float64 (477 GiB)")
    assert not out.exists()
