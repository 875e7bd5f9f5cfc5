"""The shipped bundles come with medseg however it is installed: a wheel (``pip install .``) and an
editable install (``pip install -e .``, the Makefile's), each in a fresh virtual environment, used
from another folder.

The fresh environments get their dependencies from this one through a ``.pth`` file (no download),
and pip from there too (``--without-pip``: faster, and the same setuptools as the project's).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import json, sysconfig, medseg
from medseg.bundle.locate import find_bundle, shipped_bundles_dir
root = shipped_bundles_dir()
print(json.dumps({
    "medseg": medseg.__file__,
    "bundle": str(find_bundle("nuclei_fluo_unet2d")),
    "purelib": sysconfig.get_paths()["purelib"],
    "files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
}))
"""


def test_every_medseg_package_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set(find_packages(where=str(REPO), include=["medseg", "medseg.*"]))
    assert not found - listed, (
        f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    )
    assert "medseg._bundles" in listed and config["package-dir"]["medseg._bundles"] == "bundles"


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The work tree (tracked and untracked, not ignored), plus what must not be installed:
    evaluation outputs and training checkpoints. Built there, so the repository gets no litter."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to copy the work tree")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    dest = tmp_path_factory.mktemp("medseg_src")
    for name in filter(None, listing.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    (dest / "bundles/nuclei_fluo_unet2d/eval").mkdir()
    (dest / "bundles/nuclei_fluo_unet2d/eval/pred.nii.gz").write_bytes(b"evaluation output")
    (dest / "bundles/nuclei_fluo_unet2d/models/checkpoint_epoch=3.pt").write_bytes(b"checkpoint")
    return dest


def install_and_check(tmp_path: Path, source: Path, editable: bool) -> dict:
    """``pip install [-e] source`` into a fresh venv; what medseg finds there, run from elsewhere."""
    before = set(REPO.iterdir())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_medseg_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*pip, *(["-e"] if editable else []), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([python, "-c", CHECK], cwd=elsewhere, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(REPO.iterdir()) <= before, "the install left files in the repository"
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_wheel_install_ships_the_bundles(tmp_path, source_copy):
    found = install_and_check(tmp_path, source_copy, editable=False)
    purelib = Path(found["purelib"])
    bundle = Path(found["bundle"])
    assert Path(found["medseg"]).is_relative_to(purelib)
    assert bundle == purelib / "medseg" / "_bundles" / "nuclei_fluo_unet2d"
    assert (bundle / "models" / "model.pt").is_file()
    assert (bundle / "configs" / "inference.json").is_file() and (bundle / "LICENSE").is_file()
    files = found["files"]
    assert "abdomen_ct_segmentation/models/model.pt" in files
    assert not [f for f in files if "/eval/" in f or "checkpoint" in f], files
    # the installed command segments by bundle name from another folder, with the installed bundle
    image = purelib / "medseg" / "data" / "samples" / "nuclei_2d" / "img2d.tif"
    done = subprocess.run(
        [tmp_path / "venv" / "bin" / "medseg", "segment", str(image), "--bundle", "nuclei_fluo_unet2d",
         "--out", "out", "--quiet"], cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"bundle: nuclei_fluo_unet2d 0.2.0 ({bundle})" in done.stdout
    assert (tmp_path / "elsewhere" / "out" / "img2d" / "img2d_instances.ome.tif").is_file()


@pytest.mark.slow
def test_editable_install_maps_the_bundles_folder(tmp_path, source_copy):
    found = install_and_check(tmp_path, source_copy, editable=True)
    assert Path(found["medseg"]) == source_copy / "medseg" / "__init__.py"
    assert Path(found["bundle"]) == source_copy / "bundles" / "nuclei_fluo_unet2d"
