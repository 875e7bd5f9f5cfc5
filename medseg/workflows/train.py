"""``medseg train``: run a bundle's train config in a run folder, on one process or under torchrun.

The bundle itself is never written to (``medseg.training.run_folder``). With ``nproc_per_node`` or
``nnodes`` above 1 the run folder is prepared here and ``torchrun`` starts the processes, each of
which runs ``python -m medseg.workflows.train RUN`` with the bundle's ``multi_gpu_train`` overlay.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import BundleError, MedsegError
from medseg.io.atomic import atomic_path
from medseg.training import run_folder
from medseg.typing import PathLike
from medseg.workflows.bundles import config_file, find_bundle, load_bundle

logger = logging.getLogger(__name__)
MULTI_GPU = "multi_gpu_train"


@dataclass
class TrainRun:
    run_dir: Path
    resumed: bool


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["max_epochs=2", "spacing=[2,2,2]"]`` -> ``{"max_epochs": 2, "spacing": [2, 2, 2]}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BundleError(f"{item}: overrides are key=value (e.g. max_epochs=2)")
        overrides[key.lstrip("-")] = yaml.safe_load(value)
    return overrides


def prepare_run(
    bundle: PathLike,
    overrides: dict[str, Any],
    config: str = "train",
    out: PathLike | None = None,
    resume: bool = False,
    runs_dir: PathLike = "runs",
    init: dict[str, Any] | None = None,
) -> TrainRun:
    """A new run folder, or with ``resume`` the run to continue (``out``, else the bundle's latest
    under ``runs_dir``; neither there: a new one). Records what to run in its ``run.json``."""
    bundle_dir = find_bundle(bundle)
    config_file(bundle_dir, config)  # a missing train config fails here, before any folder is made
    existing = None
    if resume:
        existing = Path(out) if out is not None else run_folder.latest_run(bundle_dir.name, runs_dir)
        if existing is not None and not (existing / run_folder.RUN_FILE).is_file():
            if existing.exists():
                raise BundleError(f"{existing}: not a medseg run folder; cannot resume it")
            existing = None
    if existing is not None:
        record = run_folder.read_run(existing)
        record["overrides"] = {**record["overrides"], **overrides}
        record["medseg_version"] = _version()
        run_folder.write_run(existing, record)
        return TrainRun(run_dir=existing, resumed=True)
    record = {"bundle": str(bundle_dir), "config": config, "overrides": overrides, "init": init,
              "medseg_version": _version()}  # fmt: skip
    return TrainRun(run_dir=run_folder.new_run(bundle_dir, out, record, runs_dir), resumed=False)


def train(
    bundle: PathLike,
    overrides: list[str] | dict[str, Any] | None = None,
    config: str = "train",
    out: PathLike | None = None,
    resume: bool = False,
    nproc_per_node: int = 1,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    runs_dir: PathLike = "runs",
    init: PathLike | None = None,
    freeze: int = 0,
    freeze_pattern: str | None = None,
) -> TrainRun:
    """Train ``bundle`` in a run folder (see ``prepare_run``); returns where.

    ``init``: start from another model's weights (a ``.pt`` file, a bundle, a run folder), loading
    the tensors that fit; ``freeze``: hold those still for the first iterations (``FreezeLoaded``).
    """
    values = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    if nnodes > 1:
        if out is None:
            raise BundleError(
                "--nnodes above 1 needs --out: the same run folder, on a shared file system, on every node"
            )
        # Every node prepares the same folder; the ones that come after join it.
        resume = resume or (Path(out) / run_folder.RUN_FILE).is_file()
    start = None
    if init is not None:
        from medseg.training.finetune import weights_path

        start = {
            "source": str(weights_path(init).resolve()),
            "freeze": freeze,
            "freeze_pattern": freeze_pattern,
        }
    elif freeze:
        raise BundleError("--freeze needs --init: it holds the loaded weights still")
    try:
        run = prepare_run(bundle, values, config, out, resume, runs_dir, init=start)
    except (MedsegError, OSError):
        # Nodes started together race to create the folder: the ones that lose join the winner's.
        if nnodes == 1 or not (Path(out) / run_folder.RUN_FILE).is_file():
            raise
        run = prepare_run(bundle, values, config, out, True, runs_dir, init=start)
    if nproc_per_node * nnodes > 1:
        config_file(run.run_dir, MULTI_GPU)
        _torchrun(run.run_dir, nproc_per_node, nnodes, rdzv_endpoint)
    else:
        run_in_folder(run.run_dir)
    return run


def run_in_folder(run_dir: PathLike) -> None:
    """Run a prepared run folder in this process (under torchrun: this rank's share). It always
    continues from the folder's latest checkpoint: a new folder has none and starts from scratch."""
    run_dir = Path(run_dir)
    record = run_folder.read_run(run_dir)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    configs = [record["config"], MULTI_GPU] if distributed else [record["config"]]
    values = {**record["overrides"], "resume": True}
    rank = int(os.environ.get("RANK", "0"))
    log = None
    try:
        workflow = load_bundle(run_dir, configs, values, workflow_type="train", bundle_logging=True)
        if rank == 0:
            # After the bundle's logging.conf, which replaces the root logger's handlers.
            log = _log_to_file(run_dir / "logs" / "train.log")
            with atomic_path(run_dir / "config_ran.json") as tmp:
                tmp.write_text(json.dumps(workflow.parser.get(), indent=2, default=str) + "\n")
        if record.get("init"):
            _start_from(workflow.parser, record["init"])
        try:
            workflow.run()
        finally:
            workflow.finalize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        if getattr(trainer.state, "stopped_by", None) == "SIGTERM":
            raise KeyboardInterrupt("SIGTERM")  # the checkpoint is written; the CLI exits 130
    finally:
        if log is not None:
            logging.getLogger().removeHandler(log)
            log.close()


def _start_from(parser: Any, init: dict[str, Any]) -> None:
    """Load the init weights into the bundle's ``network`` (a resumed run's checkpoint replaces
    them when the trainer starts) and attach the freeze to ``train#trainer``."""
    from medseg.training.finetune import FreezeLoaded, init_weights

    for key in ("network", "train#trainer"):
        if key not in parser:
            raise BundleError(f"--init needs the bundle config to define {key!r} (model zoo naming)")
    network = parser.get_parsed_content("network")
    report = init_weights(network, init["source"])  # logs what it loaded and what not
    if init.get("freeze"):
        freezer = FreezeLoaded(network, report.loaded, init["freeze"], init.get("freeze_pattern"))
        freezer.attach(parser.get_parsed_content("train#trainer"))


def _torchrun(run_dir: Path, nproc_per_node: int, nnodes: int, rdzv_endpoint: str | None) -> None:
    """Start the processes with torchrun (PyTorch's launcher; no process management of our own)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise BundleError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
        cmd += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id=medseg-{run_dir.name}",
        ]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "medseg.workflows.train", str(run_dir)]
    result = subprocess.run(cmd)
    if result.returncode:
        raise BundleError(f"{run_dir}: distributed training failed (torchrun exit code {result.returncode})")


def _log_to_file(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _version() -> str:
    from importlib.metadata import version

    return version("medseg")


if __name__ == "__main__":  # one torchrun process: python -m medseg.workflows.train RUN_DIR
    run_in_folder(sys.argv[1])
