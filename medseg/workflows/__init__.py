"""Workflows: the functions behind each CLI command, callable from tests and notebooks."""

from __future__ import annotations

from medseg.workflows.bundles import bundle_labels, find_bundle, run_bundle
from medseg.workflows.demo import demo
from medseg.workflows.segment import segment
from medseg.workflows.train import train

__all__ = ["bundle_labels", "demo", "find_bundle", "run_bundle", "segment", "train"]
