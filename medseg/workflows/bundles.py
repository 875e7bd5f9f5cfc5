"""Find bundles and run their configs through MONAI's own bundle machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.bundle import locate
from medseg.errors import BundleError
from medseg.typing import PathLike


def find_bundle(name_or_path: PathLike) -> Path:
    """A bundle folder: a bare name among the shipped bundles, then the user folder (never the
    current directory); anything written as a path is that folder. See ``medseg.bundle.locate``."""
    return locate.find_bundle(name_or_path)


def config_file(bundle: Path, name: str) -> Path:
    for suffix in locate.CONFIG_SUFFIXES:
        path = bundle / "configs" / f"{name}{suffix}"
        if path.is_file():
            return path
    raise BundleError(f"{bundle}: bundle has no configs/{name}.json or .yaml")


def bundle_labels(bundle: Path) -> dict[int, str]:
    """Channel id -> name of the bundle's output (its metadata's ``channel_def``)."""
    from medseg.bundle.contract import read_contract

    return dict(read_contract(bundle).output_names)


def load_bundle(
    bundle: Path,
    configs: list[str],
    overrides: dict[str, Any],
    workflow_type: str,
    bundle_logging: bool = False,
):
    """Parse and initialise ``configs`` (later ones override earlier ones) with MONAI's
    ``ConfigWorkflow``, as ``monai.bundle run`` would; the caller runs and finalises it.

    ``bundle_logging`` applies the bundle's ``configs/logging.conf`` (training logs); otherwise
    MONAI's logging set-up is skipped and the caller's stays in force.
    """
    from monai.bundle import ConfigWorkflow

    files = [str(config_file(bundle, name)) for name in configs]
    workflow = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=None if bundle_logging else False,
        workflow_type=workflow_type,
        bundle_root=str(bundle),
        **overrides,
    )
    workflow.initialize()
    return workflow


def run_bundle(
    bundle: Path,
    configs: list[str],
    overrides: dict[str, Any],
    workflow_type: str,
    bundle_logging: bool = False,
):
    """Run ``configs`` as MONAI's ``monai.bundle run`` would (see ``load_bundle``)."""
    workflow = load_bundle(bundle, configs, overrides, workflow_type, bundle_logging)
    try:
        workflow.run()
    finally:
        workflow.finalize()
    return workflow
