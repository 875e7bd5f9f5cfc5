"""All-or-nothing outputs under SIGKILL (issue 12): the real `medseg segment` is killed while it
writes a case, and the output folder holds either the previous complete output of the case or
none of it; the batch summary already lists the cases that finished; the next run cleans up.

The kill lands mid-write by construction: the test watches the output folder and kills the
process as soon as its staging folder holds a file (a file written, the case not yet renamed in).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile
from bundle_refs import medseg_cli

from medseg.data import sample_path

pytestmark = pytest.mark.slow
BUNDLE = ("--bundle", "nuclei_fluo_unet2d", "--quiet")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    image = tifffile.imread(sample_path("img2d.tif", "nuclei_2d"))
    tifffile.imwrite(folder / "a.tif", image[:256])
    tifffile.imwrite(folder / "b.tif", image[256:])
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def staging(out: Path, case: str) -> list[Path]:
    return [p for p in out.glob(f".tmp-*-{case}-*") if p.is_dir()]


def _staged_a_file(out: Path, case: str) -> bool:
    try:
        return any(any(s.iterdir()) for s in staging(out, case))
    except FileNotFoundError:  # renamed into place while we looked
        return False


def kill_mid_write(out: Path, case: str, *inputs: str, sig: int = signal.SIGKILL) -> bool:
    """Run `medseg segment`, send ``sig`` once the staging folder of ``case`` holds a file; return
    whether it was killed there (False: the run ended first)."""
    command = [sys.executable, "-m", "medseg.cli.main", "segment", *inputs, *BUNDLE, "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _staged_a_file(out, case):
                os.kill(proc.pid, sig)
                proc.wait()
                return True
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_rerun_leaves_the_previous_output_whole(images, tmp_path):
    out = tmp_path / "out"
    done = medseg_cli("segment", str(images / "a.tif"), *BUNDLE, "--out", str(out))
    assert done.returncode == 0, done.stderr
    before = digest(out / "a")
    assert {"a_instances.ome.tif", "a_instances.json", "a_overlay.png"} <= set(before)
    for _ in range(3):  # until a kill lands while a file is staged (the first one, in practice)
        killed = kill_mid_write(out, "a", str(images / "a.tif"))
        assert digest(out / "a") == before  # the previous output, whole, after every kill
        if killed:
            break
    assert killed
    assert staging(out, "a")  # what the killed processes were writing: out of view, not cleaned yet
    again = medseg_cli("segment", str(images / "a.tif"), *BUNDLE, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert set(digest(out / "a")) == set(before)  # replaced whole (OME-TIFF headers hold a UUID)
    assert [p.name for p in out.iterdir()] == ["a"]  # the dead processes' staging is gone


def test_a_killed_first_run_leaves_nothing(images, tmp_path):
    out = tmp_path / "out"
    assert kill_mid_write(out, "b", str(images / "b.tif"))
    assert not (out / "b").exists()
    assert all(p.name.startswith(".tmp-") for p in out.iterdir())  # hidden staging only


def test_a_killed_batch_keeps_the_finished_cases_and_resumes(images, tmp_path):
    out = tmp_path / "out"
    assert kill_mid_write(out, "b", str(images))
    summary = {row["case"]: row["status"] for row in json.loads((out / "summary.json").read_text())}
    assert summary == {"a": "done", "b": "pending"}  # written as case a ended, before b was killed
    assert (out / "a" / "a_instances.ome.tif").is_file() and not (out / "b").exists()
    resumed = medseg_cli("segment", str(images), *BUNDLE, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 done, 1 skipped (already done)" in resumed.stdout
    summary = {row["case"]: row["status"] for row in json.loads((out / "summary.json").read_text())}
    assert summary == {"a": "skipped", "b": "done"}
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "summary.csv", "summary.json"]


def test_an_output_folder_that_is_not_ours_is_never_replaced(images, tmp_path):
    """A case named like a folder of the user's (here the input folder itself) is refused."""
    out = tmp_path / "work"
    (out / "a").mkdir(parents=True)
    (out / "a" / "notes.txt").write_text("mine")
    proc = medseg_cli("segment", str(images / "a.tif"), *BUNDLE, "--out", str(out))
    assert proc.returncode == 2
    assert "exists and is not a medseg output" in proc.stderr
    assert (out / "a" / "notes.txt").read_text() == "mine"


def test_sigterm_mid_write_cleans_up(images, tmp_path):
    """A scheduler's SIGTERM runs the clean-up a SIGKILL cannot: no staging left behind."""
    out = tmp_path / "out"
    assert kill_mid_write(out, "a", str(images / "a.tif"), sig=signal.SIGTERM)
    assert not out.exists() or not list(out.iterdir())
