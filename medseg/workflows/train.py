"""Train a bundle with its own train config, with ``key=value`` overrides."""

from __future__ import annotations

from typing import Any

import yaml

from medseg.errors import BundleError
from medseg.typing import PathLike
from medseg.workflows.bundles import find_bundle, run_bundle


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["max_epochs=2", "spacing=[2,2,2]"]`` -> ``{"max_epochs": 2, "spacing": [2, 2, 2]}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BundleError(f"{item}: overrides are key=value (e.g. max_epochs=2)")
        overrides[key.lstrip("-")] = yaml.safe_load(value)
    return overrides


def train(
    bundle: PathLike, overrides: list[str] | dict[str, Any] | None = None, config: str = "train"
) -> None:
    """Run ``configs/<config>`` of ``bundle`` exactly as ``python -m monai.bundle run`` would."""
    bundle_dir = find_bundle(bundle)
    values = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    run_bundle(bundle_dir, [config], values, workflow_type="train", bundle_logging=True)
