"""Run folders: where ``medseg train`` writes, so that no bundle, shipped or installed, is touched.

A run folder is a copy of the bundle's files without its weights (``configs/``, ``docs/``,
``LICENSE``, scripts), run with ``bundle_root`` set to it, so the bundle's own paths
(``@bundle_root + '/models'``) land inside it::

    runs/<bundle>/<YYYYmmdd-HHMMSS>/
        run.json          what was asked: source bundle, configs, overrides, medseg version
        config_ran.json   the merged config that ran (overrides applied)
        configs/ docs/ LICENSE
        models/           model.pt (final), model_best.pt, checkpoints/checkpoint_it*.pt
        logs/train.log    tensorboard/    report/

A run folder is itself a bundle (``medseg segment --bundle RUN`` works); ``export_run`` makes a
clean one of it: configs, docs, licence and one ``models/model.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from medseg.errors import BundleError
from medseg.io.atomic import MARKER, STAGING, atomic_folder, clean_stale
from medseg.typing import PathLike

RUN_FILE = "run.json"
# What a run adds to the bundle's files; none of it belongs in an exported bundle.
RUN_ONLY = {RUN_FILE, "config_ran.json", "logs", "tensorboard", "report", "models", "eval", MARKER}


def _bundle_files(src: Path, dst: Path) -> None:
    """Copy a bundle's files, leaving out weights, outputs of earlier runs and caches."""
    skip = shutil.ignore_patterns("models", "eval", "logs", "runs", "__pycache__", ".*")
    shutil.copytree(src, dst, ignore=skip, dirs_exist_ok=True)


def new_run(bundle: Path, out: PathLike | None, record: dict[str, Any], runs_dir: PathLike = "runs") -> Path:
    """Create a run folder for ``bundle`` with ``record`` as its ``run.json``: ``out``, else
    ``runs/<bundle>/<timestamp>``. It appears whole (one rename, run.json included) and never
    replaces an existing folder."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(runs_dir) / bundle.name / stamp
        n = 1
        while out.exists():
            n += 1
            out = Path(runs_dir) / bundle.name / f"{stamp}-{n}"
    out = Path(out)
    if out.exists():
        raise BundleError(f"{out}: exists; resume it with --resume, or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-{out.name}-", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; a run folder gets the user's usual mode
    try:
        _bundle_files(bundle, tmp)
        (tmp / "models").mkdir()
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
        # rename(2) onto a folder that appeared meanwhile (another node, another command) fails
        # rather than replacing it: a run folder is created once, never overwritten.
        os.rename(tmp, out)
    except OSError:
        if out.exists():
            raise BundleError(f"{out}: exists; resume it with --resume, or choose another --out") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_run(run_dir: PathLike) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{run_dir}: not a medseg run folder (no {RUN_FILE})") from None
    except ValueError as err:
        raise BundleError(f"{path}: unreadable ({err})") from None


def write_run(run_dir: PathLike, record: dict[str, Any]) -> None:
    from medseg.io.atomic import atomic_path

    with atomic_path(Path(run_dir) / RUN_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def latest_run(bundle_name: str, runs_dir: PathLike = "runs") -> Path | None:
    """The newest run folder of ``bundle_name`` under ``runs_dir`` (names sort by time)."""
    folders = sorted(p for p in (Path(runs_dir) / bundle_name).glob("*") if (p / RUN_FILE).is_file())
    return folders[-1] if folders else None


def export_run(run_dir: PathLike, to: PathLike, weights: str = "final") -> Path:
    """Make a bundle at ``to`` from a finished run: its configs, docs and licence, and the final
    weights (``weights="best"``: the best by validation) as ``models/model.pt``."""
    run_dir, to = Path(run_dir), Path(to)
    read_run(run_dir)
    name = {"final": "model.pt", "best": "model_best.pt"}[weights]
    source = run_dir / "models" / name
    if not source.is_file():
        what = "it has not finished (no models/model.pt)" if weights == "final" else "no validation ran"
        raise BundleError(f"{run_dir}: cannot export {weights} weights: {what}")
    if to.exists():
        raise BundleError(f"{to}: exists; export into a new folder")
    with atomic_folder(to) as tmp:
        for item in run_dir.iterdir():
            if item.name in RUN_ONLY or item.name.startswith("."):
                continue
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            copy(item, tmp / item.name)
        (tmp / "models").mkdir()
        shutil.copy2(source, tmp / "models" / "model.pt")
    (to / MARKER).unlink(missing_ok=True)  # a bundle, not a medseg output a later run may replace
    return to
