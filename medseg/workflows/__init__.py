"""Workflows: the functions behind each CLI command, callable from tests and notebooks.

Imported on use, so that a CLI command that fails on its input says so before MONAI loads.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "bundle_labels": "bundles",
    "find_bundle": "bundles",
    "run_bundle": "bundles",
    "demo": "demo",
    "segment": "segment",
    "train": "train",
    "instance_scores": "instances",
    "InstanceMetricsHandler": "instances",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"medseg.workflows.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'medseg.workflows' has no attribute {name!r}")
